import { mapState } from '../api/descriptors.ts';
import type {
  Collector,
  KeyedContext,
  KeyedCoProcessFunction,
  OnTimerContext,
  OutputTag,
} from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { MapState } from '../api/state.ts';
import { checkMs, eventTimeOf } from './event-time.ts';

export interface IntervalJoinOptions<L, R, OUT, K extends Key = Key> {
  /** Right records join a left record at `t` when their time is in [t + lowerMs, t + upperMs]. */
  readonly lowerMs: number;
  readonly upperMs: number;
  /** Builds one output per matching pair; the output's timestamp is the later of the two. */
  readonly join: (left: L, right: R, key: K) => OUT;
  /** Left or right records behind the watermark when they arrive (they can no longer be matched completely). Default: dropped and counted (`kstate_late_records_dropped_total`). */
  readonly lateLeft?: OutputTag<L>;
  readonly lateRight?: OutputTag<R>;
}

/** Records buffered per key, by event time (several records may share a time). */
type Buffer<T> = MapState<number, T[]>;

/**
 * Interval join in event time (Flink's `intervalJoin().between(lower, upper)`): for each key, every
 * pair (l, r) with r.ts in [l.ts + lower, l.ts + upper] is emitted once, as soon as both have
 * arrived, whatever the order they arrive in. Each side is buffered per key by timestamp; a left
 * record is dropped once the watermark passes l.ts + upper (no right record can still match it), a
 * right record once it passes r.ts - lower (a timer at that time + 1). State is therefore bounded by the records of the last
 * (upper - lower) plus out-of-orderness of event time.
 *
 * A record that arrives behind the watermark is late: it is not joined (a partner might already
 * have been dropped) and goes to `lateLeft` / `lateRight` when given, else it is counted as dropped. Both sides must carry event
 * time (RECORD_TIMESTAMP_MISSING otherwise).
 */
export class IntervalJoin<K extends Key, L, R, OUT> implements KeyedCoProcessFunction<K, L, R, OUT> {
  readonly #o: IntervalJoinOptions<L, R, OUT, K>;

  constructor(o: IntervalJoinOptions<L, R, OUT, K>) {
    checkMs('lowerMs', o.lowerMs, Number.NEGATIVE_INFINITY, 'interval join');
    checkMs('upperMs', o.upperMs, o.lowerMs, 'interval join (upperMs >= lowerMs)');
    this.#o = o;
  }

  processElement1(left: L, ctx: KeyedContext<K>, out: Collector<OUT>): void {
    const t = eventTimeOf(ctx, 'interval join, left input');
    if (t < ctx.currentWatermark()) {
      if (this.#o.lateLeft) ctx.output(this.#o.lateLeft, left, t);
      else ctx.lateRecordDropped();
      return;
    }
    const { lowerMs, upperMs, join } = this.#o;
    add(lefts(ctx), t, left);
    for (const [rt, rs] of rights<R>(ctx).entries()) {
      if (rt < t + lowerMs || rt > t + upperMs) continue;
      for (const r of rs) out.collect(join(left, r, ctx.key), Math.max(t, rt));
    }
    ctx.timerService.registerEventTimeTimer(t + upperMs + 1);
  }

  processElement2(right: R, ctx: KeyedContext<K>, out: Collector<OUT>): void {
    const t = eventTimeOf(ctx, 'interval join, right input');
    if (t < ctx.currentWatermark()) {
      if (this.#o.lateRight) ctx.output(this.#o.lateRight, right, t);
      else ctx.lateRecordDropped();
      return;
    }
    const { lowerMs, upperMs, join } = this.#o;
    add(rights(ctx), t, right);
    for (const [lt, ls] of lefts<L>(ctx).entries()) {
      if (t < lt + lowerMs || t > lt + upperMs) continue;
      for (const l of ls) out.collect(join(l, right, ctx.key), Math.max(t, lt));
    }
    ctx.timerService.registerEventTimeTimer(t - lowerMs + 1);
  }

  /** The watermark passed `timestamp`: drop what can no longer match. */
  onTimer(timestamp: number, ctx: OnTimerContext<K>): void {
    const { lowerMs, upperMs } = this.#o;
    // A record at the watermark is not late yet (late: t < watermark), so a partner at exactly
    // the bound may still come: drop only what is strictly behind.
    const wm = Math.max(ctx.currentWatermark(), timestamp);
    prune(lefts(ctx), (lt) => lt + upperMs < wm);
    prune(rights(ctx), (rt) => rt - lowerMs < wm);
  }
}

const LEFT = mapState<number, unknown[]>('interval-join.left');
const RIGHT = mapState<number, unknown[]>('interval-join.right');
const lefts = <L>(ctx: KeyedContext<Key>): Buffer<L> => ctx.getMapState(LEFT) as Buffer<L>;
const rights = <R>(ctx: KeyedContext<Key>): Buffer<R> => ctx.getMapState(RIGHT) as Buffer<R>;

function add<T>(buffer: Buffer<T>, t: number, value: T): void {
  buffer.put(t, [...(buffer.get(t) ?? []), value]);
}

function prune<T>(buffer: Buffer<T>, expired: (t: number) => boolean): void {
  for (const t of buffer.keys()) if (expired(t)) buffer.remove(t);
}
