import type { StreamError } from './errors.ts';
import type { Partitioner } from './keys.ts';

/**
 * The source contract. A source is divided into partitions (Kafka partitions, or a test source's
 * splits); task p of a stage reads partition p of each of its sources, and every partition of a
 * broadcast source.
 *
 * Readers are pulled, with an availability signal (FLIP-27's `SourceReader.pollNext` and
 * `isAvailable`): the task's input channel of a partition (its one buffer) asks `pollNext` for what
 * the reader has *now*, never waiting, and when the answer is "nothing" it hands the reader a
 * listener (`onAvailable`) that the reader calls once it has something. No side polls on a timer.
 *
 * Position contract: a reader's position is the point to resume from, *after* the records it has
 * returned. Each batch carries the position after its records; the runtime records it in the same
 * synchronous step as it queues them, and a barrier queued after them carries it, so that a restore
 * resumes exactly after the last record before the barrier, with no gap and no duplicate (the
 * off-by-one bytewax warns about).
 */
export interface Source<T> {
  /** Stable identifier of the source; part of the snapshot. */
  readonly uid: string;
  /**
   * The function key -> partition the source's records were partitioned by (Kafka: the producers'
   * partitioner). A keyed stage reading the source without repartitioning uses it as its key ->
   * key group function. Default murmur2.
   */
  readonly partitioner?: Partitioner;
  partitions(): number;
  /** Open a reader of one partition, resuming from `position` (undefined: from the beginning). */
  createReader(partition: number, position: unknown): SourceReader<T> | Promise<SourceReader<T>>;
  /**
   * A record of this source that an operator of the stage cannot take (a record error): a keyed
   * operator found its key outside the task's key group (KEY_GROUP_MISMATCH: the source's own
   * poison-record policy answers), or a user function threw on it (USER_FUNCTION_FAILED: `policy` is
   * the operator's, and the source applies it). The answer is a verdict. Without this method the
   * task fails with `rejection.error`, or skips the record when `policy` is 'skip'.
   */
  rejected?(rejection: RecordRejection): RecordVerdict;
}

/**
 * What to do with a record that cannot be processed: `fail` the task, `skip` it (counted and logged),
 * or `dead-letter` it (emitted with the error on the source's dead-letter side output, in the task's
 * transaction).
 */
export type RecordErrorPolicy = 'fail' | 'skip' | 'dead-letter';

/** A record an operator rejected, and why (see `Source.rejected`). */
export interface RecordRejection {
  /** The error that fails the task unless the policy takes the record. */
  readonly error: StreamError;
  /**
   * The key the operator selected, as bytes (what the stage's partitioner hashed); empty when a user
   * function threw before a key was selected.
   */
  readonly keyBytes: Uint8Array;
  /**
   * The policy of the operator whose user function threw on the record (its `onError`, else the
   * job's `onUserFunctionError`); undefined for a record in the wrong key group (the source's own
   * policy decides).
   */
  readonly policy?: RecordErrorPolicy;
  /** The reader's `SourceRecord.origin` of the record. */
  readonly origin: unknown;
  /** The source partition the record came from. */
  readonly partition: number;
}

/**
 * What to do with a rejected record: fail the task with `error` (permanent when its code is: the
 * same record fails again after a restart), skip it (for the operator that rejected it), or emit
 * `value` on the source's side output `tag` instead (a dead letter), in the same task and checkpoint.
 */
export type RecordVerdict =
  | { readonly kind: 'fail'; readonly error: StreamError }
  | { readonly kind: 'skip' }
  | { readonly kind: 'emit'; readonly tag: string; readonly value: unknown };

export interface SourceRecord<T> {
  readonly value: T;
  /** Event time in ms since the epoch, when the record carries one. */
  readonly timestamp?: number;
  /** Emit on this side output of the source instead of its main output (e.g. dead letters). */
  readonly tag?: string;
  /**
   * The record as the source sees it (a Kafka record: topic, partition, offset, key, value), handed
   * back to `Source.rejected` should an operator reject the record. Kept with the record in the
   * task's input channel (and in unaligned checkpoints' channel state).
   */
  readonly origin?: unknown;
}

