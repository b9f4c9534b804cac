import { createHash } from 'node:crypto';
import { isStreamError, StreamError } from '../api/errors.ts';
import type { CheckpointPointer } from '../api/sink.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import type { JobPlan, StagePlan } from '../graph/plan.ts';
import {
  checkpointFiles,
  materializeKeyedHandle,
  readPointedMetadata,
  readTaskSnapshot,
  TASK_SNAPSHOT_FORMAT,
  type TaskPayload,
  writeKeyedFile,
  writeOperatorsFile,
} from '../runtime/snapshot-io.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { KEYED_SNAPSHOT_FORMAT_VERSION } from '../state/state-meta.ts';
import { completeSavepointWrites } from './publish.ts';
import { restructureJob, type TargetStage, type UnclaimedState } from './restructure.ts';
import {
  parseTaskId,
  readJobSavepoint,
  type StageSavepoint,
  type StageSavepointContent,
  type TaskSavepoint,
} from './savepoint-io.ts';
import {
  commitSavepointTopology,
  commitTopologyRecord,
  describeChange,
  type JobTopology,
  jobTopology,
  readSavepointTopology,
  readTopologyRecord,
  type SourceTopology,
  type StageTopology,
  sameLayout,
  type TopologyRecord,
} from './topology.ts';

/**
 * Where the tasks of a job start, decided once before any of them starts (docs/savepoints.md, "Job
 * changes"): state belongs to operators by uid, wherever the stage boundaries of this version of the
 * job put them.
 *
 * - Same layout as recorded (the hot path: one read of the topology record): every task restores its
 *   newest committed checkpoint, or the savepoint its layout started from (the descent rule of
 *   `Task`: a task whose newest checkpoint descends from it takes that checkpoint).
 * - `--from-savepoint X` whose recorded run descends from X (`descendsFrom`: the flag kept in a
 *   deployment's arguments): as without the flag, so a later layout change re-cuts the committed
 *   checkpoints, never X again.
 * - `--from-savepoint X` of another layout: once no instance of the recorded layout runs and its
 *   sink tasks are fenced (`quiesce`), X is re-cut into this layout (`restructureJob`) as the
 *   savepoint `X.<layout hash>`, written before any task starts, and every task starts from that.
 * - A restart whose recorded layout differs: once no instance of the old job runs (`exclusive`), the
 *   committed checkpoints of all old tasks are one consistent cut of the job (each task committed its
 *   state, positions and output atomically, and nothing commits any more): they are read (after
 *   fencing what old tasks left open), re-cut into this layout, and written as the savepoint
 *   `job-change-<hash of the cut and the layout>`, which every task starts from.
 *
 * State the new layout has no place for (`UnclaimedState`) refuses the start with STATE_NOT_RESTORED,
 * or is dropped with one warning when `allowNonRestoredState` is set.
 *
 * Concurrency: the derived savepoint's name and content are functions of what was read, so two
 * instances deciding at once write the same files; the topology record is the commit point
 * (`commitTopologyRecord` never overwrites a version): the instance that loses reads the record again
 * and follows it. An instance still waiting in `exclusive` (or about to fence) when another records the
 * layout stops there and follows the record too (`Superseded`): new instances started together do not
 * block or fence each other.
 */

