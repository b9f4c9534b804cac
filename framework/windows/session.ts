import type { Collector, KeyedContext, KeyedProcessFunction, OnTimerContext } from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { MapStateDescriptor } from '../api/state.ts';
import { type PaneContents, PrivateAccumulators } from './contents.ts';
import { type Emit, timeOf } from './emit.ts';
import type { WindowSettings } from './fixed.ts';

/** One session of a key: `[start, end)`, the records counted for `countTrigger`, the accumulator. */
type Session<ACC> = readonly [end: number, count: number, acc: ACC];

/**
 * Session windows as a keyed process function. State `sessions` (map, per key): start ->
 * [end, count, accumulator]. A record at `t` opens `[t, t + gap)`; every session of its key that
 * overlaps or touches it (`start <= t + gap && end >= t`, as Flink's TimeWindow.intersects) merges
 * with it into one session, whose accumulator merges theirs (in start order) and then adds the
 * record. Sessions of one key are thus always disjoint.
 *
 * Timers: `end - 1` (time triggers) and the cleanup time `end - 1 + allowedLateness`, registered
 * for the merged session; the timers of the sessions it swallowed are deleted unless a remaining
 * session of the key needs the same timestamp. Event time: a record that merges with no session and
 * whose own session is past its cleanup time is late (`lateTag`, else dropped and counted); a record that lands in a session
 * that has already fired, within the lateness, re-fires it at once.
 */
export class SessionWindowOperator<K extends Key, IN, ACC, R> implements KeyedProcessFunction<K, IN, R> {
  readonly #gap: number;
  readonly #s: WindowSettings<IN>;
  readonly #contents: PaneContents<IN, ACC>;
  readonly #emit: Emit<K, ACC, R>;
  readonly #sessions: MapStateDescriptor<number, Session<ACC>> = { kind: 'map', name: 'sessions' };
  readonly #private = new PrivateAccumulators();

  constructor(
    gapMs: number,
    settings: WindowSettings<IN>,
    contents: PaneContents<IN, ACC>,
    emit: Emit<K, ACC, R>,
  ) {
    this.#gap = gapMs;
    this.#s = settings;
    this.#contents = contents;
    this.#emit = emit;
  }

  snapshotState(): void {
    this.#private.reset();
  }

  processElement(value: IN, ctx: KeyedContext<K>, out: Collector<R>): void {
    const t = timeOf(this.#s.time, ctx);
    const now = this.#s.time === 'event' ? ctx.currentWatermark() : Number.NEGATIVE_INFINITY;
    const lateness = this.#s.allowedLatenessMs;
    const state = ctx.getMapState(this.#sessions);
    const all = state.entries();
    const merging = all.filter(([s, [e]]) => s <= t + this.#gap && e >= t).sort((a, b) => a[0] - b[0]);
    if (merging.length === 0 && t + this.#gap - 1 + lateness <= now) {
      if (this.#s.lateTag) ctx.output(this.#s.lateTag, value);
      else ctx.lateRecordDropped();
      return;
    }
    let start = t;
    let end = t + this.#gap;
    let count = 1;
    let acc: ACC | undefined;
    for (const [s, [e, n, a]] of merging) {
      start = Math.min(start, s);
      end = Math.max(end, e);
      count += n;
      acc = acc === undefined ? this.#private.own(this.#contents, a) : this.#contents.merge(acc, a);
    }
    acc = acc === undefined ? this.#contents.first(value) : this.#contents.add(acc, value);
    this.#private.mark(acc, value);

    const trigger = this.#s.trigger;
    const fire = trigger.kind === 'count' && count >= trigger.count;
    for (const [s] of merging) if (s !== start) state.remove(s);
    state.put(start, [end, fire ? 0 : count, acc]);

    // Timers of the merged session; drop those of swallowed sessions nobody else needs.
    const needed = new Set<number>();
    for (const [s, [e]] of all) {
      if (merging.some(([m]) => m === s)) continue;
      needed.add(e - 1).add(e - 1 + lateness);
    }
    needed.add(end - 1).add(end - 1 + lateness);
    for (const [, [e]] of merging) {
      for (const ts of [e - 1, e - 1 + lateness]) if (!needed.has(ts)) this.#timer(ctx, ts, true);
    }
    this.#timer(ctx, end - 1 + lateness);
    if (trigger.kind !== 'count' && end - 1 > now) this.#timer(ctx, end - 1);

    if (fire || (trigger.kind !== 'count' && end - 1 <= now)) {
      this.#emit(this.#contents.copy(acc), { start, end }, ctx, out);
    }
  }

  onTimer(timestamp: number, ctx: OnTimerContext<K>, out: Collector<R>): void {
    const state = ctx.getMapState(this.#sessions);
    const lateness = this.#s.allowedLatenessMs;
    for (const [start, [end, , acc]] of state.entries()) {
      if (this.#s.trigger.kind !== 'count' && end - 1 === timestamp) {
        this.#emit(this.#contents.copy(acc), { start, end }, ctx, out);
      }
      if (end - 1 + lateness <= timestamp) state.remove(start);
    }
  }

  #timer(ctx: KeyedContext<K>, timestamp: number, remove = false): void {
    const ts = ctx.timerService;
    if (this.#s.time === 'event') {
      if (remove) ts.deleteEventTimeTimer(timestamp);
      else ts.registerEventTimeTimer(timestamp);
    } else if (remove) ts.deleteProcessingTimeTimer(timestamp);
    else ts.registerProcessingTimeTimer(timestamp);
  }
}
