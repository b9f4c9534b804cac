import type { Partitioner } from '../api/keys.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { checkExportTarget, exportSavepoint } from './export.ts';
import { type SavepointFiles, savepointFiles } from './files.ts';
import { importNdjson } from './import.ts';
import type { NdjsonManifest } from './manifest.ts';
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
  const scopes = [
    ...new Set([...taskIds, ...stages.flatMap((s) => s.tasks.map((_, p) => `${s.stage}-p${p}`))]),
  ].map((taskId) => ({ jobId, taskId }));
  const checkpointId =
    (await highestCheckpointId(
      storage,
      scopes,
      sp.stages.flatMap((s) => s.tasks),
    )) + 1;
  const written = await writeJobSavepoint(storage, jobId, o.as, stages, {
    checkpointId,
    backend: 'savepoint',
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
  },
): Promise<{ manifest: NdjsonManifest; checkpointId: number; written: readonly CheckpointMetadata[] }> {
  const { manifest, stages } = await importNdjson(savepointFiles(dir), {
    partitions: o.partitions,
    ...(o.known ? { known: o.known } : {}),
    ...(o.partitioner ? { partitioner: o.partitioner } : {}),
  });
  const scopes = [
    ...new Set([
      ...(o.existingTaskIds ?? []),
      ...stages.flatMap((s) => s.tasks.map((_, p) => `${s.stage}-p${p}`)),
    ]),
  ].map((taskId) => ({ jobId, taskId }));
  const checkpointId = (await highestCheckpointId(storage, scopes)) + 1;
  const written = await writeJobSavepoint(storage, jobId, o.as, stages, { checkpointId, backend: 'import' });
  return { manifest, checkpointId, written };
}
