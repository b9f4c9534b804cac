import { StreamError } from '../api/errors.ts';
import type { KeyId, Partitioner } from '../api/keys.ts';
import type { InflightRecord } from '../runtime/channel.ts';
import type { OperatorSnapshot } from '../runtime/operators/types.ts';
import { type ChannelPosition, TASK_SNAPSHOT_FORMAT } from '../runtime/snapshot-io.ts';
import type { KeyedStateSnapshot, KeyedStateSnapshotEntry } from '../state/backend.ts';
import { type OperatorStateSnapshot, redistributeOperatorState } from '../state/operator-state.ts';
import { partitionerName } from '../state/partitioners.ts';
import { rehashKeyedSnapshots, splitByKeyGroup } from '../state/rescale.ts';
import { KEYED_SNAPSHOT_FORMAT_VERSION } from '../state/state-meta.ts';
import type { StageSavepoint, StageSavepointContent } from './savepoint-io.ts';

/**
 * A job snapshot re-cut along new stage boundaries: state belongs to operators by uid, wherever the
 * stages of the new job put them (Flink maps savepoint state to operators by uid the same way). Pure:
 * bytes in, bytes out; the rules are the rescale rules (./rescale.ts), applied per operator between
 * its old stage (n partitions) and its new one (m partitions):
 *
 * | part | goes to |
 * | --- | --- |
 * | keyed state `<uid>/<name>` | the new stage of `uid`, key group of its key among m under the new stage's partitioner (`rehashKeyedSnapshots`) |
 * | timers of `uid` | likewise, by their key (`splitByKeyGroup`) |
 * | operator state of `uid` | n = m: the task of the same index; else split / union / broadcast redistributed |
 * | raw state, sink committables | n = m: the same index; else raw is refused (RESCALE_UNSUPPORTED), committables of old task j go to new task j mod m |
 * | position (and in-flight records) of source `s`, partition q | the task that reads partition q of `s` in its new stage (every task for a broadcast source, from old task 0) |
 * | a source the old job did not read | `startPosition` (undefined: where the source starts without a checkpoint) |
 *
 * What the new job has no place for is returned as `unclaimed` (the caller refuses the start or drops
 * it): keyed entries, timers, operator state, raw state or committables of an operator uid the new job
 * does not have; and records a removed source had not consumed (`backlog`, plus in-flight records),
 * which nothing would read any more (a removed repartition edge). States without entries are not
 * state anyone loses and are dropped silently.
 *
 * A source that keeps its uid must keep its partition count (its topic's): a different count is a
 * rescale, refused here (RESCALE_UNSUPPORTED) as the task refuses it; see `kstate savepoint rescale`.
 */

/** A stage of the new job, as far as its state is concerned. */
export interface TargetStage {
  readonly stage: string;
  readonly partitions: number;
  /** Uids of its operators that can hold state (sources and sinks included). */
  readonly operators: readonly string[];
  readonly sources: readonly { readonly uid: string; readonly broadcast: boolean }[];
  /** Its partitioner (key -> key group); default murmur2. */
  readonly partitioner?: Partitioner;
}

export interface RestructureOptions {
  /** Operator uids of the old job (from its recorded topology): they tell `<uid>/<state>` names apart. */
  readonly knownUids?: Iterable<string>;
  /**
   * Uids of the old job's broadcast sources (from its recorded topology). Without it they are told
   * apart by their channels: a broadcast source shows as channels other than {p} in some task p.
   */
  readonly broadcastSources?: Iterable<string>;
  /** Where partition `partition` of a source the old job did not read starts; undefined: its own start. */
  readonly startPosition?: (q: { stage: string; source: string; partition: number }) => unknown;
  /** Records the old job had not consumed from a source the new job lacks, at `position`. */
  readonly backlog?: (q: { source: string; partition: number; position: unknown }) => number | undefined;
}

/** State of one old operator (or source) that the new job has no place for. */
export interface UnclaimedState {
  readonly uid: string;
  /** The old stage it was in. */
  readonly stage: string;
  readonly kind: 'operator' | 'source';
  /** What would be lost, e.g. `keyed state 'count' (40 keys)`, `8 records of partition 2 not consumed`. */
  readonly parts: readonly string[];
}

export interface RestructureResult {
  /** One content per target stage, in the order given. */
  readonly stages: StageSavepointContent[];
  readonly unclaimed: UnclaimedState[];
  /**
   * Whether anything sits in another task than before (or starts at a given position): false means
   * every task of the new job would restore exactly its own old snapshot, and no savepoint is needed
   * (when nothing is unclaimed either).
   */
  readonly moved: boolean;
}

