import type { RecordErrorPolicy } from './source.ts';

/** Checkpointing of a job; every field has a default (see `resolveRuntimeConfig`). */
export interface CheckpointConfig {
  /** Time between checkpoint triggers; 0 disables periodic checkpoints (final and savepoints still run). Default 1000. */
  readonly intervalMs: number;
  /** A checkpoint not complete after this long is aborted. Default 60000. */
  readonly timeoutMs: number;
  /** Minimum time from the completion of one checkpoint to the trigger of the next. Default 0. */
  readonly minPauseMs: number;
  /** Checkpoints in flight at once (their asynchronous parts overlap). Default 1. */
  readonly maxConcurrent: number;
  /** Consecutive failed checkpoints tolerated before the task fails and restarts. Default 3. */
  readonly tolerableFailures: number;
  /** `exactly-once` aligns barriers; `at-least-once` does not (records may be replayed). Default exactly-once. */
  readonly guarantee: 'exactly-once' | 'at-least-once';
  /** Unaligned checkpoints: barriers overtake buffered records, which are stored with the snapshot. Default false. */
  readonly unaligned: boolean;
  /** With aligned checkpoints, switch to unaligned when alignment takes longer than this. Default: never. */
  readonly alignmentTimeoutMs: number | undefined;
  /** `async`: only the capture stops processing; `sync`: processing stops until the snapshot is written. Default async. */
  readonly snapshot: 'async' | 'sync';
  /** Incremental checkpoints where the state backend supports them (only changes since the last one). Default false. */
  readonly incremental: boolean;
  /**
   * When the newest checkpoint cannot be restored because a file is corrupt or missing: `refuse`
   * (default: the task fails with the error naming the file) or `previous` (restore the newest
   * older retained checkpoint that is intact, with a warning). The state is then exact, but the
   * output between the two checkpoints is emitted again (at least once). Never applies to tasks
   * whose sink commits checkpoints (Kafka exactly-once), which refuse rather than repeat output.
   */
  readonly restoreFallback: 'refuse' | 'previous';
  /**
   * A periodic checkpoint when nothing happened since the last one completed (no record, timer or
   * watermark step, no source position moved): `skip` (default: the last commit still stands, and an
   * idle Kafka task costs no transaction) or `checkpoint` (every interval, as Flink does). The first
   * checkpoint of every run is always taken.
   */
  readonly whenIdle: 'skip' | 'checkpoint';
}

export type RestartStrategy =
  | { readonly kind: 'none' }
  | { readonly kind: 'fixed-delay'; readonly attempts: number; readonly delayMs: number }
  /**
   * Flink's failure-rate strategy: restart after `delayMs` while a task's counted failures within the
   * last `intervalMs` (this one included) are at most `maxFailures`; past that the job fails.
   */
  | {
      readonly kind: 'failure-rate';
      readonly maxFailures: number;
      readonly intervalMs: number;
      readonly delayMs: number;
    }
  | {
      readonly kind: 'exponential-backoff';
      readonly initialDelayMs: number;
      readonly maxDelayMs: number;
      readonly multiplier: number;
      /** Give up after this many restarts without a quiet period; default unlimited. */
      readonly maxAttempts?: number;
      /** A task that ran this long without failing resets the backoff. Default 60000. */
      readonly resetAfterMs?: number;
    };

export interface RuntimeConfig {
  readonly checkpoints: CheckpointConfig;
  /**
   * Records a user function throws on (a key selector, map, filter, flatMap, process function, sink
   * encoder), for operators without their own `onError`: `fail` (default: the task fails, and the
   * restart strategy counts it), `skip` (counted in `kstate_records_failed_total` and logged), or
   * `dead-letter` (emitted with the error on the side output of the source the record came from,
   * in the task's transaction). Errors of permanent codes always fail.
   */
  readonly onUserFunctionError: RecordErrorPolicy;
  readonly restart: RestartStrategy;
  /** Records buffered per input channel before the source is paused. Default 1024. */
  readonly channelCapacity: number;
  /** Records a reader is asked for per poll. Default 256. */
  readonly pollBatch: number;
  /**
   * When the job changed and state of its last run (or of the savepoint it starts from) has no
   * operator in it any more: `false` (default) refuses the start with STATE_NOT_RESTORED naming each
   * state and uid; `true` drops that state with one warning (Flink's --allowNonRestoredState).
   */
  readonly allowNonRestoredState: boolean;
}
