import type { Partitioner } from '../api/keys.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { checkExportTarget, exportSavepoint } from './export.ts';
import { type SavepointFiles, savepointFiles } from './files.ts';
import { importNdjson } from './import.ts';
import type { NdjsonManifest } from './manifest.ts';
import type { SavepointWriteProgress } from './publish.ts';
import { type PositionQuery, rescaleStage } from './rescale.ts';
import {
  highestCheckpointId,
  type JobSavepoint,
  readJobSavepoint,
  writeJobSavepoint,
} from './savepoint-io.ts';

/**
 * The offline savepoint operations behind `kstate savepoint rescale|export|import`, over checkpoint
 * storage. Run them while the job is stopped: they write new savepoints into the job's task
 * directories, which a running job's retention does not know about until they are committed.
 */

export interface RescaleSavepointOptions {
  /** The new savepoint's name. */
  readonly as: string;
  /** The new partition count of each stage (by stage name). */
  readonly partitions: (stage: string, old: number) => number;
  /** Rewrite source positions (see `RescaleOptions.position`). */
  readonly position?: (q: PositionQuery & { readonly stage: string }) => unknown;
  /** A stage's partitioner, when it is a function (see `RescaleOptions.partitioner`). */
  readonly partitioner?: (stage: string) => Partitioner | undefined;
  readonly openBackend?: (scope: Scope) => Promise<KeyedStateBackend>;
  /** The savepoint, when the caller has read it already (`readJobSavepoint`). */
  readonly savepoint?: JobSavepoint;
  /** Called as the new savepoint's tasks are written (see `SavepointWriteProgress`). */
  readonly progress?: (p: SavepointWriteProgress) => void;
  /** Lines worth a person's attention (leftovers of an interrupted write removed ...). */
  readonly log?: (line: string) => void;
}

export interface RescaleReport {
  readonly stages: readonly { stage: string; from: number; to: number; keys: number }[];
  readonly checkpointId: number;
  readonly written: readonly CheckpointMetadata[];
}

