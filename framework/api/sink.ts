/**
 * The sink contract, two-phase as Flink's TwoPhaseCommittingSink, so that a sink's output becomes
 * visible exactly when the checkpoint that covers it completes.
 *
 * - `write` adds a record to the current transaction.
 * - `prepareCommit(n)` at barrier n closes the current transaction and returns its committable: a
 *   small JSON-serializable value that is stored in checkpoint n. Records written after it go to a
 *   new transaction.
 * - `commit(committables)` after checkpoint n completed. Must be idempotent: after a failure the
 *   restored task calls it again with the committables of the checkpoint it restores from.
 * - `abort()` discards everything not yet prepared (on failure or close without commit); lingering
 *   prepared transactions of checkpoints that never completed are aborted by `recover`.
 *
 * An at-least-once sink may write through at `write` and return `undefined` committables.
 */
export interface Sink<T> {
  readonly uid: string;
  createWriter(info: {
    jobId: string;
    partition: number;
    partitions: number;
  }): SinkWriter<T> | Promise<SinkWriter<T>>;
}

export interface SinkWriter<T> {
  write(value: T, timestamp: number | undefined): void;
  prepareCommit(checkpointId: number): unknown;
  commit(committables: readonly unknown[]): Promise<void>;
  /**
   * Called once on restore with the committables of the restored checkpoint (to commit again,
   * idempotently) before any write.
   */
  recover?(committables: readonly unknown[]): Promise<void>;
  abort(): Promise<void>;
  close(): Promise<void>;
}