interface ChannelState {
  readonly pos: ChannelPosition;
  readonly inflight: readonly InflightRecord[];
}

/** Sources of an old stage whose task p reads partition p only (the others are broadcast). */
function partitionedSources(stage: StageSavepoint, broadcast: ReadonlySet<string> | undefined): Set<string> {
  const out = new Set<string>();
  const sources = new Set(stage.tasks.flatMap((t) => t.payload.channels.map((c) => c.source)));
  for (const s of sources) {
    if (broadcast) {
      if (!broadcast.has(s)) out.add(s);
      continue;
    }
    const own = stage.tasks.every((t, p) => {
      const parts = t.payload.channels.filter((c) => c.source === s).map((c) => c.partition);
      return parts.length === 0 || (parts.length === 1 && parts[0] === p);
    });
    // One partition, one task: channels cannot tell; a partitioned source names the stage.
    const named = `.${stage.stage}.`.includes(`.${s.replace(/[^A-Za-z0-9._-]/g, '_')}.`);
    if (own && (stage.partitions > 1 || named)) out.add(s);
  }
  return out;
}

export function restructureJob(
  old: readonly StageSavepoint[],
  targets: readonly TargetStage[],
  o: RestructureOptions = {},
): RestructureResult {
  const opTarget = new Map<string, TargetStage>();
  const srcTarget = new Map<string, { stage: TargetStage; broadcast: boolean }>();
  for (const t of targets) {
    if (!Number.isSafeInteger(t.partitions) || t.partitions < 1)
      throw new StreamError('CONFIG_INVALID', `stage ${t.stage} has ${t.partitions} partitions`);
    for (const uid of t.operators) {
      const seen = opTarget.get(uid);
      if (seen && seen !== t)
        throw new StreamError('GRAPH_INVALID', `operator '${uid}' is in stages ${seen.stage} and ${t.stage}`);
      opTarget.set(uid, t);
    }
    for (const s of t.sources) srcTarget.set(s.uid, { stage: t, broadcast: s.broadcast });
  }
  const owners = [
    ...new Set([
      ...opTarget.keys(),
      ...(o.knownUids ?? []),
      ...old.flatMap((s) => s.tasks.flatMap((t) => Object.keys(t.operators.operators))),
    ]),
  ].sort((a, b) => b.length - a.length);
  const ownerOf = (name: string): string => {
    for (const u of owners) if (name.startsWith(`${u}/`)) return u;
    const slash = name.indexOf('/');
    return slash < 0 ? name : name.slice(0, slash);
  };

  let moved = false;
  const unclaimed = new Map<
    string,
    { uid: string; stage: string; kind: 'operator' | 'source'; parts: string[] }
  >();
  const lose = (kind: 'operator' | 'source', uid: string, stage: string, part: string) => {
    const key = `${kind} ${uid}`;
    const u = unclaimed.get(key) ?? { uid, stage, kind, parts: [] };
    unclaimed.set(key, u);
    u.parts.push(part);
  };

  // Accumulators per target stage.
  const keyed = new Map<TargetStage, KeyedStateSnapshot[]>(targets.map((t) => [t, []]));
  const ops = new Map<TargetStage, Record<string, OperatorSnapshot>[]>(
    targets.map((t) => [t, Array.from({ length: t.partitions }, () => ({}))]),
  );
  const opPlaced = new Map<string, string>();
  /** Canonical channel states of the old job: `${source}#${partition}`. */
  const channels = new Map<
    string,
    ChannelState & { stage: string; partitions: number; partitioned: boolean }
  >();
  const broadcast = o.broadcastSources === undefined ? undefined : new Set(o.broadcastSources);

  /** Keyed entries of removed operators: `stage \0 uid \0 state` -> keys. */
  const lostKeys = new Map<string, number>();
  for (const stage of old) {
    const n = stage.partitions;
    // Keyed state, per old task: the part of each target stage.
    for (const task of stage.tasks) {
      const byTarget = new Map<TargetStage, KeyedStateSnapshotEntry[]>();
      for (const entry of task.keyed.states) {
        const uid = ownerOf(entry.meta.name);
        const t = opTarget.get(uid);
        if (!t) {
          if (entry.entries.length > 0) {
            const key = `${stage.stage}\u0000${uid}\u0000${entry.meta.name.slice(uid.length + 1) || entry.meta.name}`;
            lostKeys.set(key, (lostKeys.get(key) ?? 0) + entry.entries.length);
          }
          continue;
        }
        if (entry.entries.length > 0 && placedElsewhere(stage, t)) moved = true;
        const list = byTarget.get(t) ?? [];
        byTarget.set(t, list);
        list.push(entry);
      }
      for (const [t, states] of byTarget)
        keyed.get(t)!.push({ formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states });
    }
    for (const [key, n] of lostKeys) {
      const [st, uid, local] = key.split('\u0000') as [string, string, string];
      lose('operator', uid, st, `keyed state '${local}' (${n} keys)`);
    }
    lostKeys.clear();
    // Operator snapshots (timers, operator state, raw state, committables).
    const uids = [...new Set(stage.tasks.flatMap((t) => Object.keys(t.operators.operators)))].sort();
    for (const uid of uids) {
      const snaps = stage.tasks.map((t) => t.operators.operators[uid] ?? {});
      const t = opTarget.get(uid);
      if (!t) {
        for (const part of describeOperatorState(snaps)) lose('operator', uid, stage.stage, part);
        continue;
      }
      const before = opPlaced.get(uid);
      if (before !== undefined) {
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `operator '${uid}' has state in stages ${before} and ${stage.stage} of the old job: the checkpoints are not one job's`,
        );
      }
      opPlaced.set(uid, stage.stage);
      if (describeOperatorState(snaps).length > 0 && placedElsewhere(stage, t)) moved = true;
      const placed = placeOperator(uid, stage.stage, snaps, t.partitions, t.partitioner);
      const target = ops.get(t)!;
      placed.forEach((s, p) => {
        target[p]![uid] = s;
      });
    }
    // Source positions: partition q of a partitioned source from task q, of a broadcast one from task 0.
    const partitioned = partitionedSources(stage, broadcast);
    stage.tasks.forEach((task, j) => {
      task.payload.channels.forEach((c, i) => {
        const isPartitioned = partitioned.has(c.source);
        if (isPartitioned ? c.partition !== j : j !== 0) return;
        const key = `${c.source}#${c.partition}`;
        const inflight = task.operators.inflight[i] ?? [];
        if (channels.has(key)) {
          throw new StreamError(
            'CHECKPOINT_CORRUPT',
            `partition ${c.partition} of source '${c.source}' has positions in two stages of the old job (${channels.get(key)!.stage}, ${stage.stage})`,
          );
        }
        channels.set(key, {
          pos: c,
          inflight,
          stage: stage.stage,
          partitions: n,
          partitioned: isPartitioned,
        });
        if (!srcTarget.has(c.source) && isPartitioned) {
          const left =
            (o.backlog?.({ source: c.source, partition: c.partition, position: c.position }) ?? 0) +
            inflight.length;
          if (left > 0)
            lose('source', c.source, stage.stage, `${left} records of partition ${c.partition} not consumed`);
        }
      });
    });
  }

  const stages: StageSavepointContent[] = targets.map((t) => {
    const m = t.partitions;
    const keyedOut = rehashKeyedSnapshots(keyed.get(t)!, m, t.partitioner);
    const opsOut = ops.get(t)!;
    const tasks = Array.from({ length: m }, (_, p) => {
      const chans: ChannelState[] = [];
      for (const s of t.sources) {
        const parts = s.broadcast
          ? [...channels.values()].filter((c) => c.pos.source === s.uid).map((c) => c.pos.partition)
          : [p];
        for (const q of parts.sort((a, b) => a - b)) {
          const c = channels.get(`${s.uid}#${q}`);
          if (c) {
            if (!s.broadcast && c.partitioned && c.partitions !== m) {
              throw new StreamError(
                'RESCALE_UNSUPPORTED',
                `source '${s.uid}' had ${c.partitions} partitions in the old job and has ${m} now: a changed partition count is a rescale; take a savepoint with the old topic, 'kstate savepoint rescale' it, and start from the result (docs/savepoints.md)`,
              );
            }
            if (c.stage !== t.stage) moved = true;
            chans.push({ pos: { ...c.pos, inflight: c.inflight.length }, inflight: c.inflight });
            continue;
          }
          if (s.broadcast) continue;
          const start = o.startPosition?.({ stage: t.stage, source: s.uid, partition: q });
          if (start !== undefined) {
            moved = true;
            chans.push({ pos: { source: s.uid, partition: q, position: start, inflight: 0 }, inflight: [] });
          }
        }
      }
      return {
        keyed: keyedOut[p]!,
        operators: {
          format: TASK_SNAPSHOT_FORMAT,
          operators: opsOut[p]!,
          inflight: chans.map((c) => c.inflight),
        },
        channels: chans.map((c) => c.pos),
      };
    });
    return { stage: t.stage, partitioner: partitionerName(t.partitioner ?? 'murmur2'), tasks };
  });
  // A stage of the old job that is gone, or whose partition count changed, moved whatever it had.
  const byId = new Map(targets.map((t) => [t.stage, t]));
  for (const s of old) {
    const t = byId.get(s.stage);
    if ((!t || placedElsewhere(s, t)) && hasContent(s)) moved = true;
  }
  return {
    stages,
    unclaimed: [...unclaimed.values()].sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0)),
    moved,
  };
}