/** Read savepoint `name`, re-shard every stage, write it as `o.as` (with a checkpoint id above all others). */
export async function rescaleSavepoint(
  storage: CheckpointStorage,
  jobId: string,
  taskIds: readonly string[],
  name: string,
  o: RescaleSavepointOptions,
): Promise<RescaleReport> {
  const sp = o.savepoint ?? (await readJobSavepoint(storage, jobId, taskIds, name, o.openBackend));
  const stages = sp.stages.map((s) =>
    rescaleStage(s, {
      partitions: o.partitions(s.stage, s.partitions),
      ...(o.position ? { position: (q: PositionQuery) => o.position!({ ...q, stage: s.stage }) } : {}),
      ...(o.partitioner?.(s.stage) === undefined ? {} : { partitioner: o.partitioner(s.stage)! }),
    }),
  );
  const scopes = await storedScopes(storage, jobId, [
    ...taskIds,
    ...stages.flatMap((s) => s.tasks.map((_, p) => `${s.stage}-p${p}`)),
  ]);
  const checkpointId =
    (await highestCheckpointId(
      storage,
      scopes,
      sp.stages.flatMap((s) => s.tasks),
    )) + 1;
  const written = await writeJobSavepoint(storage, jobId, o.as, stages, {
    checkpointId,
    backend: 'savepoint',
    ...(o.progress ? { progress: o.progress } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  return {
    stages: sp.stages.map((s, i) => ({
      stage: s.stage,
      from: s.partitions,
      to: stages[i]!.tasks.length,
      keys: keyCount(s.tasks.map((t) => t.keyed)),
    })),
    checkpointId,
    written,
  };
}

/**
 * The scopes among `taskIds` that exist in storage (one listing of the job): only they can hold
 * checkpoints, and a rescale to 100,000 tasks should not look into 100,000 empty directories.
 */
async function storedScopes(
  storage: CheckpointStorage,
  jobId: string,
  taskIds: readonly string[],
): Promise<Scope[]> {
  const stored = new Set(await storage.tasks(jobId));
  return [...new Set(taskIds)].filter((t) => stored.has(t)).map((taskId) => ({ jobId, taskId }));
}

/** What writing a savepoint of `tasks` tasks is expected to take, from a savepoint read before. */
export interface SavepointSizeEstimate {
  /** Tasks and bytes of the source savepoint's files. */
  readonly sourceTasks: number;
  readonly sourceBytes: number;
  readonly tasks: number;
  /** Bytes of the new savepoint's state files: the state moves, the per-task part repeats. */
  readonly bytes: number;
  /** The part of each source task's files that is not keyed entries (headers, operator state). */
  readonly perTaskBytes: number;
}

/**
 * Estimate the size of `sp` rescaled to `partitions` (from the source's file sizes): keyed entries
 * are moved, not copied, so they count once; the rest of a task's files (format headers, state
 * descriptors, operator, broadcast and union state, timers) is counted once per new task, at its
 * average in the source.
 */
export function estimateRescale(
  sp: JobSavepoint,
  partitions: (stage: string, old: number) => number,
): SavepointSizeEstimate {
  let sourceTasks = 0;
  let sourceBytes = 0;
  let tasks = 0;
  let bytes = 0;
  let perTask = 0;
  for (const s of sp.stages) {
    const m = partitions(s.stage, s.partitions);
    const files = s.tasks.reduce((n, t) => n + (t.bytes ?? 0), 0);
    const entries = s.tasks.reduce(
      (n, t) =>
        n +
        t.keyed.states.reduce(
          // As the keyed file frames an entry: [keyId, bytes] in msgpack, about 5 bytes besides both.
          (a, st) =>
            a + st.entries.reduce((b, [k, v]) => b + Buffer.byteLength(String(k)) + v.byteLength + 5, 0),
          0,
        ),
      0,
    );
    const overhead = Math.max(0, files - entries) / Math.max(1, s.tasks.length);
    sourceTasks += s.tasks.length;
    sourceBytes += files;
    tasks += m;
    bytes += Math.min(entries, files) + m * overhead;
    perTask = Math.max(perTask, overhead);
  }
  return { sourceTasks, sourceBytes, tasks, bytes: Math.round(bytes), perTaskBytes: Math.round(perTask) };
}

function keyCount(snaps: readonly { states: readonly { entries: readonly unknown[] }[] }[]): number {
  return snaps.reduce((n, s) => n + s.states.reduce((m, st) => m + st.entries.length, 0), 0);
}

/**
 * Export savepoint `name` as NDJSON (see `exportSavepoint`) to `dir`: a directory path, or
 * SavepointFiles (an object-store prefix: kstate/s3's S3SavepointFiles).
 */
export async function exportSavepointToDirectory(
  storage: CheckpointStorage,
  jobId: string,
  taskIds: readonly string[],
  name: string,
  dir: string | SavepointFiles,
  openBackend?: (scope: Scope) => Promise<KeyedStateBackend>,
): Promise<{ savepoint: JobSavepoint; manifest: NdjsonManifest }> {
  const files = savepointFiles(dir);
  await checkExportTarget(files); // before the savepoint is read: a wrong target fails at once
  const savepoint = await readJobSavepoint(storage, jobId, taskIds, name, openBackend);
  const manifest = await exportSavepoint(savepoint, files);
  return { savepoint, manifest };
}

/**
 * Build savepoint `o.as` of job `jobId` from NDJSON (see `importNdjson`) in `dir`: a directory path, or
 * SavepointFiles (an object-store prefix).
 */
export async function importSavepointFromDirectory(
  storage: CheckpointStorage,
  jobId: string,
  dir: string | SavepointFiles,
  o: {
    as: string;
    partitions: (stage: string, exported: number) => number;
    known?: ReadonlyMap<string, ReadonlySet<string> | undefined>;
    existingTaskIds?: readonly string[];
    /** A stage's partitioner, when the manifest names a function (see `importNdjson`). */
    partitioner?: (stage: string) => Partitioner | undefined;
    /** Called as the savepoint's tasks are written (see `SavepointWriteProgress`). */
    progress?: (p: SavepointWriteProgress) => void;
    /** Lines worth a person's attention (leftovers of an interrupted write removed ...). */
    log?: (line: string) => void;
  },
): Promise<{ manifest: NdjsonManifest; checkpointId: number; written: readonly CheckpointMetadata[] }> {
  const { manifest, stages } = await importNdjson(savepointFiles(dir), {
    partitions: o.partitions,
    ...(o.known ? { known: o.known } : {}),
    ...(o.partitioner ? { partitioner: o.partitioner } : {}),
  });
  const scopes = await storedScopes(storage, jobId, [
    ...(o.existingTaskIds ?? []),
    ...stages.flatMap((s) => s.tasks.map((_, p) => `${s.stage}-p${p}`)),
  ]);
  const checkpointId = (await highestCheckpointId(storage, scopes)) + 1;
  const written = await writeJobSavepoint(storage, jobId, o.as, stages, {
    checkpointId,
    backend: 'import',
    ...(o.progress ? { progress: o.progress } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  return { manifest, checkpointId, written };
}
