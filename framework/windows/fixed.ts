import type {
  Collector,
  KeyedContext,
  KeyedProcessFunction,
  OnTimerContext,
  OutputTag,
} from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { MapState, MapStateDescriptor } from '../api/state.ts';
import {
  type FixedWindows,
  floorMod,
  gcd,
  lastWindowStart,
  type WindowTime,
  windowStartsOf,
} from './assigners.ts';
import { type PaneContents, PrivateAccumulators } from './contents.ts';
import { type Emit, timeOf } from './emit.ts';
import type { WindowTrigger } from './triggers.ts';

/** Settings shared by the window operators, validated by `WindowedStream`. */
export interface WindowSettings<IN> {
  readonly time: WindowTime;
  /** 0 for processing-time windows. */
  readonly allowedLatenessMs: number;
  readonly lateTag: OutputTag<IN> | undefined;
  readonly trigger: WindowTrigger;
}

/**
 * Tumbling and sliding windows as a keyed process function over map state, per key.
 *
 * Panes. `sliced` (default): time is cut into slices of `gcd(size, slide)`; a record is added to
 * exactly one slice (state `slices`: slice start -> accumulator), and a window's result merges the
 * `size / gcd` slices it spans when it fires. `naive` (Flink's layout): a record is added to each of
 * the `ceil(size / slide)` windows containing it (state `windows`: window start -> accumulator).
 *
 * Timers (in the windows' time domain), deduplicated per key and timestamp:
 * - cleanup: when a pane is created, at the cleanup time of the last window it belongs to
 *   (`end - 1 + allowedLateness`); the timer drops every pane and count whose time has come;
 * - firing (time triggers): naive registers `end - 1` of each window a record creates; sliced
 *   registers, when a slice is created, `end - 1` of the first window containing it that has not
 *   ended, and each firing chains `end - 1 + slide` if the next window holds any slice. So each
 *   window with content fires once, when the watermark (or clock) reaches `end - 1`.
 *
 * Event time: a record whose every window is past `end - 1 + allowedLateness` is late: it goes to
 * `lateTag`, or is dropped and counted (`ctx.lateRecordDropped()`). A record within the lateness re-fires, at once, each window containing
 * it that has already fired. Counts of `countTrigger` are kept per window (state `counts`).
 */
export class FixedWindowOperator<K extends Key, IN, ACC, R> implements KeyedProcessFunction<K, IN, R> {
  readonly #w: FixedWindows;
  readonly #s: WindowSettings<IN>;
  readonly #contents: PaneContents<IN, ACC>;
  readonly #emit: Emit<K, ACC, R>;
  readonly #sliced: boolean;
  /** Pane width: the slice width (sliced), or the slide (naive: panes are windows, keyed by start). */
  readonly #slice: number;
  readonly #panes: MapStateDescriptor<number, ACC>;
  readonly #counts: MapStateDescriptor<number, number>;
  readonly #private = new PrivateAccumulators();

  constructor(
    windows: FixedWindows,
    settings: WindowSettings<IN>,
    assignment: 'sliced' | 'naive',
    contents: PaneContents<IN, ACC>,
    emit: Emit<K, ACC, R>,
  ) {
    this.#w = windows;
    this.#s = settings;
    this.#contents = contents;
    this.#emit = emit;
    this.#sliced = assignment === 'sliced';
    this.#slice = gcd(windows.sizeMs, windows.slideMs);
    this.#panes = { kind: 'map', name: this.#sliced ? 'slices' : 'windows' };
    this.#counts = { kind: 'map', name: 'counts' };
  }

  snapshotState(): void {
    this.#private.reset();
  }

