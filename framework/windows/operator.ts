import { StreamError } from '../api/errors.ts';
import type { KeyedProcessFunction, OutputTag } from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { AggregateFunction } from '../api/state.ts';
import { fixedOf, type WindowAssigner } from './assigners.ts';
import { aggregatingContents, listContents, type PaneContents, reducingContents } from './contents.ts';
import {
  type Emit,
  emitProcess,
  emitResult,
  type ProcessWindowFunction,
  type WindowResultFunction,
} from './emit.ts';
import { FixedWindowOperator, type WindowSettings } from './fixed.ts';
import { SessionWindowOperator } from './session.ts';
import { resolveTrigger, type WindowTrigger } from './triggers.ts';

/** Options of `keyedStream.window(assigner, options)`. */
export interface WindowOptions<T> {
  /**
   * Event time only: how long after `end - 1` a window still accepts records (each re-fires it);
   * its state is dropped when the watermark passes `end - 1 + allowedLatenessMs`. Default 0.
   */
  readonly allowedLatenessMs?: number;
  /**
   * Event time only: records too late for every window they belong to; default: dropped and counted
   * in `kstate_late_records_dropped_total`.
   */
  readonly lateTag?: OutputTag<T>;
  /** Default: `eventTimeTrigger()` or `processingTimeTrigger()`, after the windows' time domain. */
  readonly trigger?: WindowTrigger;
  /**
   * Tumbling and sliding windows: `sliced` (default) adds each record to one slice of
   * `gcd(size, slide)` and merges a window's slices when it fires; `naive` adds it to every window
   * containing it, as Flink does (kept to measure the difference).
   */
  readonly assignment?: 'sliced' | 'naive';
}

/** How the windows of a `WindowedStream` are computed: their contents and what they emit. */
export interface WindowFunctionSpec<K extends Key, T, R> {
  readonly what: string;
  readonly contents: PaneContents<T, unknown>;
  readonly emit: Emit<K, unknown, R>;
}

export function reduceWindows<K extends Key, T, R>(
  reduce: (a: T, b: T) => T,
  windowFn: WindowResultFunction<K, T, R> | undefined,
): WindowFunctionSpec<K, T, R> {
  fn('reduce', reduce);
  if (windowFn !== undefined) fn('the window function', windowFn);
  return {
    what: 'reduce',
    contents: reducingContents(reduce) as PaneContents<T, unknown>,
    emit: emitResult<K, T, T, R>((acc) => acc, windowFn) as Emit<K, unknown, R>,
  };
}

export function aggregateWindows<K extends Key, T, ACC, OUT, R>(
  agg: AggregateFunction<T, ACC, OUT>,
  windowFn: WindowResultFunction<K, OUT, R> | undefined,
): WindowFunctionSpec<K, T, R> {
  for (const m of ['createAccumulator', 'add', 'getResult'] as const) {
    fn(`the aggregate function's ${m}`, (agg as unknown as Record<string, unknown> | undefined)?.[m]);
  }
  if (windowFn !== undefined) fn('the window function', windowFn);
  return {
    what: 'aggregate',
    contents: aggregatingContents(agg) as PaneContents<T, unknown>,
    emit: emitResult<K, ACC, OUT, R>((acc) => agg.getResult(acc), windowFn) as Emit<K, unknown, R>,
  };
}

export function processWindows<K extends Key, T, R>(
  process: ProcessWindowFunction<K, T, R>,
): WindowFunctionSpec<K, T, R> {
  fn('the process window function', process);
  return {
    what: 'process',
    contents: listContents<T>() as PaneContents<T, unknown>,
    emit: emitProcess(process) as Emit<K, unknown, R>,
  };
}

/** The keyed process function computing `spec` over the windows of `assigner`; checks every option. */
export function windowOperator<K extends Key, T, R>(
  assigner: WindowAssigner,
  options: WindowOptions<T> | undefined,
  spec: WindowFunctionSpec<K, T, R>,
  uid: string,
): KeyedProcessFunction<K, T, R> {
  const where = `window operator '${uid}'`;
  const kind = (assigner as { kind?: unknown } | undefined)?.kind;
  if (kind !== 'tumbling' && kind !== 'sliding' && kind !== 'session') {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}: ${JSON.stringify(assigner)} is not a window assigner; use tumblingEventTime(...), slidingEventTime(...), sessionEventTime(...) or their processing-time variants`,
    );
  }
  const o = options ?? {};
  const time = assigner.time;
  const lateness = o.allowedLatenessMs ?? 0;
  if (typeof lateness !== 'number' || !Number.isSafeInteger(lateness) || lateness < 0) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}: allowedLatenessMs must be an integer >= 0, got ${lateness}`,
    );
  }
  if (time === 'processing' && (lateness !== 0 || o.lateTag !== undefined)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}: allowedLatenessMs and lateTag apply to event-time windows only; a processing-time window takes every record that arrives while it is open`,
    );
  }
  const settings: WindowSettings<T> = {
    time,
    allowedLatenessMs: lateness,
    lateTag: o.lateTag,
    trigger: resolveTrigger(time, o.trigger, uid),
  };
  const assignment = o.assignment;
  if (assigner.kind === 'session') {
    if (assignment !== undefined) {
      throw new StreamError(
        'CONFIG_INVALID',
        `${where}: assignment applies to tumbling and sliding windows; session windows do not overlap`,
      );
    }
    needsMerge(spec, `${where}: session windows merge`);
    return new SessionWindowOperator(assigner.gapMs, settings, spec.contents, spec.emit);
  }
  if (assignment !== undefined && assignment !== 'sliced' && assignment !== 'naive') {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}: assignment must be 'sliced' or 'naive', got ${assignment}`,
    );
  }
  const fixed = fixedOf(assigner);
  if ((assignment ?? 'sliced') === 'sliced' && fixed.sizeMs !== fixed.slideMs) {
    needsMerge(spec, `${where}: sliced sliding windows merge a window's slices`);
  }
  return new FixedWindowOperator(fixed, settings, assignment ?? 'sliced', spec.contents, spec.emit);
}

function needsMerge(spec: { readonly contents: { readonly canMerge: boolean } }, why: string): void {
  if (!spec.contents.canMerge) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${why}, so the aggregate function needs merge(a, b); add one (or use assignment: 'naive' for sliding windows)`,
    );
  }
}

function fn(what: string, f: unknown): void {
  if (typeof f !== 'function') throw new StreamError('CONFIG_INVALID', `windows: ${what} must be a function`);
}