/** Whether keys of `old` land in other tasks in `t`: another stage, count or partitioner. */
function placedElsewhere(old: StageSavepoint, t: TargetStage): boolean {
  return (
    t.stage !== old.stage ||
    t.partitions !== old.partitions ||
    partitionerName(t.partitioner ?? 'murmur2') !== (old.partitioner ?? 'murmur2')
  );
}

function hasContent(s: StageSavepoint): boolean {
  return s.tasks.some(
    (t) =>
      t.keyed.states.some((e) => e.entries.length > 0) ||
      t.payload.channels.length > 0 ||
      describeOperatorState(Object.values(t.operators.operators)).length > 0,
  );
}

/** What the snapshots of one operator hold, one line per kind; [] when nothing. */
function describeOperatorState(snaps: readonly OperatorSnapshot[]): string[] {
  const out: string[] = [];
  const timers = snaps.reduce(
    (n, s) => n + (s.timers?.event.length ?? 0) + (s.timers?.processing.length ?? 0),
    0,
  );
  if (timers > 0) out.push(`${timers} timers`);
  const elements = new Map<string, { mode: string; n: number }>();
  for (const s of snaps)
    for (const st of s.operatorState?.states ?? []) {
      const e = elements.get(st.name) ?? { mode: st.mode, n: 0 };
      e.n += st.elements.length;
      elements.set(st.name, e);
    }
  for (const [name, e] of elements)
    if (e.n > 0) out.push(`operator state '${name}' (${e.mode}, ${e.n} elements)`);
  const raw = snaps.reduce((n, s) => n + (s.raw?.length ?? 0), 0);
  if (raw > 0) out.push(`raw state (${raw} bytes)`);
  // A sink that commits with the checkpoint itself (Kafka) prepares no committable: `undefined`.
  const committables = snaps.reduce(
    (n, s) => n + (s.committables ?? []).filter(([, c]) => c !== undefined && c !== null).length,
    0,
  );
  if (committables > 0) out.push(`${committables} sink committables not known to be committed`);
  return out;
}