/** What the environment (Kafka, the service) tells and does for a job change. */
export interface JobChangeHooks {
  /**
   * Resolves 'exclusive' once no instance of the job runs any more (it may wait for killed instances
   * to leave); throws when others run. Called before the state of the old job is read (a re-cut of
   * the last run or of a `--from-savepoint` of another layout). While it waits it asks `superseded`
   * (each poll): true means another instance recorded a layout meanwhile (new instances started
   * together: the first one's members are no old job), and it resolves 'superseded' at once.
   */
  exclusive?(superseded: () => Promise<boolean>): Promise<'exclusive' | 'superseded'>;
  /**
   * Fences what the old tasks (of stages with a sink) may have left open (Kafka: their transactions),
   * before their committed state is read.
   */
  fence?(taskIds: readonly string[]): Promise<void>;
  /**
   * The pointer an old task's sink committed with its last checkpoint (Kafka: the metadata of the
   * group's committed offsets of the stage's input partitions); undefined: the storage's latest.
   */
  committedPointer?(stage: StageTopology, partition: number): Promise<CheckpointPointer | undefined>;
  /** Records not consumed at `position` of a source the new job no longer reads. */
  backlog?(source: SourceTopology, partition: number, position: unknown): Promise<number | undefined>;
  /** Where partition `partition` of a source the old job did not read starts (undefined: its own start). */
  startPosition?(source: SourceTopology, partition: number): Promise<unknown>;
  /**
   * The task ids that have directories in checkpoint storage (for savepoints of unknown layout).
   * Default: listed from a filesystem or memory storage (`storedTaskIds`).
   */
  taskIds?(): Promise<readonly string[]>;
}

export interface JobStartOptions {
  readonly storage: CheckpointStorage;
  readonly jobId: string;
  readonly plan: JobPlan;
  /** The user's `--from-savepoint`. */
  readonly savepoint?: string | undefined;
  readonly allowNonRestoredState: boolean;
  readonly hooks?: JobChangeHooks;
  /** A scratch backend to read keyed state kept in a backend's own format (level checkpoints). */
  readonly openBackend: (scope: Scope) => Promise<KeyedStateBackend>;
  readonly warn?: (message: string) => void;
  readonly info?: (message: string) => void;
}

export interface JobStart {
  /** The savepoint every task restores from (descent rule), or undefined: its newest checkpoint. */
  readonly savepoint: string | undefined;
  /** Set when this start re-cut state into a new layout. */
  readonly changed?: {
    readonly changes: readonly string[];
    /** The savepoint derived for the new layout; undefined when nothing moved. */
    readonly derived: string | undefined;
    readonly dropped: readonly UnclaimedState[];
  };
}

/** Decide where the tasks start, re-cutting state first if the layout changed; records the layout. */
export async function prepareJobStart(o: JobStartOptions): Promise<JobStart> {
  const topology = jobTopology(o.jobId, o.plan);
  for (let attempt = 0; attempt < 5; attempt++) {
    const rec = await readTopologyRecord(o.storage, o.jobId);
    // The record changed since `rec` was read: another instance decided (and may run tasks already).
    const superseded = async () =>
      ((await readTopologyRecord(o.storage, o.jobId))?.version ?? 0) !== (rec?.version ?? 0);
    // `--from-savepoint X` kept in the arguments of a job that has run from X since: X is history,
    // its tasks' committed checkpoints are the state (a re-cut of X would rewind the job).
    const user =
      o.savepoint !== undefined && !(rec && descendsFrom(rec.record, o.savepoint)) ? o.savepoint : undefined;
    const origin = user ?? rec?.record.origin;
    let start: JobStart;
    try {
      if (user !== undefined) {
        start = await fromSavepoint(o, topology, user, rec?.record, superseded);
      } else if (!rec) {
        await warnUnrecorded(o, topology);
        start = { savepoint: undefined };
      } else if (sameLayout(rec.record.topology, topology)) {
        return { savepoint: rec.record.savepoint };
      } else {
        start = await fromCommitted(o, topology, rec.record, superseded);
      }
    } catch (e) {
      if (!(e instanceof Superseded)) throw e;
      o.info?.('another instance recorded the job topology while this one waited: following it');
      continue;
    }
    const record: TopologyRecord = {
      topology,
      ...(start.savepoint !== undefined ? { savepoint: start.savepoint } : {}),
      ...(origin !== undefined ? { origin } : {}),
    };
    if (
      rec &&
      sameLayout(rec.record.topology, topology) &&
      rec.record.savepoint === start.savepoint &&
      rec.record.origin === origin
    )
      return start;
    if (await commitTopologyRecord(o.storage, o.jobId, (rec?.version ?? 0) + 1, record)) return start;
    o.info?.('another instance recorded the job topology meanwhile: deciding again');
  }
  throw new StreamError(
    'CHECKPOINT_STORAGE_FAILED',
    `job ${o.jobId}: the topology record keeps changing under this start (other instances starting with other versions of the job?)`,
  );
}

