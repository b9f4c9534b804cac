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

export interface JoinWindow {
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
}

export interface WindowJoinOptions<L, R, OUT, K extends Key = Key> {
  readonly sizeMs: number;
  /** Default `sizeMs` (tumbling). */
  readonly slideMs?: number;
  /** Windows start at offsetMs + n * slideMs. Default 0. */
  readonly offsetMs?: number;
  /** One output per pair of a left and a right record of one key in one window. */
  readonly join: (left: L, right: R, key: K, window: JoinWindow) => OUT;
  /** Records whose every window has already fired when they arrive. Default: dropped and counted (`kstate_late_records_dropped_total`). */
  readonly lateLeft?: OutputTag<L>;
  readonly lateRight?: OutputTag<R>;
}

type Slices<T> = MapState<number, T[]>;

/**
 * Windowed inner join in event time (Flink's `join().where().equalTo().window(...)`): when the
 * watermark passes a window's end, every pair of a left and a right record of the key inside the
 * window is emitted, with timestamp end - 1.
 *
 * Records are stored once, in slices of gcd(size, slide) (not once per overlapping sliding window):
 * a window joins the union of its slices. A slice is dropped once the last window containing it has
 * fired, so state holds the records of the last `size` plus out-of-orderness of event time.
 */
export class WindowJoin<K extends Key, L, R, OUT> implements KeyedCoProcessFunction<K, L, R, OUT> {
  readonly #o: WindowJoinOptions<L, R, OUT, K>;
  readonly #size: number;
  readonly #slide: number;
  readonly #offset: number;
  readonly #slice: number;

  constructor(o: WindowJoinOptions<L, R, OUT, K>) {
    checkMs('sizeMs', o.sizeMs, 1, 'window join');
    const slide = o.slideMs ?? o.sizeMs;
    checkMs('slideMs', slide, 1, 'window join');
    if (slide > o.sizeMs)
      checkMs('slideMs', slide, o.sizeMs + 1, 'window join: slideMs <= sizeMs (gaps drop records)');
    this.#o = o;
    this.#size = o.sizeMs;
    this.#slide = slide;
    this.#offset = o.offsetMs ?? 0;
    this.#slice = gcd(o.sizeMs, slide);
  }

  processElement1(left: L, ctx: KeyedContext<K>): void {
    this.#add(ctx, LEFT, left, this.#o.lateLeft, 'window join, left input');
  }

  processElement2(right: R, ctx: KeyedContext<K>): void {
    this.#add(ctx, RIGHT, right, this.#o.lateRight, 'window join, right input');
  }

  /** Timer at end - 1 of a window: join its slices, then drop slices no window needs any more. */
  onTimer(timestamp: number, ctx: OnTimerContext<K>, out: Collector<OUT>): void {
    const end = timestamp + 1;
    const window = { start: end - this.#size, end };
    const ls = ctx.getMapState(LEFT) as Slices<L>;
    const rs = ctx.getMapState(RIGHT) as Slices<R>;
    const inWindow = <T>(slices: Slices<T>): T[] =>
      slices
        .entries()
        .filter(([s]) => s >= window.start && s < end)
        .sort((a, b) => a[0] - b[0])
        .flatMap(([, v]) => v);
    const lefts = inWindow(ls);
    const rights = lefts.length === 0 ? [] : inWindow(rs);
    for (const l of lefts)
      for (const r of rights) out.collect(this.#o.join(l, r, ctx.key, window), timestamp);
    for (const slices of [ls, rs] as Slices<unknown>[]) {
      for (const s of slices.keys()) if (this.#lastEnd(s) - 1 <= timestamp) slices.remove(s);
    }
  }

  #add<T>(
    ctx: KeyedContext<K>,
    d: typeof LEFT,
    value: T,
    late: OutputTag<T> | undefined,
    what: string,
  ): void {
    const t = eventTimeOf(ctx, what);
    const slice = floorTo(t - this.#offset, this.#slice) + this.#offset;
    if (this.#lastEnd(slice) - 1 <= ctx.currentWatermark()) {
      if (late) ctx.output(late, value, t);
      else ctx.lateRecordDropped();
      return;
    }
    const slices = ctx.getMapState(d) as Slices<T>;
    slices.put(slice, [...(slices.get(slice) ?? []), value]);
    // Every window containing the slice fires at its end - 1 (timers of one key and time are one).
    const firstStart = floorTo(slice - this.#offset, this.#slide) + this.#offset;
    for (let start = firstStart; start + this.#size > slice; start -= this.#slide) {
      if (start + this.#size - 1 > ctx.currentWatermark())
        ctx.timerService.registerEventTimeTimer(start + this.#size - 1);
    }
  }

  /** End of the last window that contains the slice starting at `slice`. */
  #lastEnd(slice: number): number {
    return floorTo(slice - this.#offset, this.#slide) + this.#offset + this.#size;
  }
}

const LEFT = mapState<number, unknown[]>('window-join.left');
const RIGHT = mapState<number, unknown[]>('window-join.right');

const floorTo = (x: number, unit: number): number => Math.floor(x / unit) * unit;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
