import type { StreamError } from './errors.ts';
import type { Partitioner } from './keys.ts';

/**
 * The source contract. A source is divided into partitions (Kafka partitions, or a test source's
 * splits); task p of a stage reads partition p of each of its sources, and every partition of a
 * broadcast source.
 *
 * Position contract: a reader's position is the point to resume from, *after* the records it has
 * returned. `poll` returns the position after the records of its batch; the runtime records that
 * position at the barrier, so that a restore resumes exactly after the last record before the
 * barrier, with no gap and no duplicate (the off-by-one bytewax warns about).
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
   * A record of this source that an operator of the stage cannot take (a record error: a keyed
   * operator found its key outside the task's key group, KEY_GROUP_MISMATCH). The source's
   * poison-record policy answers with a verdict. Without this method the task fails with
   * `rejection.error`.
   */
  rejected?(rejection: RecordRejection): RecordVerdict;
}

/** A record an operator rejected, and why (see `Source.rejected`). */
export interface RecordRejection {
  /** The error that fails the task unless the source's policy takes the record. */
  readonly error: StreamError;
  /** The key the operator selected, as bytes (what the stage's partitioner hashed). */
  readonly keyBytes: Uint8Array;
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

export interface SourceReader<T> {
  /** Up to `max` records; `'end'` when a bounded partition is exhausted. */
  poll(max: number): Promise<SourceBatch<T> | 'end'>;
  close(): Promise<void>;
}

/** How event time and watermarks are derived from a source's records. */
export interface WatermarkStrategy<T> {
  /** Event time of a record; default: the record's own timestamp. */
  readonly timestamp?: (value: T, recordTimestamp: number | undefined) => number;
  /** Watermark = highest timestamp seen - maxOutOfOrdernessMs - 1. Default 0. */
  readonly maxOutOfOrdernessMs?: number;
  /** A partition without records for this long (processing time) stops holding the watermark back. */
  readonly idleTimeoutMs?: number;
}