/** Thrown inside a start decision when another instance recorded the topology meanwhile: decide again. */
class Superseded extends Error {}

/**
 * Does the recorded layout's run descend from the user's savepoint `name`: its tasks started from it,
 * from a savepoint derived from it (`name.<layout hash>`), or from a job change of such a run (`origin`)?
 */
function descendsFrom(rec: TopologyRecord, name: string): boolean {
  if (rec.origin === name || rec.savepoint === name) return true;
  const prefix = `${name.slice(0, 150)}.`;
  return (
    rec.savepoint?.startsWith(prefix) === true && /^[0-9a-f]{12}$/.test(rec.savepoint.slice(prefix.length))
  );
}

/**
 * Before the old job's state is read: wait until no old instance runs, then (unless another instance
 * decided meanwhile: `Superseded`) fence what old tasks of stages with a sink left open.
 */
async function quiesce(
  o: JobStartOptions,
  old: readonly JobTopology[],
  superseded: () => Promise<boolean>,
): Promise<void> {
  if ((await o.hooks?.exclusive?.(superseded)) === 'superseded') throw new Superseded();
  // Right before fencing: new tasks of unchanged stages use the same transactional ids.
  if (await superseded()) throw new Superseded();
  const ids = new Set(
    old.flatMap((t) =>
      tasksOf({ ...t, stages: t.stages.filter((s) => s.operators.some((x) => x.kind === 'sink')) }),
    ),
  );
  if (ids.size > 0) await o.hooks?.fence?.([...ids].sort());
}

/** The new job's stages as `restructureJob` sees them (`plan` gives each stage's partitioner). */
function targetsOf(topology: JobTopology, plan: JobPlan): TargetStage[] {
  const partitioners = new Map<string, StagePlan['partitioner']>();
  for (const st of plan.stages) {
    const nodes = new Set(st.nodes.map((id) => plan.graph.nodes[id]!.uid));
    const t = topology.stages.find((s) => s.operators.some((x) => nodes.has(x.uid)));
    if (t) partitioners.set(t.stage, st.partitioner);
  }
  return topology.stages.map((s) => ({
    stage: s.stage,
    partitions: s.partitions,
    operators: s.operators.map((x) => x.uid),
    sources: s.sources.map((x) => ({ uid: x.uid, broadcast: x.broadcast })),
    ...(partitioners.has(s.stage) ? { partitioner: partitioners.get(s.stage)! } : {}),
  }));
}

/** The task ids with checkpoints or savepoints in `storage` (not the job's `_topology` record). */
export async function storedTaskIds(storage: CheckpointStorage, jobId: string): Promise<string[]> {
  return (await storage.tasks(jobId)).filter((id) => parseTaskId(id) !== undefined);
}

async function listTaskIds(o: JobStartOptions): Promise<readonly string[]> {
  return o.hooks?.taskIds ? o.hooks.taskIds() : storedTaskIds(o.storage, o.jobId);
}

async function warnUnrecorded(o: JobStartOptions, topology: JobTopology): Promise<void> {
  const ids = await listTaskIds(o);
  const known = new Set(topology.stages.map((s) => s.stage));
  const foreign = [...new Set(ids.flatMap((id) => parseTaskId(id)?.stage ?? []))].filter(
    (s) => !known.has(s),
  );
  if (foreign.length > 0) {
    o.warn?.(
      `job ${o.jobId}: checkpoint storage holds tasks of stage(s) ${foreign.join(', ')}, which this job does not have, and no record of the job's topology says whether they are current (checkpoints of an older build): their state is not restored. If the job's stages changed since its last run, stop it and start it from a savepoint taken before the change ('kstate run --from-savepoint'), which is re-cut by operator uid`,
    );
  }
}

// ---------------------------------------------------------------- from a savepoint

