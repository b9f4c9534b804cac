import { isStreamError, StreamError } from '../api/errors.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import {
  checkpointFiles,
  materializeKeyedHandle,
  type OperatorsFile,
  readTaskSnapshot,
  type TaskPayload,
} from '../runtime/snapshot-io.ts';
import type { KeyedStateBackend, KeyedStateSnapshot } from '../state/backend.ts';
import {
  completeSavepointWrites,
  type PublishOptions,
  publishJobSavepoint,
  type StageSavepointContent,
} from './publish.ts';

/**
 * Savepoints as whole-job values: read every task's part of a named savepoint, and write one.
 *
 * A savepoint is stored per task (`<jobId>/<taskId>/savepoints/<name>.json`, see
 * checkpoint-storage.md); a task id is `<stage>-p<partition>`. `readJobSavepoint` gathers the parts
 * into stages and checks that every stage is complete (a part for each of its partitions, all taken
 * with the same partition count). The keyed state of a savepoint is in the canonical,
 * backend-independent format (the runtime always materializes it for savepoints), so nothing here
 * depends on a state backend.
 */

/** One task's part of a savepoint, decoded. */
export interface TaskSavepoint {
  readonly taskId: string;
  readonly checkpointId: number;
  readonly timestamp: number;
  readonly payload: TaskPayload;
  readonly keyed: KeyedStateSnapshot;
  readonly operators: OperatorsFile;
  /** Bytes of its files in storage (keyed and operators), when read from storage. */
  readonly bytes?: number;
}

export interface StageSavepoint {
  /** The stage name: the task id without `-p<n>` (its non-broadcast source uids). */
  readonly stage: string;
  readonly partitions: number;
  /** The stage's recorded partitioner name (TaskPayload.partitioner; undefined: murmur2). */
  readonly partitioner?: string;
  /** `tasks[p]` is partition p's part. */
  readonly tasks: readonly TaskSavepoint[];
}

export interface JobSavepoint {
  readonly jobId: string;
  readonly name: string;
  readonly stages: readonly StageSavepoint[];
}

export type { StageSavepointContent, TaskSavepointContent } from './publish.ts';

const TASK_ID = /^(.+)-p(\d+)$/;

/** Split a task id into its stage and partition. */
export function parseTaskId(taskId: string): { stage: string; partition: number } | undefined {
  const m = TASK_ID.exec(taskId);
  return m ? { stage: m[1]!, partition: Number(m[2]) } : undefined;
}

/**
 * Read savepoint `name` of job `jobId` from the tasks `taskIds` (the task directories of the job;
 * those without this savepoint, and names that are no task id, are skipped). Refuses: no task has it
 * (CHECKPOINT_NOT_FOUND); a stage missing a partition's part (CHECKPOINT_NOT_FOUND, naming it); parts
 * of one stage taken with different partition counts (CHECKPOINT_CORRUPT); an unknown format
 * (SNAPSHOT_FORMAT_UNSUPPORTED); keyed state in a backend's own format when `openBackend` is not given.
 */
export async function readJobSavepoint(
  storage: CheckpointStorage,
  jobId: string,
  taskIds: readonly string[],
  name: string,
  openBackend?: (scope: Scope) => Promise<KeyedStateBackend>,
): Promise<JobSavepoint> {
  // A write of it interrupted after its commit point: its tasks' metadata are written first.
  await completeSavepointWrites(storage, jobId, name);
  const byStage = new Map<string, TaskSavepoint[]>();
  for (const taskId of taskIds) {
    // Not a task (`<stage>-p<n>`): e.g. the job's topology records (`_topology`, topology.ts).
    if (parseTaskId(taskId) === undefined) continue;
    const scope = { jobId, taskId };
    let meta: CheckpointMetadata;
    try {
      meta = await storage.loadSavepoint(name, scope);
    } catch (e) {
      if (e instanceof StreamError && e.code === 'CHECKPOINT_NOT_FOUND') continue;
      throw e;
    }
    const part = await readTask(storage, scope, meta, openBackend);
    const stage = part.payload.stage;
    const list = byStage.get(stage) ?? [];
    byStage.set(stage, list);
    list.push(part);
  }
  if (byStage.size === 0) {
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `job ${jobId} has no savepoint '${name}' (looked in ${taskIds.length} task director${taskIds.length === 1 ? 'y' : 'ies'}); 'kstate checkpoints ${jobId}' lists its savepoints`,
    );
  }
  const stages: StageSavepoint[] = [];
  for (const [stage, parts] of [...byStage].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const counts = new Set(parts.map((p) => p.payload.partitions));
    if (counts.size > 1) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `savepoint '${name}' of job ${jobId}: the tasks of stage ${stage} were taken with different partition counts (${[...counts].join(', ')}); it is not one savepoint`,
      );
    }
    const partitions = [...counts][0]!;
    const tasks: TaskSavepoint[] = [];
    for (let p = 0; p < partitions; p++) {
      const part = parts.find((t) => t.payload.partition === p);
      if (!part) {
        throw new StreamError(
          'CHECKPOINT_NOT_FOUND',
          `savepoint '${name}' of job ${jobId} has no part for task ${stage}-p${p} (stage ${stage} has ${partitions} partitions): it was taken while that task ran elsewhere or not at all; take the savepoint again with every task running`,
        );
      }
      tasks.push(part);
    }
    const partitioner = tasks[0]!.payload.partitioner;
    stages.push({ stage, partitions, ...(partitioner === undefined ? {} : { partitioner }), tasks });
  }
  return { jobId, name, stages };
}

