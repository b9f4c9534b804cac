import { StreamError } from '../api/errors.ts';
import type { Collector, KeyedContext, OutputTag } from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { TimeWindow, WindowTime } from './assigners.ts';

/** What a window function sees of the firing window. Read it during the call only. */
export interface WindowContext<K extends Key> {
  readonly key: K;
  readonly window: TimeWindow;
  currentWatermark(): number;
  currentProcessingTime(): number;
  /** Emit to a side output; the record's timestamp is `window.end - 1`. */
  output<X>(tag: OutputTag<X>, value: X): void;
}

/** Turns the incremental result of a window (reduce, aggregate) into the record emitted. */
export type WindowResultFunction<K extends Key, IN, R> = (result: IN, ctx: WindowContext<K>) => R;

/**
 * A full-window function: gets every record of the window (grouped by slice in time order, in
 * arrival order within a slice) and emits any number of results. Treat `elements` as read only.
 */
export type ProcessWindowFunction<K extends Key, IN, R> = (
  elements: readonly IN[],
  ctx: WindowContext<K>,
  out: Collector<R>,
) => void;

/** Emits the result of a window from its combined (private) accumulator. */
export type Emit<K extends Key, ACC, R> = (
  acc: ACC,
  window: TimeWindow,
  ctx: KeyedContext<K>,
  out: Collector<R>,
) => void;

function windowContext<K extends Key>(ctx: KeyedContext<K>, window: TimeWindow): WindowContext<K> {
  return {
    key: ctx.key,
    window,
    currentWatermark: () => ctx.currentWatermark(),
    currentProcessingTime: () => ctx.currentProcessingTime(),
    output: (tag, value) => ctx.output(tag, value, window.end - 1),
  };
}

/** Emits `result(acc)`, or `windowFn(result(acc), ctx)`, with timestamp `end - 1`. */
export function emitResult<K extends Key, ACC, OUT, R>(
  result: (acc: ACC) => OUT,
  windowFn: WindowResultFunction<K, OUT, R> | undefined,
): Emit<K, ACC, R> {
  if (windowFn === undefined) {
    return (acc, window, _ctx, out) => out.collect(result(acc) as unknown as R, window.end - 1);
  }
  return (acc, window, ctx, out) =>
    out.collect(windowFn(result(acc), windowContext(ctx, window)), window.end - 1);
}

/** Calls a full-window function; its records default to the timestamp `end - 1`. */
export function emitProcess<K extends Key, IN, R>(fn: ProcessWindowFunction<K, IN, R>): Emit<K, IN[], R> {
  return (elements, window, ctx, out) =>
    fn(elements, windowContext(ctx, window), {
      collect: (value, timestamp) => out.collect(value, timestamp ?? window.end - 1),
    });
}

/** The time a record is placed by: its event timestamp, or the task clock in processing time. */
export function timeOf(time: WindowTime, ctx: KeyedContext<Key>): number {
  if (time === 'processing') return ctx.currentProcessingTime();
  const ts = ctx.timestamp;
  if (ts === undefined || !Number.isFinite(ts)) {
    throw new StreamError(
      'RECORD_TIMESTAMP_MISSING',
      `window operator '${ctx.info.operatorUid}' (event-time windows) got a record without a timestamp (${ts}): give its source event time (the Kafka record timestamp, or watermarks.timestamp), or use processing-time windows`,
    );
  }
  return ts;
}
