/**
 * The job of the savepoint tests, as a module for `kstate run`: per key a running count and sum
 * (value state) and a map of n % 3 -> count (map state), emitted for every record; per task the
 * number of records seen (operator list state, split). Its source has the fixed uid 'input', so the
 * job's task ids do not change when it reads another topic (rescaling down moves to a new topic).
 *
 * Environment: SP_INPUT, SP_OUTPUT, SP_JOB_ID.
 * Input records: key `k<i>`, value JSON `{ "k", "n" }`. Output: key `k<i>`, value `{ "k", "n", "count", "sum" }`.
 */
import {
  type Collector,
  type InitContext,
  type KeyedContext,
  type KeyedProcessFunction,
  type ListState,
  mapState,
  type ProcessContext,
  type ProcessFunction,
  StreamJob,
  valueState,
} from '../../../../framework/index.ts';
import { KafkaSink, KafkaSource } from '../../index.ts';

export interface In {
  readonly k: string;
  readonly n: number;
}
export interface Out {
  readonly k: string;
  readonly n: number;
  readonly count: number;
  readonly sum: number;
}

class Seen implements ProcessFunction<In, In> {
  #seen!: ListState<number>;
  initializeState(ctx: InitContext): void {
    this.#seen = ctx.operatorState.getListState<number>('seen');
  }
  processElement(v: In, _ctx: ProcessContext, out: Collector<In>): void {
    const cur = this.#seen.get();
    this.#seen.update(cur.length === 0 ? [1] : [cur[0]! + 1, ...cur.slice(1)]);
    out.collect(v);
  }
}

class CountSum implements KeyedProcessFunction<string, In, Out> {
  processElement(e: In, ctx: KeyedContext<string>, out: Collector<Out>): void {
    const count = ctx.getState(valueState<number>('count'));
    const sum = ctx.getState(valueState<number>('sum'));
    const buckets = ctx.getMapState(mapState<number, number>('buckets'));
    const c = (count.value() ?? 0) + 1;
    const s = (sum.value() ?? 0) + e.n;
    count.update(c);
    sum.update(s);
    buckets.put(e.n % 3, (buckets.get(e.n % 3) ?? 0) + 1);
    out.collect({ k: e.k, n: e.n, count: c, sum: s });
  }
}

export default () => {
  const job = new StreamJob(process.env.SP_JOB_ID ?? 'savepoint-job');
  job
    .source(new KafkaSource<In>({ topic: process.env.SP_INPUT ?? 'sp-input', uid: 'input' }))
    .process(() => new Seen(), { uid: 'seen' }) // one instance per task: it keeps its task's list state in a field
    .keyBy((e) => e.k)
    .process(new CountSum(), { uid: 'count-sum' })
    .sinkTo(
      new KafkaSink<Out>({
        topic: process.env.SP_OUTPUT ?? 'sp-output',
        encode: (v) => ({ key: v.k, value: JSON.stringify(v) }),
      }),
    );
  return job;
};
