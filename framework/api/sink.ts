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
  createWriter(info: SinkInfo): SinkWriter<T> | Promise<SinkWriter<T>>;
}

/** Where a sink writer runs. */
export interface SinkInfo {
  readonly jobId: string;
  readonly partition: number;
  readonly partitions: number;
  /** The task (stage and partition), stable across restarts. */
  readonly taskId: string;
  /** Unique per task incarnation: writers of one task attempt may share resources by it. */
  readonly attempt: string;
}

/** Where a checkpoint's metadata file lies in checkpoint storage (a FileRef plus the checkpoint id). */
export interface CheckpointPointer {
  readonly checkpointId: number;
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface CommitRequest {
  readonly checkpointId: number;
  /** Where each input partition of the task resumes after this checkpoint (broadcast inputs excluded). */
  readonly positions: readonly {
    readonly source: string;
    readonly partition: number;
    readonly position: unknown;
  }[];
  /** The checkpoint's metadata file, already written; the committer records it with the output. */
  readonly pointer: CheckpointPointer;
}

/**
 * A sink that commits checkpoints itself, atomically with its output (a Kafka transaction holding
 * the records up to the barrier, the consumer offsets and the pointer to the snapshot). When a task
 * has one, the success of `commitCheckpoint` *is* the completion of the checkpoint, and restore asks
 * `latestCheckpoint` where the last committed one is. Several writers of one task may return the same
 * committer object; a task must not have two different ones.
 */
export interface CheckpointCommitter {
  /** Throws to fail the task (the transaction's outcome is then decided by fencing on restart). */
  commitCheckpoint(request: CommitRequest): Promise<void>;
  latestCheckpoint(
    inputs: readonly { readonly source: { readonly uid: string }; readonly partition: number }[],
  ): Promise<CheckpointPointer | undefined>;
}

export interface SinkWriter<T> {
  /** Set by sinks that commit checkpoints themselves (see CheckpointCommitter). */
  readonly committer?: CheckpointCommitter;
  /**
   * Backpressure: a promise while the writer holds as much unflushed output as it may; the task
   * takes no record until it resolves. Undefined when ready.
   */
  ready?(): Promise<void> | undefined;
  /**
   * Called in the asynchronous part of checkpoint n, before it commits: resolves once everything
   * prepared for n has been handed to the external system (acknowledged writes for at-least-once
   * sinks, sent transactional records for transactional ones). Rejecting fails the checkpoint.
   */
  flush?(checkpointId: number): Promise<void>;
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
