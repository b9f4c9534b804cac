import { StreamError } from '../api/errors.ts';
import type { CheckpointCommitter } from '../api/sink.ts';
import type { Source } from '../api/source.ts';
import {
  decideRestore,
  firstCheckpointId,
  isDamagedCheckpoint,
  type RestoreFrom,
  type RestorePlan,
} from '../checkpoint/decisions.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import {
  checkpointFiles,
  type RestoredTask,
  readPointedMetadata,
  readTaskSnapshot,
  type TaskPayload,
} from './snapshot-io.ts';

/** What a task restores with. */
export interface RestoreContext {
  readonly storage: CheckpointStorage;
  readonly scope: Scope;
  /** This incarnation's attempt id (names the files it writes). */
  readonly attempt: string;
  /** The task's keyed backend, fresh: the restored keyed state is loaded into it. */
  readonly backend: KeyedStateBackend;
  /** The stage's partition count now (a checkpoint taken with another count is refused). */
  readonly partitions: number;
  readonly from: RestoreFrom;
  readonly restoreFallback: 'refuse' | 'previous';
  /** The task's checkpoint committer, if its sink commits checkpoints. */
  readonly committer: CheckpointCommitter | undefined;
  /** The task's own (non-broadcast) inputs, whose committed positions name its newest checkpoint. */
  readonly inputs: readonly { readonly source: Source<unknown>; readonly partition: number }[];
}

/** A task's state as restored. */
export interface TaskRestore {
  /** The checkpoint restored, undefined for a fresh start. */
  readonly restored: RestoredTask | undefined;
  readonly nextCheckpointId: number;
  /** The savepoint lineage this run's checkpoints carry (TaskPayload.fromSavepoint). */
  readonly fromSavepoint: string | undefined;
}

/**
 * Restore a task: gather the facts (the storage's newest checkpoint, the committer's pointer),
 * take the restore decision (`decideRestore`), and carry it out: read the snapshot, load its keyed
 * state into the backend, fall back to an older checkpoint where the plan allows. Operators and
 * channels are the caller's: they get `restored.operators` and `restored.payload.channels`.
 */
export async function restoreTask(c: RestoreContext): Promise<TaskRestore> {
  const latest = await c.storage.latest(c.scope);
  const newest =
    c.from.kind === 'checkpoint'
      ? undefined
      : c.committer
        ? await committedByCommitter(c, c.committer)
        : latest;
  const plan = decideRestore({
    from: c.from,
    committer: c.committer !== undefined,
    newest: newest && { checkpointId: newest.checkpointId, fromSavepoint: lineageOf(newest) },
    restoreFallback: c.restoreFallback,
  });
  const meta = await targetMetadata(c, plan, newest);
  let restored: RestoredTask | undefined;
  try {
    restored = meta ? await restoreState(c, meta) : undefined;
  } catch (e) {
    restored = await afterDamagedRestore(c, plan, meta!, e);
  }
  return {
    restored,
    nextCheckpointId: firstCheckpointId(restored?.meta.checkpointId, latest?.checkpointId),
    fromSavepoint: plan.lineage.kind === 'savepoint' ? plan.lineage.name : lineageOf(restored?.meta),
  };
}

function lineageOf(meta: CheckpointMetadata | undefined): string | undefined {
  return (meta?.payload as TaskPayload | undefined)?.fromSavepoint;
}

async function targetMetadata(
  c: RestoreContext,
  plan: RestorePlan,
  newest: CheckpointMetadata | undefined,
): Promise<CheckpointMetadata | undefined> {
  switch (plan.target.kind) {
    case 'empty':
      return undefined;
    case 'newest':
      return newest;
    case 'savepoint':
      return c.storage.loadSavepoint(plan.target.name, c.scope);
    case 'checkpoint':
      return c.storage.load(c.scope, plan.target.checkpointId);
  }
}

/** The checkpoint the task's committer last committed (its pointer names the metadata file). */
async function committedByCommitter(
  c: RestoreContext,
  committer: CheckpointCommitter,
): Promise<CheckpointMetadata | undefined> {
  const pointer = await committer.latestCheckpoint(c.inputs);
  return pointer ? readPointedMetadata(c.storage, pointer, c.scope.taskId) : undefined;
}

/** Read a checkpoint's snapshot and load its keyed state into the backend (replacing all state). */
async function restoreState(c: RestoreContext, meta: CheckpointMetadata): Promise<RestoredTask> {
  const { storage, scope, backend } = c;
  const restored = await readTaskSnapshot(storage, meta);
  if (restored.payload.partitions !== c.partitions) {
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `checkpoint ${meta.checkpointId} of task ${scope.taskId} was taken with ${restored.payload.partitions} partitions, the job now has ${c.partitions}: rescale the savepoint offline first`,
    );
  }
  if (restored.keyed) await backend.restore(restored.keyed);
  if (restored.keyedHandle) {
    const h = restored.keyedHandle;
    if (h.backend !== backend.kind || !backend.restoreHandle) {
      throw new StreamError(
        'SNAPSHOT_FORMAT_UNSUPPORTED',
        `checkpoint ${meta.checkpointId} of task ${scope.taskId} holds keyed state in the '${h.backend}' backend's format, but the job now uses '${backend.kind}': restore with the '${h.backend}' backend, or from a savepoint (savepoints are portable)`,
      );
    }
    await backend.restoreHandle(h, checkpointFiles(storage, scope, meta.checkpointId, c.attempt));
  }
  return restored;
}

/**
 * The restore of `failed` threw `error`: what the plan says for a damaged checkpoint. Rethrows
 * anything else, and a damaged checkpoint the plan refuses (saying how to fall back where that is
 * possible); with `older`, restores the newest older retained checkpoint that is intact and warns
 * (CheckpointRestoreWarning) naming both.
 */
async function afterDamagedRestore(
  c: RestoreContext,
  plan: RestorePlan,
  failed: CheckpointMetadata,
  error: unknown,
): Promise<RestoredTask> {
  if (!(error instanceof StreamError) || !isDamagedCheckpoint(error.code)) throw error;
  switch (plan.onDamaged) {
    case 'refuse':
      throw error;
    case 'refuse-suggest-previous':
      throw new StreamError(
        error.code,
        `${error.message}; to restore the newest older checkpoint that is intact instead, set checkpoints.restoreFallback = 'previous'`,
        { cause: error },
      );
    case 'refuse-committed':
      throw new StreamError(
        error.code,
        `${error.message}; checkpoints.restoreFallback cannot apply: this task's sink committed the output up to checkpoint ${failed.checkpointId}, and an older checkpoint would emit it again. Restore from a savepoint, or repair the file`,
        { cause: error },
      );
    case 'older':
      break;
  }
  const older = (await c.storage.list(c.scope).catch(() => []))
    .filter((m) => m.checkpointId < failed.checkpointId)
    .sort((a, b) => b.checkpointId - a.checkpointId);
  for (const m of older) {
    let restored: RestoredTask;
    try {
      restored = await restoreState(c, m);
    } catch (again) {
      if (again instanceof StreamError && isDamagedCheckpoint(again.code)) continue;
      throw again;
    }
    process.emitWarning(
      `task ${c.scope.taskId}: checkpoint ${failed.checkpointId} cannot be restored (${error.message}); restored the older checkpoint ${m.checkpointId} instead (checkpoints.restoreFallback = 'previous')`,
      'CheckpointRestoreWarning',
    );
    return restored;
  }
  throw error;
}