async function fromSavepoint(
  o: JobStartOptions,
  topology: JobTopology,
  name: string,
  rec: TopologyRecord | undefined,
  superseded: () => Promise<boolean>,
): Promise<JobStart> {
  // Another layout than the last run's: as for a change of the last run, no instance of it may still
  // run, and what its killed tasks left open (of stages this layout may not have) is aborted first.
  if (!rec || !sameLayout(rec.topology, topology)) await quiesce(o, rec ? [rec.topology] : [], superseded);
  // An offline write of it (rescale, import) interrupted after its commit point is finished first.
  await completeSavepointWrites(o.storage, o.jobId, name, o.info);
  const recorded = await readSavepointTopology(o.storage, o.jobId, name);
  if (recorded && sameLayout(recorded, topology)) return { savepoint: name };
  const derived = `${name.slice(0, 150)}.${layoutHash(topology)}`;
  // Derived before (by this or another instance): its topology is written after all its parts.
  if (await readSavepointTopology(o.storage, o.jobId, derived)) return { savepoint: derived };
  const candidates = new Set<string>([
    ...tasksOf(topology),
    ...(recorded ? tasksOf(recorded) : []),
    ...(rec ? tasksOf(rec.topology) : []),
    ...(await listTaskIds(o)),
  ]);
  const sp = await readJobSavepoint(o.storage, o.jobId, [...candidates].sort(), name, o.openBackend);
  const result = restructureJob(sp.stages, targetsOf(topology, o.plan), {
    ...(recorded ? oldUids(recorded) : {}),
  });
  checkUnclaimed(o, result.unclaimed, `savepoint '${name}'`);
  const changes = recorded ? describeChange(recorded, topology) : [`savepoint '${name}' has another layout`];
  if (!result.moved && result.unclaimed.length === 0) {
    // It fits as it is (a savepoint rescaled or imported offline): say so for the next start.
    await commitSavepointTopology(o.storage, o.jobId, name, topology);
    return { savepoint: name };
  }
  const ids = sp.stages.flatMap((s) => s.tasks.map((t) => t.checkpointId));
  await writeDerived(o, derived, result.stages, {
    checkpointId: Math.max(0, ...ids) + 1,
    timestamp: Math.max(0, ...sp.stages.flatMap((s) => s.tasks.map((t) => t.timestamp))),
  });
  await commitSavepointTopology(o.storage, o.jobId, derived, topology);
  o.info?.(
    `job ${o.jobId}: savepoint '${name}' re-cut by operator uid into savepoint '${derived}' for this job's stages (${changes.join('; ')})`,
  );
  return { savepoint: derived, changed: { changes, derived, dropped: result.unclaimed } };
}

// ---------------------------------------------------------------- from the committed checkpoints