  processElement(value: IN, ctx: KeyedContext<K>, out: Collector<R>): void {
    const { sizeMs } = this.#w;
    const lateness = this.#s.allowedLatenessMs;
    const t = timeOf(this.#s.time, ctx);
    // Processing time: a record belongs to the windows open now, none of which has fired.
    const now = this.#s.time === 'event' ? ctx.currentWatermark() : Number.NEGATIVE_INFINITY;
    const alive = (start: number) => start + sizeMs - 1 + lateness > now;
    if (!alive(lastWindowStart(this.#w, t))) {
      if (this.#s.lateTag) ctx.output(this.#s.lateTag, value);
      else ctx.lateRecordDropped();
      return;
    }
    const panes = ctx.getMapState(this.#panes);
    if (this.#sliced) {
      this.#add(panes, t - floorMod(t - this.#w.offsetMs, this.#slice), value, now, ctx);
    } else {
      for (const start of windowStartsOf(this.#w, t))
        if (alive(start)) this.#add(panes, start, value, now, ctx);
    }
    const trigger = this.#s.trigger;
    if (trigger.kind === 'count') {
      const counts = ctx.getMapState(this.#counts);
      for (const start of windowStartsOf(this.#w, t)) {
        if (!alive(start)) continue;
        const n = (counts.get(start) ?? 0) + 1;
        if (n >= trigger.count) {
          counts.remove(start);
          this.#fire(panes.entries(), start, ctx, out);
        } else {
          counts.put(start, n);
        }
      }
    } else if (this.#s.time === 'event' && t <= now) {
      // Late but within the allowed lateness: re-fire the windows that already fired.
      let entries: [number, ACC][] | undefined;
      for (const start of windowStartsOf(this.#w, t)) {
        if (start + sizeMs - 1 <= now && alive(start)) {
          entries ??= panes.entries();
          this.#fire(entries, start, ctx, out);
        }
      }
    }
  }

  onTimer(timestamp: number, ctx: OnTimerContext<K>, out: Collector<R>): void {
    const { sizeMs, slideMs, offsetMs } = this.#w;
    const panes = ctx.getMapState(this.#panes);
    const entries = panes.entries();
    const end = timestamp + 1;
    if (this.#s.trigger.kind !== 'count' && floorMod(end - sizeMs - offsetMs, slideMs) === 0) {
      const start = end - sizeMs;
      if (this.#fire(entries, start, ctx, out) && this.#sliced) {
        // Chain: the next window fires too if it holds a slice (later slices have timers of their own).
        const next = start + slideMs;
        if (entries.some(([p]) => p >= next && p < end)) this.#timer(ctx, timestamp + slideMs);
      }
    }
    const lateness = this.#s.allowedLatenessMs;
    for (const [p] of entries) if (this.#paneCleanup(p) + lateness <= timestamp) panes.remove(p);
    if (this.#s.trigger.kind === 'count') {
      const counts = ctx.getMapState(this.#counts);
      for (const start of counts.keys()) if (start + sizeMs - 1 + lateness <= timestamp) counts.remove(start);
    }
  }

  /** Last time a pane is needed, before lateness: `end - 1` of the last window it belongs to. */
  #paneCleanup(pane: number): number {
    return (this.#sliced ? lastWindowStart(this.#w, pane) : pane) + this.#w.sizeMs - 1;
  }

  #add(panes: MapState<number, ACC>, pane: number, value: IN, now: number, ctx: KeyedContext<K>): void {
    const stored = panes.get(pane);
    if (stored !== undefined) {
      const acc = this.#contents.add(this.#private.own(this.#contents, stored), value);
      this.#private.mark(acc, value);
      panes.put(pane, acc);
      return;
    }
    const acc = this.#contents.first(value);
    this.#private.mark(acc, value);
    panes.put(pane, acc);
    this.#timer(ctx, this.#paneCleanup(pane) + this.#s.allowedLatenessMs);
    if (this.#s.trigger.kind === 'count') return;
    const { sizeMs, slideMs } = this.#w;
    if (!this.#sliced) {
      if (pane + sizeMs - 1 > now) this.#timer(ctx, pane + sizeMs - 1);
      return;
    }
    // The first window containing the slice that has not ended (the chain fires the later ones).
    const last = lastWindowStart(this.#w, pane);
    let start = last;
    while (start - slideMs > pane - sizeMs) start -= slideMs;
    while (start <= last && start + sizeMs - 1 <= now) start += slideMs;
    if (start <= last) this.#timer(ctx, start + sizeMs - 1);
  }

  /**
   * Emits the window `[start, start + size)` if it holds anything; true when it did. The result is
   * built on a copy: stored panes are never handed to user code that may keep them.
   */
  #fire(entries: readonly [number, ACC][], start: number, ctx: KeyedContext<K>, out: Collector<R>): boolean {
    const end = start + this.#w.sizeMs;
    let acc: ACC | undefined;
    if (this.#sliced) {
      const inWindow = entries.filter(([p]) => p >= start && p < end).sort((a, b) => a[0] - b[0]);
      for (const [, slice] of inWindow) {
        acc = acc === undefined ? this.#contents.copy(slice) : this.#contents.merge(acc, slice);
      }
    } else {
      const pane = entries.find(([p]) => p === start);
      if (pane) acc = this.#contents.copy(pane[1]);
    }
    if (acc === undefined) return false;
    this.#emit(acc, { start, end }, ctx, out);
    return true;
  }

  #timer(ctx: KeyedContext<K>, timestamp: number): void {
    if (this.#s.time === 'event') ctx.timerService.registerEventTimeTimer(timestamp);
    else ctx.timerService.registerProcessingTimeTimer(timestamp);
  }
}
