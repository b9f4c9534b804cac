/**
 * Jobs shared by the runtime tests: a keyed job with state, event-time timers and a two-input
 * operator, whose output is a pure function of its input, so a run with failures can be compared
 * with an uninterrupted one.
 */

import { listState, mapState, valueState } from '../../api/descriptors.ts';
import type {
  Collector,
  KeyedContext,
  KeyedCoProcessFunction,
  KeyedProcessFunction,
  OnTimerContext,
} from '../../api/functions.ts';
import type { SourceRecord } from '../../api/source.ts';
import { StreamJob } from '../../datastream/index.ts';
import type { JobGraph } from '../../graph/types.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';

export interface Order {
  readonly id: number;
  readonly user: string;
  readonly amount: number;
}
export interface Payment {
  readonly order: number;
  readonly user: string;
}

/** Deterministic pseudo-random input: orders and payments for `users` users. */
export function makeInput(
  n: number,
  users: number,
  seed = 7,
): { orders: SourceRecord<Order>[]; payments: SourceRecord<Payment>[] } {
  let s = seed;
  const rnd = () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  const orders: SourceRecord<Order>[] = [];
  const payments: SourceRecord<Payment>[] = [];
  for (let i = 0; i < n; i++) {
    const user = `u${Math.floor(rnd() * users)}`;
    const ts = i * 10;
    orders.push({ value: { id: i, user, amount: 1 + Math.floor(rnd() * 100) }, timestamp: ts });
    if (rnd() < 0.7) payments.push({ value: { order: i, user }, timestamp: ts + Math.floor(rnd() * 50) });
  }
  payments.sort((a, b) => a.timestamp! - b.timestamp!);
  return { orders, payments };
}

/**
 * Running total per user, and per event-time window of 1000 ms the sum of the user's orders,
 * reported by an event-time timer at the window's end (deterministic whatever the interleaving,
 * since no record is late).
 */
export class TotalsWithTimers implements KeyedProcessFunction<string, Order, string> {
  fault: ((label: string) => void) | undefined;
  processElement(o: Order, ctx: KeyedContext<string>, out: Collector<string>): void {
    this.fault?.('totals.process');
    const total = ctx.getState(valueState<number>('total'));
    const next = (total.value() ?? 0) + o.amount;
    total.update(next);
    const recent = ctx.getListState(listState<number>('recent'));
    recent.add(o.id);
    if (recent.get().length > 5) recent.update(recent.get().slice(-5));
    out.collect(`total ${o.user} ${o.id} ${next}`);
    const end = Math.floor(ctx.timestamp! / 1000) * 1000 + 999;
    const windows = ctx.getMapState(mapState<number, number>('windows'));
    windows.put(end, (windows.get(end) ?? 0) + o.amount);
    ctx.timerService.registerEventTimeTimer(end);
  }
  onTimer(ts: number, ctx: OnTimerContext<string>, out: Collector<string>): void {
    this.fault?.('totals.timer');
    const windows = ctx.getMapState(mapState<number, number>('windows'));
    out.collect(`window ${ctx.key} ${ts} ${windows.get(ts)}`);
    windows.remove(ts);
  }
}

/** Matches payments to orders of the same user (keyed two-input operator). */
export class MatchPayments implements KeyedCoProcessFunction<string, Order, Payment, string> {
  fault: ((label: string) => void) | undefined;
  processElement1(o: Order, ctx: KeyedContext<string>, out: Collector<string>): void {
    this.fault?.('match.order');
    const paid = ctx.getMapState(mapState<number, boolean>('paid'));
    if (paid.contains(o.id)) {
      paid.remove(o.id);
      out.collect(`paid ${o.user} ${o.id}`);
    } else ctx.getMapState(mapState<number, number>('open')).put(o.id, o.amount);
  }
  processElement2(p: Payment, ctx: KeyedContext<string>, out: Collector<string>): void {
    this.fault?.('match.payment');
    const open = ctx.getMapState(mapState<number, number>('open'));
    if (open.contains(p.order)) {
      open.remove(p.order);
      out.collect(`paid ${p.user} ${p.order}`);
    } else ctx.getMapState(mapState<number, boolean>('paid')).put(p.order, true);
  }
}

export interface TestJob {
  readonly graph: JobGraph;
  readonly orders: TestSource<Order>;
  readonly payments: TestSource<Payment>;
  readonly sink: CollectingSink<string>;
  readonly totals: TotalsWithTimers;
  readonly match: MatchPayments;
}

/** orders -> keyBy user -> totals with timers; orders + payments -> keyBy user -> match; both to one sink. */
export function buildJob(
  jobId: string,
  input: ReturnType<typeof makeInput>,
  partitions: number,
  sink = new CollectingSink<string>('out'),
): TestJob {
  const orders = TestSource.byKey('orders', input.orders, (o) => o.user, partitions);
  const payments = TestSource.byKey('payments', input.payments, (p) => p.user, partitions);
  const job = new StreamJob(jobId);
  const wm = { maxOutOfOrdernessMs: 100 };
  const o = job.source(orders, { watermarks: wm });
  const p = job.source(payments, { watermarks: { maxOutOfOrdernessMs: 100 } });
  const totals = new TotalsWithTimers();
  const match = new MatchPayments();
  const a = o.keyBy((x) => x.user).process(totals, { uid: 'totals' });
  const b = o
    .keyBy((x) => x.user)
    .connect(p.keyBy((x) => x.user))
    .process(match, { uid: 'match' });
  a.union(b).sinkTo(sink);
  return { graph: job.build(), orders, payments, sink, totals, match };
}
