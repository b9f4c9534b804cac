import type { Key, Partitioner } from './keys.ts';
import type { KeyedStateStore, MapState, OperatorStateStore } from './state.ts';

/**
 * User functions. Each interface has one required method and optional hooks; all calls for one
 * task are made from one loop, never concurrently. A function that throws fails its task, which
 * the restart strategy then restores from the last completed checkpoint.
 */

export interface Collector<T> {
  /** Emit a record; `timestamp` defaults to the timestamp of the record being processed. */
  collect(value: T, timestamp?: number): void;
}

/** Names a side output, e.g. late records of a window. */
export interface OutputTag<T> {
  readonly id: string;
  /** Phantom field carrying the element type; never set. */
  readonly __type?: T;
}

export function outputTag<T>(id: string): OutputTag<T> {
  return { id };
}

export interface TimerService {
  currentProcessingTime(): number;
  /** The operator's current event-time watermark; -Infinity before the first one. */
  currentWatermark(): number;
  registerEventTimeTimer(timestamp: number): void;
  registerProcessingTimeTimer(timestamp: number): void;
  deleteEventTimeTimer(timestamp: number): void;
  deleteProcessingTimeTimer(timestamp: number): void;
}

export interface RuntimeInfo {
  readonly jobId: string;
  readonly operatorUid: string;
  /** The task's partition (= key group) index and the partition count of its stage. */
  readonly partition: number;
  readonly partitions: number;
  /** The stage's partitioner: its function key -> key group (absent: murmur2). */
  readonly partitioner?: Partitioner;
}

/** Context of a non-keyed process function. */
export interface ProcessContext {
  readonly info: RuntimeInfo;
  /** Event timestamp of the current record, if it has one. */
  readonly timestamp: number | undefined;
  currentProcessingTime(): number;
  currentWatermark(): number;
  output<T>(tag: OutputTag<T>, value: T, timestamp?: number): void;
  /**
   * Count one record this function drops because it came too late for event time (behind the
   * watermark, or past a window's allowed lateness) and no late side output was given for it: the
   * operator's `kstate_late_records_dropped_total` (Flink's numLateRecordsDropped). Windows, joins,
   * dedup and CEP call it; a record sent to a late side output is not dropped and not counted.
   */
  lateRecordDropped(): void;
}

/** Context of a keyed process function: the current key, its state and its timers. */
export interface KeyedContext<K extends Key> extends ProcessContext, KeyedStateStore {
  readonly key: K;
  readonly timerService: TimerService;
}

export interface OnTimerContext<K extends Key> extends KeyedContext<K> {
  readonly timeDomain: 'event' | 'processing';
}

/** Given to `initializeState`: operator state and whether it was restored from a snapshot. */
export interface InitContext {
  readonly info: RuntimeInfo;
  readonly operatorState: OperatorStateStore;
  readonly isRestored: boolean;
}

/**
 * Hooks a function may implement to take part in checkpoints, as Flink's CheckpointedFunction
 * and CheckpointListener.
 *
 * Subsuming contract: `notifyCheckpointComplete(n)` means checkpoint n and every earlier one are
 * complete; a notification may be skipped when a later one arrives, and may never arrive (after a
 * failure). `notifyCheckpointAborted(n)` is a hint; it may also not arrive.
 */
export interface CheckpointHooks {
  initializeState?(ctx: InitContext): void;
  /** Called synchronously at the barrier, before the state is captured. */
  snapshotState?(checkpointId: number): void;
  notifyCheckpointComplete?(checkpointId: number): void;
  notifyCheckpointAborted?(checkpointId: number): void;
  /**
   * Raw state: bytes the function writes itself into the snapshot, and gets back on restore. The
   * framework stores them opaquely (with a checksum) and does not redistribute them on rescale.
   */
  snapshotRawState?(checkpointId: number): Uint8Array;
  restoreRawState?(bytes: Uint8Array): void;
}

export interface ProcessFunction<IN, OUT> extends CheckpointHooks {
  processElement(value: IN, ctx: ProcessContext, out: Collector<OUT>): void;
}

export interface KeyedProcessFunction<K extends Key, IN, OUT> extends CheckpointHooks {
  processElement(value: IN, ctx: KeyedContext<K>, out: Collector<OUT>): void;
  onTimer?(timestamp: number, ctx: OnTimerContext<K>, out: Collector<OUT>): void;
}

export interface CoProcessFunction<IN1, IN2, OUT> extends CheckpointHooks {
  processElement1(value: IN1, ctx: ProcessContext, out: Collector<OUT>): void;
  processElement2(value: IN2, ctx: ProcessContext, out: Collector<OUT>): void;
}

export interface KeyedCoProcessFunction<K extends Key, IN1, IN2, OUT> extends CheckpointHooks {
  processElement1(value: IN1, ctx: KeyedContext<K>, out: Collector<OUT>): void;
  processElement2(value: IN2, ctx: KeyedContext<K>, out: Collector<OUT>): void;
  onTimer?(timestamp: number, ctx: OnTimerContext<K>, out: Collector<OUT>): void;
}

/** Read-only view of broadcast state, given to the keyed side of a broadcast connection. */
export interface ReadOnlyBroadcastState<BK, BV> {
  get(key: BK): BV | undefined;
  contains(key: BK): boolean;
  entries(): [BK, BV][];
}

export interface KeyedBroadcastContext<K extends Key> extends KeyedContext<K> {
  broadcastState<BK, BV>(name: string): ReadOnlyBroadcastState<BK, BV>;
}

export interface BroadcastContext extends ProcessContext {
  /** Writable broadcast state; every task receives the same broadcast elements and must apply them alike. */
  broadcastState<BK, BV>(name: string): MapState<BK, BV>;
}

export interface KeyedBroadcastProcessFunction<K extends Key, IN, BIN, OUT> extends CheckpointHooks {
  processElement(value: IN, ctx: KeyedBroadcastContext<K>, out: Collector<OUT>): void;
  processBroadcastElement(value: BIN, ctx: BroadcastContext, out: Collector<OUT>): void;
  onTimer?(timestamp: number, ctx: OnTimerContext<K>, out: Collector<OUT>): void;
}

/**
 * A user function, or a factory of one. The runtime calls a factory (or a zero-argument class)
 * once per task, so each task has its own instance, as each parallel instance has in Flink; a
 * function object passed as such is shared by all tasks of the operator in a process, so it must
 * keep per-task data in managed state (or keyed by `ctx.info.partition`), never in its own fields.
 */
export type PerTask<F> = F | (() => F);

/** The function of one task: calls the factory or class of a `PerTask`, or returns the shared object. */
export function instanceFor<F extends object>(fn: PerTask<F>): F {
  if (typeof fn !== 'function') return fn;
  const make = fn as () => F;
  return /^class\b/.test(Function.prototype.toString.call(make))
    ? new (make as unknown as new () => F)()
    : make();
}
