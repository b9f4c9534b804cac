import { StreamError } from '../api/errors.ts';

/**
 * Window assigners: which windows a record belongs to. A window is the half-open interval
 * `[start, end)` of event time (event-time assigners: the record's timestamp) or of processing time
 * (processing-time assigners: the task clock when the record arrives), as in Flink.
 *
 * - tumbling: windows of `sizeMs`, starting at `offsetMs + k * sizeMs`;
 * - sliding (hopping): windows of `sizeMs` starting every `slideMs` (at `offsetMs + k * slideMs`),
 *   so a record belongs to `sizeMs / slideMs` windows (rounded up when slide does not divide size);
 * - session: a record opens `[t, t + gapMs)`; sessions of one key that overlap or touch merge.
 */
export type WindowTime = 'event' | 'processing';

export interface TumblingWindows {
  readonly kind: 'tumbling';
  readonly time: WindowTime;
  readonly sizeMs: number;
  readonly offsetMs: number;
}

export interface SlidingWindows {
  readonly kind: 'sliding';
  readonly time: WindowTime;
  readonly sizeMs: number;
  readonly slideMs: number;
  readonly offsetMs: number;
}

export interface SessionWindows {
  readonly kind: 'session';
  readonly time: WindowTime;
  readonly gapMs: number;
}

export type WindowAssigner = TumblingWindows | SlidingWindows | SessionWindows;

/** A window of one key: `[start, end)`; its results carry the timestamp `end - 1`. */
export interface TimeWindow {
  readonly start: number;
  readonly end: number;
}

export interface TumblingOptions {
  readonly sizeMs: number;
  /** Shifts window starts (e.g. a time zone for daily windows); 0 <= offsetMs < sizeMs. Default 0. */
  readonly offsetMs?: number;
}

export interface SlidingOptions {
  readonly sizeMs: number;
  readonly slideMs: number;
  /** Shifts window starts; 0 <= offsetMs < slideMs. Default 0. */
  readonly offsetMs?: number;
}

export interface SessionOptions {
  /** A session closes after this long without a record of its key. */
  readonly gapMs: number;
}

export const tumblingEventTime = (o: TumblingOptions): TumblingWindows => tumbling('event', o);
export const tumblingProcessingTime = (o: TumblingOptions): TumblingWindows => tumbling('processing', o);
export const slidingEventTime = (o: SlidingOptions): SlidingWindows => sliding('event', o);
export const slidingProcessingTime = (o: SlidingOptions): SlidingWindows => sliding('processing', o);
export const sessionEventTime = (o: SessionOptions): SessionWindows => session('event', o);
export const sessionProcessingTime = (o: SessionOptions): SessionWindows => session('processing', o);

function tumbling(time: WindowTime, o: TumblingOptions): TumblingWindows {
  const what = `tumbling ${time}-time windows`;
  positiveInt(what, 'sizeMs', o?.sizeMs);
  const offsetMs = o.offsetMs ?? 0;
  offset(what, offsetMs, o.sizeMs, 'sizeMs');
  return { kind: 'tumbling', time, sizeMs: o.sizeMs, offsetMs };
}

function sliding(time: WindowTime, o: SlidingOptions): SlidingWindows {
  const what = `sliding ${time}-time windows`;
  positiveInt(what, 'sizeMs', o?.sizeMs);
  positiveInt(what, 'slideMs', o.slideMs);
  if (o.slideMs > o.sizeMs) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${what}: slideMs (${o.slideMs}) must not exceed sizeMs (${o.sizeMs}); records between windows would belong to none`,
    );
  }
  const offsetMs = o.offsetMs ?? 0;
  offset(what, offsetMs, o.slideMs, 'slideMs');
  return { kind: 'sliding', time, sizeMs: o.sizeMs, slideMs: o.slideMs, offsetMs };
}

function session(time: WindowTime, o: SessionOptions): SessionWindows {
  positiveInt(`session ${time}-time windows`, 'gapMs', o?.gapMs);
  return { kind: 'session', time, gapMs: o.gapMs };
}

function positiveInt(what: string, name: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new StreamError('CONFIG_INVALID', `${what}: ${name} must be a positive integer (ms), got ${v}`);
  }
}

function offset(what: string, v: unknown, limit: number, limitName: string): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= limit) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${what}: offsetMs must be an integer with 0 <= offsetMs < ${limitName} (${limit}), got ${v}`,
    );
  }
}

/** `a mod m` in [0, m), also for negative `a`. */
export function floorMod(a: number, m: number): number {
  const r = a % m;
  return r < 0 ? r + m : r;
}

export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Size, slide and offset of a tumbling (slide = size) or sliding assigner. */
export interface FixedWindows {
  readonly sizeMs: number;
  readonly slideMs: number;
  readonly offsetMs: number;
}

export function fixedOf(a: TumblingWindows | SlidingWindows): FixedWindows {
  return a.kind === 'tumbling'
    ? { sizeMs: a.sizeMs, slideMs: a.sizeMs, offsetMs: a.offsetMs }
    : { sizeMs: a.sizeMs, slideMs: a.slideMs, offsetMs: a.offsetMs };
}

/** Start of the latest window containing `t`. */
export function lastWindowStart(w: FixedWindows, t: number): number {
  return t - floorMod(t - w.offsetMs, w.slideMs);
}

/** Starts of the windows containing `t`, latest first. */
export function windowStartsOf(w: FixedWindows, t: number): number[] {
  const out: number[] = [];
  for (let s = lastWindowStart(w, t); s > t - w.sizeMs; s -= w.slideMs) out.push(s);
  return out;
}
