import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isStreamError, StreamError } from '../api/errors.ts';
import { dataFilePath } from '../checkpoint/storage/layout.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import {
  type ChannelPosition,
  checkpointFiles,
  type OperatorsFile,
  TASK_SNAPSHOT_FORMAT,
  type TaskPayload,
  writeKeyedFile,
  writeOperatorsFile,
} from '../runtime/snapshot-io.ts';
import type { KeyedStateSnapshot } from '../state/backend.ts';

/**
 * Writing a whole-job savepoint offline (`kstate savepoint rescale`, `import`) so that it appears at
 * once or not at all. A savepoint is one metadata file per task (`<job>/<task>/savepoints/<name>.json`),
 * and neither storage can publish many files in one step (an object store has no rename, and the
 * files are in as many directories as tasks), so the job-level commit point is one record:
 *
 * 1. **pending** record `pending-<run>` (what the run will write: stages, checkpoint id, file names;
 *    its host and pid), committed before any file;
 * 2. every task's keyed and operators files (`<checkpointId>-keyed-sp-<name>`, `...-operators-...`):
 *    data files no metadata lists, which no reader ever opens;
 * 3. **published** record `published-<run>`, listing every task's file references and positions: the
 *    commit point (one metadata write, atomic on both storages);
 * 4. every task's metadata under `<name>`, made from the published record (deterministic, so
 *    writing one again gives the same bytes);
 * 5. the pending record deleted, then the published one.
 *
 * Both records are savepoint metadata of the pseudo-task `<job>/_savepoint-writes` (no task id: those
 * end in `-p<n>`). Killed before 3, the run leaves nothing under `<name>`: only unreferenced files and
 * its pending record. Killed after 3, the savepoint exists: `completeSavepointWrites` (run before a
 * savepoint is read: readJobSavepoint, a job start `--from-savepoint`, every savepoint write) writes
 * the task metadata still missing (step 4 again) and deletes the records.
 *
 * `settleSavepointWrites` (run before every write) finds the leftovers by listing that pseudo-task's
 * records: a pending record without its published one, of a run that is not alive (another host's
 * run, or a pid on this host that no longer runs), is a run that died before its commit point: the
 * files it names in each of its tasks are deleted where no metadata lists them (with the task's
 * directories if that empties them), then the record.
 */

/** What `writeJobSavepoint` writes for one task. */
export interface TaskSavepointContent {
  readonly keyed: KeyedStateSnapshot;
  readonly operators: OperatorsFile;
  readonly channels: TaskPayload['channels'];
}

export interface StageSavepointContent {
  readonly stage: string;
  /** The partitioner name its keys are placed by (recorded in every task's payload; absent: murmur2). */
  readonly partitioner?: string;
  /** `tasks[p]` for partition p; the stage has `tasks.length` partitions. */
  readonly tasks: readonly TaskSavepointContent[];
}

/** The pseudo-task holding the records of savepoint writes under way (see above). */
export const SAVEPOINT_WRITES_SCOPE = '_savepoint-writes';
const RECORD_FORMAT = 'kstate-savepoint-write';
/** Tasks written at once: the storage's requests overlap (fsyncs, or object-store round trips). */
const DEFAULT_CONCURRENCY = 8;

/** What a savepoint write has done, reported as it goes (for a progress line). */
export interface SavepointWriteProgress {
  readonly savepoint: string;
  /** 'files': the tasks' state files (step 2); 'publish': their metadata after the commit point (4). */
  readonly phase: 'files' | 'publish';
  readonly done: number;
  readonly total: number;
  /** Bytes of state files written so far (phase 'files'). */
  readonly bytes: number;
  readonly elapsedMs: number;
}

export interface PublishOptions {
  readonly checkpointId: number;
  /** Recorded in each task's payload ('savepoint', 'import'). */
  readonly backend: string;
  readonly timestamp?: number;
  /** Called after each task of each phase. */
  readonly progress?: (p: SavepointWriteProgress) => void;
  /** Lines worth a person's attention (leftovers cleaned, an interrupted write finished). */
  readonly log?: (line: string) => void;
  /** Tasks written at once (default 8). */
  readonly concurrency?: number;
}

