/** What one checkpoint of a task took (TaskListener.checkpointCompleted). */
export interface CheckpointStats {
  readonly taskId: string;
  readonly checkpointId: number;
  readonly savepoint: string | undefined;
  readonly final: boolean;
  readonly unaligned: boolean;
  readonly alignmentMs: number;
  readonly syncMs: number;
  readonly asyncMs: number;
  readonly bytes: number;
  /** The keyed state backend kind (heap, level ...). */
  readonly backend: string;
  readonly inflightRecords: number;
}

/** What a task reports (metrics, the service's log): called on the task loop's turn. */
export interface TaskListener {
  checkpointCompleted?(stats: CheckpointStats): void;
  checkpointFailed?(info: { taskId: string; checkpointId: number; error: unknown }): void;
  restored?(info: { taskId: string; checkpointId: number | undefined; ms: number }): void;
  /** A checkpoint committed by a sink's transaction could not be added to the storage index. */
  indexFailed?(info: { taskId: string; checkpointId: number; error: unknown }): void;
  /**
   * The task's keyed backend closes next (interactive queries stop reading it here): sent by the
   * job before it tears down a stopped, revoked or failed task, and by the task itself before it
   * closes its backend at the end of its input. `taskStopped` or `taskFailed` follows.
   */
  taskEnding?(info: { taskId: string; partition: number }): void;
  /**
   * A user function threw on a record, and the policy took it (`skip`: dropped; `dead-letter`: on the
   * source's dead-letter output). Called for each such record, on the task loop's turn.
   */
  recordFailed?(info: {
    taskId: string;
    operator: string;
    policy: 'skip' | 'dead-letter';
    error: unknown;
  }): void;
}
