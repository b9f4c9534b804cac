import { isStreamError, StreamError } from '../api/errors.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import type { JobPlan } from '../graph/plan.ts';
import { type OperatorKind, STATEFUL_KINDS } from '../graph/types.ts';
import { taskScope } from '../runtime/task.ts';
import { partitionerName } from '../state/partitioners.ts';

/**
 * The layout of a job as its checkpoints see it: which stages (task ids without `-p<n>`) it has, how
 * many partitions each, and which operators that can hold state (sources and sinks included) run in
 * which stage. Operators with generated uids hold no state (stateful kinds need an explicit uid), so
 * they are left out: inserting or removing a map does not change the layout.
 *
 * The service records the layout of the job it starts in checkpoint storage (`recordTopology`), so that
 * the next start can tell in one read whether the stage boundaries moved (docs/savepoints.md, "Job
 * changes"). The record is one checkpoint metadata of the scope `<jobId>/_topology` (atomic and
 * checksummed like every metadata; `chk-<version>.json`), whose payload is a `TopologyRecord`. Its
 * versions are written with "create, never overwrite", so two instances that record different
 * layouts at once cannot both succeed: the loser re-reads and decides again.
 */

export const TOPOLOGY_FORMAT = 1;
/** The task id of the scope that holds the job's topology records (no task id looks like it: those end in `-p<n>`). */
export const TOPOLOGY_SCOPE = '_topology';

export interface SourceTopology {
  readonly uid: string;
  /** The Kafka topic (or other name) the source reads, when it has one. */
  readonly topic?: string;
  readonly broadcast: boolean;
}

export interface OperatorTopology {
  readonly uid: string;
  readonly kind: OperatorKind;
}

export interface StageTopology {
  readonly stage: string;
  readonly partitions: number;
  /** The name of its partitioner (`partitionerName`): how its keys are placed in key groups. */
  readonly partitioner?: string;
  readonly sources: readonly SourceTopology[];
  /** Operators that can hold state, sources and sinks included, in topological order. */
  readonly operators: readonly OperatorTopology[];
}

export interface JobTopology {
  readonly format: number;
  /** Sorted by stage id. */
  readonly stages: readonly StageTopology[];
}

/** What a topology record holds. */
export interface TopologyRecord {
  readonly topology: JobTopology;
  /**
   * The savepoint the tasks of this layout started from (the user's `--from-savepoint`, or the one a
   * job change derived): a task whose newest checkpoint does not descend from it restores it.
   */
  readonly savepoint?: string;
  /**
   * The user's `--from-savepoint` this run descends from (through job changes since): the same flag
   * kept in a later start's arguments restores the run's checkpoints, not that savepoint again.
   */
  readonly origin?: string;
}

/** The layout of a planned job. */
export function jobTopology(jobId: string, plan: JobPlan): JobTopology {
  const stages = plan.stages.map((stage): StageTopology => {
    const nodes = stage.nodes.map((id) => plan.graph.nodes[id]!);
    return {
      stage: taskScope(jobId, plan, stage, 0).taskId.replace(/-p0$/, ''),
      partitions: stage.partitions,
      partitioner: partitionerName(stage.partitioner),
      sources: nodes.flatMap((n) => {
        if (n.spec.kind !== 'source') return [];
        const topic = (n.spec.source as { topic?: unknown }).topic;
        return [
          {
            uid: n.uid,
            ...(typeof topic === 'string' ? { topic } : {}),
            broadcast: n.spec.broadcast,
          },
        ];
      }),
      operators: nodes
        .filter((n) => STATEFUL_KINDS.has(n.spec.kind))
        .map((n) => ({ uid: n.uid, kind: n.spec.kind })),
    };
  });
  return { format: TOPOLOGY_FORMAT, stages: stages.sort((a, b) => (a.stage < b.stage ? -1 : 1)) };
}

/**
 * Whether state and positions of `a` sit in the same tasks in `b`: the same stages with the same
 * partition counts and partitioners, and in each the same sources and stateful operators (order, kinds and topics
 * aside: a moved topic is the sources' business, see docs/savepoints.md).
 */
export function sameLayout(a: JobTopology, b: JobTopology): boolean {
  return layoutKey(a) === layoutKey(b);
}

function layoutKey(t: JobTopology): string {
  return JSON.stringify(
    [...t.stages]
      .map((s) => [
        s.stage,
        s.partitions,
        s.partitioner ?? 'murmur2',
        s.sources.map((x) => `${x.uid}${x.broadcast ? '*' : ''}`).sort(),
        s.operators.map((o) => o.uid).sort(),
      ])
      .sort((x, y) => (String(x[0]) < String(y[0]) ? -1 : 1)),
  );
}