interface StageShape {
  readonly stage: string;
  readonly partitions: number;
  readonly partitioner?: string;
}

interface PendingRecord {
  readonly format: typeof RECORD_FORMAT;
  readonly kind: 'pending';
  readonly savepoint: string;
  readonly run: string;
  readonly checkpointId: number;
  /** Data file names (without `<checkpointId>-`) the run writes in each of its tasks. */
  readonly files: readonly string[];
  readonly stages: readonly StageShape[];
  readonly host: string;
  readonly pid: number;
  readonly started: number;
}

/** One task's part: its two files and its channels. */
type Part = readonly [keyed: FileRef, operators: FileRef, channels: readonly ChannelPosition[]];

interface PublishedRecord {
  readonly format: typeof RECORD_FORMAT;
  readonly kind: 'published';
  readonly savepoint: string;
  readonly run: string;
  readonly checkpointId: number;
  readonly timestamp: number;
  readonly backend: string;
  readonly stages: readonly (StageShape & { readonly parts: readonly Part[] })[];
}

type WriteRecord = PendingRecord | PublishedRecord;

/** The storage methods beyond the CheckpointStorage contract the protocol needs (BaseCheckpointStorage has them). */
interface Staging {
  listSavepoints(scope: Scope): Promise<CheckpointMetadata[]>;
  deleteSavepoint(name: string, scope: Scope): Promise<void>;
  deleteUnreferenced(scope: Scope, paths: readonly string[]): Promise<string[]>;
}

function staging(storage: CheckpointStorage): (CheckpointStorage & Staging) | undefined {
  const s = storage as CheckpointStorage & Partial<Staging>;
  return typeof s.listSavepoints === 'function' &&
    typeof s.deleteSavepoint === 'function' &&
    typeof s.deleteUnreferenced === 'function'
    ? (s as CheckpointStorage & Staging)
    : undefined;
}

/** Runs of this process under way (never leftovers, whatever their pid says). */
const ownRuns = new Set<string>();

const recordsScope = (jobId: string): Scope => ({ jobId, taskId: SAVEPOINT_WRITES_SCOPE });
const fileNames = (name: string) => [`keyed-sp-${name}`, `operators-sp-${name}`];

/**
 * Write savepoint `name` of job `jobId` (see the protocol above): for each stage and partition p, a
 * keyed file and an operators file in scope `<stage>-p<p>`, then, once all are written, the commit
 * point, then each task's metadata. Refuses a name any existing target task already has, or that a
 * live run is writing (CONFIG_INVALID), before writing anything. A write that fails before its commit
 * point deletes what it wrote; one that fails after it leaves a savepoint that the next reader or
 * writer completes (and says so in the error).
 *
 * A storage without the staging methods (`listSavepoints`, `deleteSavepoint`, `deleteUnreferenced`)
 * gets the task metadata directly, one task after another.
 */
