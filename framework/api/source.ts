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
  partitions(): number;
  /** Open a reader of one partition, resuming from `position` (undefined: from the beginning). */
  createReader(partition: number, position: unknown): SourceReader<T> | Promise<SourceReader<T>>;
}

export interface SourceRecord<T> {
  readonly value: T;
  /** Event time in ms since the epoch, when the record carries one. */
  readonly timestamp?: number;
  /** Emit on this side output of the source instead of its main output (e.g. dead letters). */
  readonly tag?: string;
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
