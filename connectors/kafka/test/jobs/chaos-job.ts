/**
 * The job of the chaos test (chaos.test.ts), a job module for `kstate run`: orders keyed by `id` on
 * the input topic, re-keyed by `user` through a repartition topic (every upstream task writes every
 * repartition partition), a per-user running count and sum in keyed state, and `{user, id, count,
 * sum}` written by the default (exactly-once) Kafka sink, keyed by user. Its committed output is a
 * function of the order in which each user's inputs reached the counting task, so a checker can
 * recompute it from the output's own sequence: per user, `count` runs 1..n in offset order and
 * `sum` adds each input's `amount`.
 *
 *   CHAOS_JOB_ID, CHAOS_INPUT, CHAOS_OUTPUT (the service's own settings come from KSTATE_*)
 */
import {
  type Collector,
  type KeyedContext,
  type KeyedProcessFunction,
  StreamJob,
  valueState,
} from '../../../../framework/index.ts';
import { KafkaSink, KafkaSource } from '../../index.ts';

export interface Order {
  readonly id: number;
  readonly user: string;
  readonly amount: number;
}

export interface UserTotal {
  readonly user: string;
  readonly id: number;
  readonly count: number;
  readonly sum: number;
}

class UserTotals implements KeyedProcessFunction<string, Order, UserTotal> {
  readonly #count = valueState<number>('count');
  readonly #sum = valueState<number>('sum');
  processElement(o: Order, ctx: KeyedContext<string>, out: Collector<UserTotal>): void {
    const count = ctx.getState(this.#count);
    const sum = ctx.getState(this.#sum);
    const c = (count.value() ?? 0) + 1;
    const s = (sum.value() ?? 0) + o.amount;
    count.update(c);
    sum.update(s);
    out.collect({ user: o.user, id: o.id, count: c, sum: s });
  }
}

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

export default function chaosJob(): StreamJob {
  const job = new StreamJob(required('CHAOS_JOB_ID'));
  job
    .source(new KafkaSource<Order>({ topic: required('CHAOS_INPUT') }))
    .keyBy((o) => o.user, { repartition: true })
    .process(new UserTotals(), { uid: 'user-totals' })
    .sinkTo(
      new KafkaSink<UserTotal>({
        topic: required('CHAOS_OUTPUT'),
        encode: (t) => ({ key: t.user, value: JSON.stringify(t) }),
      }),
    );
  return job;
}