/** One line per difference, for the log: stages added or removed, operators that moved. */
export function describeChange(from: JobTopology, to: JobTopology): string[] {
  const out: string[] = [];
  const stageOf = (t: JobTopology) => {
    const m = new Map<string, StageTopology>();
    for (const s of t.stages) for (const o of s.operators) m.set(o.uid, s);
    return m;
  };
  const a = stageOf(from);
  const b = stageOf(to);
  const oldStages = new Map(from.stages.map((s) => [s.stage, s]));
  const newStages = new Map(to.stages.map((s) => [s.stage, s]));
  for (const s of to.stages) {
    const o = oldStages.get(s.stage);
    if (!o) out.push(`stage ${s.stage} (${s.partitions} partitions) is new`);
    else if (o.partitions !== s.partitions)
      out.push(`stage ${s.stage} has ${s.partitions} partitions, had ${o.partitions}`);
  }
  for (const s of from.stages) if (!newStages.has(s.stage)) out.push(`stage ${s.stage} is gone`);
  for (const [uid, s] of a) {
    const t = b.get(uid);
    if (!t) out.push(`operator '${uid}' is gone (was in stage ${s.stage})`);
    else if (t.stage !== s.stage) out.push(`operator '${uid}' moved from stage ${s.stage} to ${t.stage}`);
  }
  for (const [uid, t] of b) if (!a.has(uid)) out.push(`operator '${uid}' is new (stage ${t.stage})`);
  return out;
}

function scopeOf(jobId: string): Scope {
  return { jobId, taskId: TOPOLOGY_SCOPE };
}

function decodeRecord(meta: CheckpointMetadata, where: string): TopologyRecord {
  const r = meta.payload as TopologyRecord | undefined;
  if (r?.topology?.format !== TOPOLOGY_FORMAT || !Array.isArray(r.topology.stages)) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `${where} of job ${meta.jobId} has topology format ${JSON.stringify(r?.topology?.format)}; this build reads format ${TOPOLOGY_FORMAT}`,
    );
  }
  return r;
}

/** The job's newest topology record and its version, or undefined when it has none. */
export async function readTopologyRecord(
  storage: CheckpointStorage,
  jobId: string,
): Promise<{ version: number; record: TopologyRecord } | undefined> {
  const meta = await storage.latest(scopeOf(jobId));
  if (!meta) return undefined;
  return { version: meta.checkpointId, record: decodeRecord(meta, `topology record ${meta.checkpointId}`) };
}

/**
 * Record `record` as version `version` (the version read plus one). Returns false when another
 * instance recorded a different version `version` first (the caller re-reads and decides again);
 * recording the same content again is fine.
 */
export async function commitTopologyRecord(
  storage: CheckpointStorage,
  jobId: string,
  version: number,
  record: TopologyRecord,
): Promise<boolean> {
  try {
    await storage.commit({
      formatVersion: 1,
      jobId,
      taskId: TOPOLOGY_SCOPE,
      checkpointId: version,
      timestamp: Date.now(),
      files: [],
      type: 'full',
      payload: record,
    });
    return true;
  } catch (e) {
    if (isStreamError(e, 'CHECKPOINT_STORAGE_FAILED')) {
      const theirs = await storage.load(scopeOf(jobId), version).catch(() => undefined);
      if (theirs) return false;
    }
    throw e;
  }
}

/** The layout recorded with savepoint `name` (taken by a running job), or undefined. */
export async function readSavepointTopology(
  storage: CheckpointStorage,
  jobId: string,
  name: string,
): Promise<JobTopology | undefined> {
  let meta: CheckpointMetadata;
  try {
    meta = await storage.loadSavepoint(name, scopeOf(jobId));
  } catch (e) {
    if (isStreamError(e, 'CHECKPOINT_NOT_FOUND')) return undefined;
    throw e;
  }
  return decodeRecord(meta, `the topology of savepoint '${name}'`).topology;
}

/**
 * Record the layout of savepoint `name` beside its parts (it is also the mark that every part is
 * written, for the savepoints a job change derives). Several instances may record the same one.
 */
export async function commitSavepointTopology(
  storage: CheckpointStorage,
  jobId: string,
  name: string,
  topology: JobTopology,
): Promise<void> {
  const meta: CheckpointMetadata = {
    formatVersion: 1,
    jobId,
    taskId: TOPOLOGY_SCOPE,
    checkpointId: 0,
    savepoint: name,
    timestamp: Date.now(),
    files: [],
    type: 'full',
    payload: { topology } satisfies TopologyRecord,
  };
  try {
    await storage.commit(meta);
  } catch (e) {
    const theirs = await readSavepointTopology(storage, jobId, name).catch(() => undefined);
    if (theirs && sameLayout(theirs, topology)) return;
    throw e;
  }
}