async function readTask(
  storage: CheckpointStorage,
  scope: Scope,
  meta: CheckpointMetadata,
  openBackend: ((scope: Scope) => Promise<KeyedStateBackend>) | undefined,
): Promise<TaskSavepoint> {
  const restored = await readTaskSnapshot(storage, meta);
  let keyed = restored.keyed;
  if (!keyed) {
    const handle = restored.keyedHandle!;
    if (!openBackend) {
      throw new StreamError(
        'SNAPSHOT_FORMAT_UNSUPPORTED',
        `savepoint '${meta.savepoint}' of task ${scope.taskId} holds keyed state in the '${handle.backend}' backend's own format, not the canonical savepoint format: read it with that backend`,
      );
    }
    keyed = await materializeKeyedHandle(
      handle,
      checkpointFiles(storage, scope, meta.checkpointId, 'savepoint'),
      meta.checkpointId,
      () => openBackend(scope),
    );
  }
  return {
    taskId: scope.taskId,
    checkpointId: meta.checkpointId,
    timestamp: meta.timestamp,
    payload: restored.payload,
    keyed,
    operators: restored.operators,
    bytes: meta.files.reduce((n, f) => n + f.bytes, 0),
  };
}

/**
 * Write savepoint `name` of job `jobId`: for each stage and partition p, a keyed file and an
 * operators file in scope `<stage>-p<p>`, then its metadata; all of it appears at once, or nothing
 * under `name` (publish.ts: the files first, then one commit record, then the tasks' metadata). The
 * savepoint's checkpoint id is `checkpointId` (give one above every checkpoint the job has, so that
 * the savepoint reads as the newest state). Refuses a name any existing target task already has
 * (CONFIG_INVALID) before writing anything.
 */
export async function writeJobSavepoint(
  storage: CheckpointStorage,
  jobId: string,
  name: string,
  stages: readonly StageSavepointContent[],
  o: PublishOptions,
): Promise<CheckpointMetadata[]> {
  return publishJobSavepoint(storage, jobId, name, stages, o);
}

/** The highest checkpoint id committed in any of `scopes` (latest checkpoints and savepoints), or 0. */
export async function highestCheckpointId(
  storage: CheckpointStorage,
  scopes: readonly Scope[],
  savepoints: readonly TaskSavepoint[] = [],
): Promise<number> {
  let max = Math.max(0, ...savepoints.map((t) => t.checkpointId));
  // Damaged or vanished metadata says nothing about ids; a storage that cannot be read must not
  // pass for an empty one (a lower id would be reused), so its errors propagate.
  const unreadable =
    <T>(fallback: T) =>
    (e: unknown): T => {
      if (isStreamError(e, 'CHECKPOINT_CORRUPT') || isStreamError(e, 'CHECKPOINT_NOT_FOUND')) return fallback;
      throw e;
    };
  for (const scope of scopes) {
    const latest = await storage.latest(scope).catch(unreadable(undefined));
    if (latest) max = Math.max(max, latest.checkpointId);
    const list = (storage as { listSavepoints?: (s: Scope) => Promise<CheckpointMetadata[]> }).listSavepoints;
    const sps = list ? await list.call(storage, scope).catch(unreadable([] as CheckpointMetadata[])) : [];
    for (const m of sps) max = Math.max(max, m.checkpointId);
  }
  return max;
}