export async function publishJobSavepoint(
  storage: CheckpointStorage,
  jobId: string,
  name: string,
  stages: readonly StageSavepointContent[],
  o: PublishOptions,
): Promise<CheckpointMetadata[]> {
  const st = staging(storage);
  if (st) await settleSavepointWrites(st, jobId, o.log);
  await refuseTaken(storage, jobId, name, stages, st);
  const timestamp = o.timestamp ?? Date.now();
  const shapes: StageShape[] = stages.map((s) => ({
    stage: s.stage,
    partitions: s.tasks.length,
    ...(s.partitioner === undefined ? {} : { partitioner: s.partitioner }),
  }));
  const total = shapes.reduce((n, s) => n + s.partitions, 0);
  const concurrency = o.concurrency ?? DEFAULT_CONCURRENCY;
  const started = Date.now();
  if (!st) {
    const metas: CheckpointMetadata[] = [];
    for (const s of stages)
      for (const [p, t] of s.tasks.entries()) {
        const part = await writeFiles(storage, jobId, name, s.stage, p, t, o.checkpointId);
        const meta = taskMetadata(jobId, name, shapes.find((x) => x.stage === s.stage)!, p, part, {
          checkpointId: o.checkpointId,
          timestamp,
          backend: o.backend,
        });
        await storage.commit(meta);
        metas.push(meta);
      }
    return metas;
  }
  const run = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const pending: PendingRecord = {
    format: RECORD_FORMAT,
    kind: 'pending',
    savepoint: name,
    run,
    checkpointId: o.checkpointId,
    files: fileNames(name),
    stages: shapes,
    host: hostname(),
    pid: process.pid,
    started,
  };
  ownRuns.add(run);
  try {
    await st.commit(recordMeta(jobId, `pending-${run}`, pending, timestamp));
    // Step 2: the files, `concurrency` tasks at a time.
    const tasks = stages.flatMap((s, i) => s.tasks.map((t, p) => ({ i, s, p, t })));
    const parts: Part[][] = stages.map((s) => new Array<Part>(s.tasks.length));
    let bytes = 0;
    let done = 0;
    try {
      await inParallel(tasks, concurrency, async ({ i, s, p, t }) => {
        const part = await writeFiles(storage, jobId, name, s.stage, p, t, o.checkpointId);
        parts[i]![p] = part;
        bytes += part[0].bytes + part[1].bytes;
        done++;
        o.progress?.({
          savepoint: name,
          phase: 'files',
          done,
          total,
          bytes,
          elapsedMs: Date.now() - started,
        });
      });
    } catch (e) {
      // Before the commit point: take back what this run wrote (best effort; else the next run does).
      await discardOwn(st, jobId, pending).catch(() => undefined);
      throw e;
    }
    // Step 3: the commit point.
    const published: PublishedRecord = {
      format: RECORD_FORMAT,
      kind: 'published',
      savepoint: name,
      run,
      checkpointId: o.checkpointId,
      timestamp,
      backend: o.backend,
      stages: shapes.map((s, i) => ({ ...s, parts: parts[i]! })),
    };
    try {
      await st.commit(recordMeta(jobId, `published-${run}`, published, timestamp));
    } catch (e) {
      // It may have landed (a lost answer): then it is complete, and the next reader finishes it.
      const landed = await readRecords(st, jobId).then(
        (rs) => rs.some((r) => r.kind === 'published' && r.run === run),
        () => true,
      );
      if (!landed) await discardOwn(st, jobId, pending).catch(() => undefined);
      throw e;
    }
    // Steps 4 and 5.
    try {
      return await materialize(st, jobId, published, (n) =>
        o.progress?.({
          savepoint: name,
          phase: 'publish',
          done: n,
          total,
          bytes,
          elapsedMs: Date.now() - started,
        }),
      );
    } catch (e) {
      throw new StreamError(
        isStreamError(e) ? e.code : 'CHECKPOINT_STORAGE_FAILED',
        `savepoint '${name}' of job ${jobId} is written and committed, but writing its tasks' metadata failed: the next 'kstate savepoint' command or job start from it finishes that (${e instanceof Error ? e.message : String(e)})`,
        { cause: e },
      );
    }
  } finally {
    ownRuns.delete(run);
  }
}

/**
 * Finish savepoint `name` where a write was interrupted after its commit point: its tasks' metadata
 * still missing are written, and the write's records deleted. Returns whether there was one. One
 * listing of the job's write records (usually none) when there is nothing to do.
 */
export async function completeSavepointWrites(
  storage: CheckpointStorage,
  jobId: string,
  name: string,
  log?: (line: string) => void,
): Promise<boolean> {
  const st = staging(storage);
  if (!st) return false;
  const records = await readRecords(st, jobId);
  let found = false;
  for (const r of records) {
    if (r.kind !== 'published' || r.savepoint !== name) continue;
    found = true;
    await materialize(st, jobId, r);
    log?.(`finished savepoint '${name}' of job ${jobId}, whose write was interrupted after it was committed`);
  }
  return found;
}

/**
 * Before a write: finish every write interrupted after its commit point, and remove the leftovers
 * of every write that died before it (not those of live runs: this process's, or a pid alive on this
 * host). Returns what it did.
 */