async function fromCommitted(
  o: JobStartOptions,
  topology: JobTopology,
  rec: TopologyRecord,
  superseded: () => Promise<boolean>,
): Promise<JobStart> {
  const old = rec.topology;
  const changes = describeChange(old, topology);
  o.info?.(`job ${o.jobId}: its stages changed since the last run (${changes.join('; ')})`);
  await quiesce(o, [old], superseded);
  const stages: StageSavepoint[] = [];
  const read: string[] = [];
  for (const s of old.stages) {
    const tasks: TaskSavepoint[] = [];
    for (let p = 0; p < s.partitions; p++) {
      const scope = { jobId: o.jobId, taskId: `${s.stage}-p${p}` };
      const meta = await committedOf(o, s, p, scope, rec.savepoint);
      read.push(
        meta
          ? `${scope.taskId}@${meta.checkpointId}:${meta.savepoint ?? ''}:${meta.timestamp}`
          : `${scope.taskId}@-`,
      );
      tasks.push(meta ? await readPart(o, scope, meta) : emptyPart(s, p, scope.taskId));
    }
    const partitioner = tasks.find((t) => t.checkpointId > 0)?.payload.partitioner ?? s.partitioner;
    stages.push({
      stage: s.stage,
      partitions: s.partitions,
      ...(partitioner === undefined ? {} : { partitioner }),
      tasks,
    });
  }
  // Positions of sources the old job did not read, and what removed sources had not consumed.
  const oldSources = new Map(old.stages.flatMap((s) => s.sources.map((x) => [x.uid, x] as const)));
  const starts = new Map<string, unknown>();
  for (const s of topology.stages)
    for (const src of s.sources) {
      if (oldSources.has(src.uid) || src.broadcast || !o.hooks?.startPosition) continue;
      for (let p = 0; p < s.partitions; p++) {
        const pos = await o.hooks.startPosition(src, p);
        if (pos !== undefined) starts.set(`${src.uid}#${p}`, pos);
      }
    }
  const newSources = new Set(topology.stages.flatMap((s) => s.sources.map((x) => x.uid)));
  const backlog = new Map<string, number>();
  for (const st of stages)
    for (const t of st.tasks)
      for (const c of t.payload.channels) {
        const src = oldSources.get(c.source);
        if (!src || src.broadcast || newSources.has(c.source) || !o.hooks?.backlog) continue;
        const n = await o.hooks.backlog(src, c.partition, c.position);
        if (n !== undefined && n > 0) backlog.set(`${c.source}#${c.partition}`, n);
      }
  const result = restructureJob(stages, targetsOf(topology, o.plan), {
    ...oldUids(old),
    startPosition: (q) => starts.get(`${q.source}#${q.partition}`),
    backlog: (q) => backlog.get(`${q.source}#${q.partition}`),
  });
  checkUnclaimed(o, result.unclaimed, 'the last run');
  if (!result.moved && result.unclaimed.length === 0) {
    // Every task finds its own state where it was (a stateless change): nothing to write.
    return { savepoint: rec.savepoint, changed: { changes, derived: undefined, dropped: [] } };
  }
  const name = `job-change-${hash(JSON.stringify([layoutHash(topology), read])).slice(0, 16)}`;
  if (!(await readSavepointTopology(o.storage, o.jobId, name))) {
    const parts = stages.flatMap((s) => s.tasks);
    await writeDerived(o, name, result.stages, {
      checkpointId: Math.max(0, ...parts.map((t) => t.checkpointId)) + 1,
      timestamp: Math.max(0, ...parts.map((t) => t.timestamp)),
    });
    await commitSavepointTopology(o.storage, o.jobId, name, topology);
  }
  o.info?.(
    `job ${o.jobId}: the committed checkpoints of the last run were re-cut by operator uid into savepoint '${name}'; every task starts from it`,
  );
  return { savepoint: name, changed: { changes, derived: name, dropped: result.unclaimed } };
}

/** The committed checkpoint of an old task, by the rule its own restore would have followed. */
async function committedOf(
  o: JobStartOptions,
  stage: StageTopology,
  partition: number,
  scope: Scope,
  savepoint: string | undefined,
): Promise<CheckpointMetadata | undefined> {
  const pointer = await o.hooks?.committedPointer?.(stage, partition);
  const newest = pointer
    ? await readPointedMetadata(o.storage, pointer, scope.taskId)
    : await o.storage.latest(scope);
  if (savepoint === undefined) return newest;
  if ((newest?.payload as TaskPayload | undefined)?.fromSavepoint === savepoint) return newest;
  return o.storage.loadSavepoint(savepoint, scope);
}

async function readPart(o: JobStartOptions, scope: Scope, meta: CheckpointMetadata): Promise<TaskSavepoint> {
  const restored = await readTaskSnapshot(o.storage, meta);
  const keyed =
    restored.keyed ??
    (await materializeKeyedHandle(
      restored.keyedHandle!,
      checkpointFiles(o.storage, scope, meta.checkpointId, 'restructure'),
      meta.checkpointId,
      () => o.openBackend(scope),
    ));
  return {
    taskId: scope.taskId,
    checkpointId: meta.checkpointId,
    timestamp: meta.timestamp,
    payload: restored.payload,
    keyed,
    operators: restored.operators,
  };
}