/** One operator's snapshots of its old stage (n tasks) placed on m new tasks. */
function placeOperator(
  uid: string,
  oldStage: string,
  old: readonly OperatorSnapshot[],
  m: number,
  partitioner: Partitioner | undefined,
): OperatorSnapshot[] {
  const n = old.length;
  const news: OperatorSnapshot[] = Array.from({ length: m }, () => ({}));
  if (old.some((s) => s.timers !== undefined)) {
    const byKey = (t: [number, KeyId]) => t[1];
    const ev = splitByKeyGroup(
      old.flatMap((s) => s.timers?.event ?? []),
      byKey,
      m,
      partitioner,
    );
    const pr = splitByKeyGroup(
      old.flatMap((s) => s.timers?.processing ?? []),
      byKey,
      m,
      partitioner,
    );
    news.forEach((s, p) => {
      s.timers = { event: ev[p]!, processing: pr[p]! };
    });
  }
  if (n === m) {
    old.forEach((s, p) => {
      if (s.operatorState) news[p]!.operatorState = s.operatorState;
      if (s.raw) news[p]!.raw = s.raw;
      if (s.committables) news[p]!.committables = s.committables;
    });
    return news;
  }
  const withRaw = old.findIndex((s) => s.raw !== undefined && s.raw.length > 0);
  if (withRaw >= 0) {
    throw new StreamError(
      'RESCALE_UNSUPPORTED',
      `operator '${uid}' keeps raw state (task ${oldStage}-p${withRaw}) and its new stage has ${m} partitions, not ${n}: the framework cannot split raw state; move it to operator list state first`,
    );
  }
  if (old.some((s) => s.operatorState !== undefined)) {
    const snaps = old.map((s): OperatorStateSnapshot => s.operatorState ?? { formatVersion: 1, states: [] });
    redistributeOperatorState(snaps, m).forEach((s, p) => {
      news[p]!.operatorState = s;
    });
  }
  old.forEach((s, j) => {
    if (!s.committables || s.committables.length === 0) return;
    const target = news[j % m]!;
    target.committables = [...(target.committables ?? []), ...s.committables].sort((a, b) => a[0] - b[0]);
  });
  return news;
}