export async function settleSavepointWrites(
  storage: CheckpointStorage,
  jobId: string,
  log?: (line: string) => void,
): Promise<{ finished: string[]; cleaned: { savepoint: string; files: number }[] }> {
  const st = staging(storage);
  const out = { finished: [] as string[], cleaned: [] as { savepoint: string; files: number }[] };
  if (!st) return out;
  const records = await readRecords(st, jobId);
  for (const r of records) {
    if (r.kind !== 'published') continue;
    await materialize(st, jobId, r);
    out.finished.push(r.savepoint);
    log?.(
      `finished savepoint '${r.savepoint}' of job ${jobId}, whose write was interrupted after it was committed`,
    );
  }
  for (const r of records) {
    if (r.kind !== 'pending' || records.some((x) => x.kind === 'published' && x.run === r.run)) continue;
    if (alive(r)) continue;
    const files = await removeLeftovers(st, jobId, r);
    out.cleaned.push({ savepoint: r.savepoint, files });
    log?.(
      `removed the leftovers of an interrupted write of savepoint '${r.savepoint}' of job ${jobId} (started ${new Date(r.started).toISOString()} by pid ${r.pid} on ${r.host}): ${files} files; nothing of it was visible`,
    );
  }
  if (records.length > 0) await st.deleteUnreferenced(recordsScope(jobId), []); // its directories, if empty
  return out;
}