/** An old task that never committed a checkpoint: nothing but its place. */
function emptyPart(stage: StageTopology, partition: number, taskId: string): TaskSavepoint {
  return {
    taskId,
    checkpointId: 0,
    timestamp: 0,
    payload: {
      format: TASK_SNAPSHOT_FORMAT,
      stage: stage.stage,
      partition,
      partitions: stage.partitions,
      backend: 'none',
      unaligned: false,
      channels: [],
      operatorsFile: '',
    },
    keyed: { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states: [] },
    operators: { format: TASK_SNAPSHOT_FORMAT, operators: {}, inflight: [] },
  };
}

// ---------------------------------------------------------------- shared

function checkUnclaimed(o: JobStartOptions, unclaimed: readonly UnclaimedState[], from: string): void {
  if (unclaimed.length === 0) return;
  const what = unclaimed
    .map((u) => `${u.kind} '${u.uid}' (stage ${u.stage}): ${u.parts.join(', ')}`)
    .join('; ');
  if (o.allowNonRestoredState) {
    o.warn?.(
      `job ${o.jobId}: dropping state of ${from} that no operator of this job claims (allowNonRestoredState): ${what}`,
    );
    return;
  }
  throw new StreamError(
    'STATE_NOT_RESTORED',
    `job ${o.jobId}: state of ${from} has no operator in this version of the job: ${what}. If an operator was renamed, give it its old uid; if the state may go, start with --allow-non-restored-state (allowNonRestoredState: true, KSTATE_ALLOW_NON_RESTORED_STATE=true); records a removed source had not consumed are lost with it (let the old job drain them first)`,
  );
}

function oldUids(t: JobTopology): { knownUids: string[]; broadcastSources: string[] } {
  return {
    knownUids: t.stages.flatMap((s) => s.operators.map((x) => x.uid)),
    broadcastSources: t.stages.flatMap((s) => s.sources.filter((x) => x.broadcast).map((x) => x.uid)),
  };
}

function tasksOf(t: JobTopology): string[] {
  return t.stages.flatMap((s) => Array.from({ length: s.partitions }, (_, p) => `${s.stage}-p${p}`));
}

function hash(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function layoutHash(t: JobTopology): string {
  return hash(JSON.stringify(t)).slice(0, 12);
}

/**
 * Write savepoint `name` from `stages`, skipping parts already there (a crashed earlier attempt, or
 * another instance deriving the same savepoint: same name, same bytes).
 */
async function writeDerived(
  o: JobStartOptions,
  name: string,
  stages: readonly StageSavepointContent[],
  at: { checkpointId: number; timestamp: number },
): Promise<void> {
  for (const s of stages) {
    for (const [p, t] of s.tasks.entries()) {
      const scope = { jobId: o.jobId, taskId: `${s.stage}-p${p}` };
      if (await hasSavepoint(o.storage, name, scope)) continue;
      try {
        const files = checkpointFiles(o.storage, scope, at.checkpointId, `sp-${name}`);
        const keyedFile: FileRef = await writeKeyedFile(files, t.keyed);
        const operatorsFile = await writeOperatorsFile(files, t.operators);
        const payload: TaskPayload = {
          format: TASK_SNAPSHOT_FORMAT,
          stage: s.stage,
          partition: p,
          partitions: s.tasks.length,
          ...(s.partitioner === undefined ? {} : { partitioner: s.partitioner }),
          backend: 'savepoint',
          unaligned: false,
          channels: t.channels,
          keyedFile: keyedFile.path,
          operatorsFile: operatorsFile.path,
        };
        await o.storage.commit({
          formatVersion: 1,
          jobId: o.jobId,
          taskId: scope.taskId,
          checkpointId: at.checkpointId,
          savepoint: name,
          timestamp: at.timestamp,
          files: [keyedFile, operatorsFile],
          type: 'full',
          payload,
        });
      } catch (e) {
        // Another instance wrote this part meanwhile (same name, same bytes): fine.
        if (await hasSavepoint(o.storage, name, scope)) continue;
        throw e;
      }
    }
  }
}

async function hasSavepoint(storage: CheckpointStorage, name: string, scope: Scope): Promise<boolean> {
  try {
    await storage.loadSavepoint(name, scope);
    return true;
  } catch (e) {
    if (isStreamError(e, 'CHECKPOINT_NOT_FOUND')) return false;
    throw e;
  }
}
