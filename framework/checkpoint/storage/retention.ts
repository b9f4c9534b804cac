/**
 * Retention and garbage collection as pure decisions over what storage holds; the storages do the
 * I/O. Reference counts are not stored anywhere: they are recomputed from the committed metadata
 * each time, so they cannot drift from it.
 */

/** A committed metadata file as retention sees it; `files` is undefined when it could not be read. */
export interface StoredMeta {
  readonly checkpointId: number;
  /** Set for savepoints. */
  readonly savepoint?: string;
  /** Paths the metadata lists, or undefined when the metadata is corrupt. */
  readonly files: readonly string[] | undefined;
  /** Where it is stored (for messages). */
  readonly location: string;
}

export interface StoredFile {
  readonly path: string;
  /** The checkpoint that wrote it (from its name). */
  readonly checkpointId: number;
}

export interface RetentionInput {
  readonly metas: readonly StoredMeta[];
  readonly files: readonly StoredFile[];
  /** How many checkpoints (not savepoints) to keep. */
  readonly retain: number;
  /** Checkpoint ids with writes in flight in this process: their files are not garbage yet. */
  readonly inFlight: ReadonlySet<number>;
}

export interface RetentionPlan {
  /** Checkpoint ids whose metadata is deleted (oldest first). */
  readonly pruneCheckpoints: readonly number[];
  /** Files no retained checkpoint or savepoint lists and no in-flight checkpoint wrote. */
  readonly deleteFiles: readonly string[];
  /**
   * Set when files cannot be collected safely because a retained metadata file is unreadable (its
   * references are unknown): nothing is deleted, and this says which file is at fault.
   */
  readonly blockedBy?: string;
}

/**
 * Keep the newest `retain` checkpoints (by numeric id) and every savepoint; delete the metadata of
 * the others, then every file of a checkpoint older than the oldest kept that no kept metadata lists,
 * except files of in-flight checkpoints.
 * Unreadable metadata among the pruned is pruned too (its references do not matter any more);
 * unreadable metadata among the kept blocks file deletion.
 */
export function planRetention(input: RetentionInput): RetentionPlan {
  const checkpoints = input.metas
    .filter((m) => m.savepoint === undefined)
    .sort((a, b) => a.checkpointId - b.checkpointId);
  const cut = Math.max(0, checkpoints.length - input.retain);
  const pruned = checkpoints.slice(0, cut);
  const kept = [...checkpoints.slice(cut), ...input.metas.filter((m) => m.savepoint !== undefined)];
  const pruneCheckpoints = pruned.map((m) => m.checkpointId);
  const unreadable = kept.find((m) => m.files === undefined);
  if (unreadable !== undefined) return { pruneCheckpoints, deleteFiles: [], blockedBy: unreadable.location };
  const referenced = referencedBy(kept);
  // Only files of checkpoints older than the oldest one kept: a file at or above it may belong to a
  // checkpoint another process is writing right now (the new owner of a task, while a zombie of the
  // old one still commits), whose metadata is not there yet. Such files, if they are garbage, go once
  // the kept window has moved past them.
  const keptIds = checkpoints.slice(cut).map((m) => m.checkpointId);
  const floor = keptIds.length === 0 ? Number.POSITIVE_INFINITY : Math.min(...keptIds);
  const deleteFiles = input.files
    .filter((f) => f.checkpointId < floor && !referenced.has(f.path) && !input.inFlight.has(f.checkpointId))
    .map((f) => f.path);
  return { pruneCheckpoints, deleteFiles };
}

/** Every path listed by `metas`. */
export function referencedBy(metas: readonly StoredMeta[]): Set<string> {
  const referenced = new Set<string>();
  for (const m of metas) for (const p of m.files ?? []) referenced.add(p);
  return referenced;
}
