/**
 * Checkpoint storage: where snapshot files and checkpoint metadata are written.
 *
 * Contract:
 * - Files are immutable once written; every file has a SHA-256 that `readFile` verifies, refusing a
 *   truncated or altered file with CHECKPOINT_CORRUPT naming the file.
 * - `commit` writes the metadata of one checkpoint atomically (filesystem: temp file, fsync, rename,
 *   fsync of the directory). A checkpoint exists once, and only once, its metadata is committed.
 * - Retention: after each commit, only the last `retain` checkpoints of a scope (and all savepoints)
 *   are kept; a file is deleted when no retained checkpoint or savepoint lists it in `files`
 *   (files may be shared by several checkpoints: incremental checkpoints list earlier files).
 * - `discard` removes the files a checkpoint wrote that no committed metadata references (a failed
 *   or aborted checkpoint).
 * - Nothing on the hot path (writeFile, readFile, commit with its retention, discard) lists storage
 *   once a task has (re)started on a scope: the pointer in the Kafka offset commit names the
 *   checkpoint, and retention plans from what the process wrote (see BaseCheckpointStorage).
 */
export interface CheckpointStorage {
  readonly kind: 'memory' | 'filesystem' | 's3';
  writeFile(scope: Scope, checkpointId: number, name: string, bytes: Uint8Array): Promise<FileRef>;
  readFile(ref: FileRef): Promise<Uint8Array>;
  commit(meta: CheckpointMetadata): Promise<void>;
  /** The newest committed checkpoint of the scope (savepoints excluded), or undefined. */
  latest(scope: Scope): Promise<CheckpointMetadata | undefined>;
  /** Committed checkpoints of the scope, oldest first (savepoints excluded). */
  list(scope: Scope): Promise<CheckpointMetadata[]>;
  /** Throws CHECKPOINT_NOT_FOUND when absent. */
  load(scope: Scope, checkpointId: number): Promise<CheckpointMetadata>;
  /** Savepoints by name; throws CHECKPOINT_NOT_FOUND when absent. */
  loadSavepoint(name: string, scope: Scope): Promise<CheckpointMetadata>;
  discard(scope: Scope, checkpointId: number): Promise<void>;
  /** Task ids of the job with checkpoints or savepoints stored, sorted. A listing: never on the hot path. */
  tasks(jobId: string): Promise<string[]>;
}

/** One task of one job: the unit that checkpoints. */
export interface Scope {
  readonly jobId: string;
  /**
   * The task's stage and partition, as `taskScope` (framework/runtime) names it: the stage's
   * non-broadcast source uids, sorted and joined by `.`, then `-p<partition>`: e.g. `kafka-orders-p3`
   * (a KafkaSource of topic `orders`), or `kafka-orders.kafka-payments-p0` for a stage reading two
   * sources. Only `[A-Za-z0-9._-]` (any other character becomes `_`, and the uids part is cut at 180
   * characters), so storages use it as a path segment.
   */
  readonly taskId: string;
}

export interface FileRef {
  /** Storage-relative path, stable across processes. */
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface CheckpointMetadata {
  readonly formatVersion: 1;
  readonly jobId: string;
  readonly taskId: string;
  readonly checkpointId: number;
  /** Set for savepoints: the user's name for it. Savepoints are never pruned by retention. */
  readonly savepoint?: string;
  readonly timestamp: number;
  /** Every file this checkpoint needs, including files first written by earlier checkpoints. */
  readonly files: readonly FileRef[];
  /** Whether this checkpoint wrote all state, or only changes since an earlier one. */
  readonly type: 'full' | 'incremental';
  /** Runtime-owned description of the snapshot (operators, source positions ...); opaque to storage. */
  readonly payload: unknown;
}