export interface SourceBatch<T> {
  readonly records: readonly SourceRecord<T>[];
  /** Position after the last record of this batch (the resume point). */
  readonly position: unknown;
  /** True when the partition has no data now; lets its watermark go idle. */
  readonly idle?: boolean;
}

/**
 * The reader of one source partition, pulled by the task's input channel of that partition.
 *
 * - `pollNext(max)` answers at once, never waits and never returns a promise: a batch of at most
 *   `max` records with the position after them; `'end'` when a bounded partition is exhausted (and
 *   from then on); or `undefined` when it has nothing new. A batch without records moves the
 *   position only (records the source filtered out) or reports idleness; after one the channel
 *   asks once more, and after `undefined` it waits for the signal. A reader fails by throwing from
 *   `pollNext` (the task fails and restarts from its last checkpoint).
 * - `onAvailable(listener)`: the channel calls it after `pollNext` returned `undefined` (or an empty
 *   batch). The reader calls `listener` once, as soon as `pollNext` has something again (records, a
 *   new position, the end, or a failure to throw), or at once when it has something now. It may call
 *   it synchronously from the code that receives its data: the channel then takes the records in
 *   the same step (the Kafka consumer's fetch goes straight into the channel). A later call
 *   replaces the listener.
 *
 * Backpressure: the channel takes at most its capacity (`bufferRecords`, else the job's
 * `channelCapacity`) and asks again when the task has drained it to half. A reader whose data
 * arrives on its own (a Kafka fetch) keeps what the channel could not take and stops its supply
 * until the channel took it (the Kafka reader pauses its partition).
 */
export interface PullSourceReader<T> {
  pollNext(max: number): SourceBatch<T> | 'end' | undefined;
  onAvailable(listener: () => void): void;
  /** Records the task's input channel holds for this reader. Default: the job's `channelCapacity`. */
  readonly bufferRecords?: number;
  /**
   * The form in which a record's `origin` is kept in an unaligned checkpoint's channel state, when
   * the reader's own form is not the one to store (the Kafka reader hands out the fetched message
   * itself and stores a `KafkaRecordIn`). Default: as it is.
   */
  storedOrigin?(origin: unknown): unknown;
  /** Stop reading; `pollNext` is not called any more. */
  close(): Promise<void>;
}

/**
 * The earlier, polling reader contract, still taken by `Source.createReader` (the runtime adapts it:
 * one `poll` at a time, started when the channel asks and has room). Prefer `PullSourceReader`: a
 * polling reader must wait inside `poll` for data (usually on a timer) and hands every batch over
 * through a promise.
 *
 * @deprecated implement `PullSourceReader` (`pollNext` and `onAvailable`).
 */
export interface PollingSourceReader<T> {
  /** Up to `max` records; `'end'` when a bounded partition is exhausted. */
  poll(max: number): Promise<SourceBatch<T> | 'end'>;
  close(): Promise<void>;
}

/**
 * What `Source.createReader` returns: a `PullSourceReader`, or a reader of the earlier polling
 * contract (adapted by the runtime; a class implements one of the two).
 */
export type SourceReader<T> = PullSourceReader<T> | PollingSourceReader<T>;

/** How event time and watermarks are derived from a source's records. */
export interface WatermarkStrategy<T> {
  /** Event time of a record; default: the record's own timestamp. */
  readonly timestamp?: (value: T, recordTimestamp: number | undefined) => number;
  /** Watermark = highest timestamp seen - maxOutOfOrdernessMs - 1. Default 0. */
  readonly maxOutOfOrdernessMs?: number;
  /** A partition without records for this long (processing time) stops holding the watermark back. */
  readonly idleTimeoutMs?: number;
}