/** Whether the run of `r` may still be writing. */
function alive(r: PendingRecord): boolean {
  if (ownRuns.has(r.run)) return true;
  if (r.host !== hostname()) return false;
  if (r.pid === process.pid) return false; // this process, and not one of its runs under way
  try {
    process.kill(r.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readRecords(st: CheckpointStorage & Staging, jobId: string): Promise<WriteRecord[]> {
  const metas = await st.listSavepoints(recordsScope(jobId));
  return metas
    .map((m) => m.payload as WriteRecord)
    .filter((r) => r?.format === RECORD_FORMAT && (r.kind === 'pending' || r.kind === 'published'));
}

function recordMeta(jobId: string, name: string, record: WriteRecord, timestamp: number): CheckpointMetadata {
  return {
    formatVersion: 1,
    jobId,
    taskId: SAVEPOINT_WRITES_SCOPE,
    checkpointId: record.checkpointId,
    savepoint: name,
    timestamp,
    files: [],
    type: 'full',
    payload: record,
  };
}

/** This process's own run `r` failed before its commit point: its files (`discard`), then as a leftover. */
async function discardOwn(st: CheckpointStorage & Staging, jobId: string, r: PendingRecord): Promise<void> {
  const tasks = r.stages.flatMap((s) => Array.from({ length: s.partitions }, (_, p) => `${s.stage}-p${p}`));
  await inParallel(tasks, DEFAULT_CONCURRENCY, (taskId) => st.discard({ jobId, taskId }, r.checkpointId));
  await removeLeftovers(st, jobId, r);
}

/** Deletes the files `r` names in each of its tasks that no metadata lists, then `r`. Returns how many. */
async function removeLeftovers(
  st: CheckpointStorage & Staging,
  jobId: string,
  r: PendingRecord,
): Promise<number> {
  let count = 0;
  const tasks = r.stages.flatMap((s) => Array.from({ length: s.partitions }, (_, p) => `${s.stage}-p${p}`));
  await inParallel(tasks, DEFAULT_CONCURRENCY, async (taskId) => {
    const scope = { jobId, taskId };
    const paths = r.files.map((f) => dataFilePath(scope, r.checkpointId, f));
    const deleted = await st.deleteUnreferenced(scope, paths);
    count += deleted.length;
  });
  await deleteRecord(st, jobId, `pending-${r.run}`);
  return count;
}

/** Step 4 and 5 of the protocol for `r`: every task's metadata, then the records. */
async function materialize(
  st: CheckpointStorage & Staging,
  jobId: string,
  r: PublishedRecord,
  progress?: (done: number) => void,
): Promise<CheckpointMetadata[]> {
  const metas = r.stages.flatMap((s) =>
    s.parts.map((part, p) =>
      taskMetadata(jobId, r.savepoint, s, p, part, {
        checkpointId: r.checkpointId,
        timestamp: r.timestamp,
        backend: r.backend,
      }),
    ),
  );
  let done = 0;
  await inParallel(metas, DEFAULT_CONCURRENCY, async (meta) => {
    // The same bytes again when written before (commit accepts that); other content is refused.
    await st.commit(meta);
    progress?.(++done);
  });
  await deleteRecord(st, jobId, `pending-${r.run}`);
  await deleteRecord(st, jobId, `published-${r.run}`);
  await st.deleteUnreferenced(recordsScope(jobId), []); // its directories, when no record is left
  return metas;
}

async function deleteRecord(st: CheckpointStorage & Staging, jobId: string, name: string): Promise<void> {
  try {
    await st.deleteSavepoint(name, recordsScope(jobId));
  } catch (e) {
    if (!isStreamError(e, 'CHECKPOINT_NOT_FOUND')) throw e; // another process finished it
  }
}

async function writeFiles(
  storage: CheckpointStorage,
  jobId: string,
  name: string,
  stage: string,
  p: number,
  t: StageSavepointContent['tasks'][number],
  checkpointId: number,
): Promise<Part> {
  const files = checkpointFiles(storage, { jobId, taskId: `${stage}-p${p}` }, checkpointId, `sp-${name}`);
  const keyed = await writeKeyedFile(files, t.keyed);
  const operators = await writeOperatorsFile(files, t.operators);
  return [keyed, operators, t.channels];
}

function taskMetadata(
  jobId: string,
  name: string,
  s: StageShape,
  p: number,
  [keyed, operators, channels]: Part,
  o: { checkpointId: number; timestamp: number; backend: string },
): CheckpointMetadata {
  const payload: TaskPayload = {
    format: TASK_SNAPSHOT_FORMAT,
    stage: s.stage,
    partition: p,
    partitions: s.partitions,
    ...(s.partitioner === undefined ? {} : { partitioner: s.partitioner }),
    backend: o.backend,
    unaligned: false,
    channels,
    keyedFile: keyed.path,
    operatorsFile: operators.path,
  };
  return {
    formatVersion: 1,
    jobId,
    taskId: `${s.stage}-p${p}`,
    checkpointId: o.checkpointId,
    savepoint: name,
    timestamp: o.timestamp,
    files: [keyed, operators],
    type: 'full',
    payload,
  };
}

/**
 * Refuses `name` when an existing target task has a savepoint of that name, or a live run writes it.
 * Only tasks with a directory can have one: one listing of the job, then one read per existing target.
 */
async function refuseTaken(
  storage: CheckpointStorage,
  jobId: string,
  name: string,
  stages: readonly StageSavepointContent[],
  st: (CheckpointStorage & Staging) | undefined,
): Promise<void> {
  if (st) {
    // Left after settleSavepointWrites: runs that may still be writing.
    const live = (await readRecords(st, jobId)).find(
      (r): r is PendingRecord => r.savepoint === name && r.kind === 'pending',
    );
    if (live) {
      throw new StreamError(
        'CONFIG_INVALID',
        `savepoint '${name}' of job ${jobId} is being written by pid ${live.pid} on ${live.host} (since ${new Date(live.started).toISOString()}): wait for it, or choose another name`,
      );
    }
  }
  const existing = new Set(await storage.tasks(jobId));
  for (const s of stages) {
    for (let p = 0; p < s.tasks.length; p++) {
      const scope = { jobId, taskId: `${s.stage}-p${p}` };
      if (!existing.has(scope.taskId)) continue;
      try {
        await storage.loadSavepoint(name, scope);
      } catch (e) {
        if (isStreamError(e, 'CHECKPOINT_NOT_FOUND')) continue;
        throw e;
      }
      throw new StreamError(
        'CONFIG_INVALID',
        `task ${scope.taskId} of job ${jobId} already has a savepoint '${name}': choose another name`,
      );
    }
  }
}

/** `fn` over `items`, at most `n` at once; the first failure is thrown once all started ones settle. */
async function inParallel<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { e: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failure ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failure) throw failure.e;
}
