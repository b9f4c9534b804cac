import { StreamError } from '../api/errors.ts';
import type { KeyId, Partitioner } from '../api/keys.ts';
import type { OperatorSnapshot } from '../runtime/operators/types.ts';
import type { ChannelPosition } from '../runtime/snapshot-io.ts';
import { TASK_SNAPSHOT_FORMAT } from '../runtime/snapshot-io.ts';
import { type OperatorStateSnapshot, redistributeOperatorState } from '../state/operator-state.ts';
import { partitionerFromName, partitionerName } from '../state/partitioners.ts';
import { rehashKeyedSnapshots, splitByKeyGroup } from '../state/rescale.ts';
import type { StageSavepoint, StageSavepointContent, TaskSavepointContent } from './savepoint-io.ts';

/**
 * Offline rescaling of one stage of a savepoint from N to M partitions (key group = partition).
 * Pure: bytes in, bytes out, no serializer needed.
 *
 * - keyed state: every entry goes to key group `keyGroupOf(keyId, M, partitioner)`
 *   (`rehashKeyedSnapshots`), under the stage's recorded partitioner (murmur2 when none was
 *   recorded); a stage keyed by a partitioner function is rescaled only when the caller passes the
 *   function (`RescaleOptions.partitioner`), and kept in place when M = N;
 * - timers (per key): likewise, to the key group of their key;
 * - operator list state: `split` cut into contiguous ranges over the M tasks, `union` given whole to
 *   every task, broadcast state copied from task 0 (`redistributeOperatorState`);
 * - sink committables not yet committed: old task j's go to new task j mod M (sinks' `recover` commits
 *   them idempotently, whichever task it runs in);
 * - source positions: partition p < min(N, M) of a partitioned source keeps its position; a new
 *   partition (p >= N) gets none (the source starts it where it starts a partition without a
 *   checkpoint: the Kafka source's `startFrom`, default earliest); broadcast sources keep task 0's
 *   positions (task 0's broadcast state is the one copied). `position` may change any of them.
 *
 * Refused with RESCALE_UNSUPPORTED: raw state (bytes the framework cannot split), and in-flight
 * records (an unaligned snapshot; savepoints are always aligned). With M = N, operator state, raw
 * state and committables stay with their task.
 */
export interface PositionQuery {
  readonly source: string;
  readonly partition: number;
  readonly broadcast: boolean;
  /** The savepoint's position of this source partition; undefined for a partition it did not have. */
  readonly old: unknown;
}

export interface RescaleOptions {
  readonly partitions: number;
  /** The position the new savepoint records; `undefined` leaves the partition to the source's start. Default: `q.old`. */
  readonly position?: (q: PositionQuery) => unknown;
  /**
   * The stage's partitioner. Default: the one the savepoint recorded (murmur2 when none was); needed
   * for a stage keyed by a partitioner function, which the savepoint records by name only.
   */
  readonly partitioner?: Partitioner;
}

export function rescaleStage(stage: StageSavepoint, o: RescaleOptions): StageSavepointContent {
  const m = o.partitions;
  if (!Number.isSafeInteger(m) || m < 1) {
    throw new StreamError('CONFIG_INVALID', `the new partition count must be a positive integer, got ${m}`);
  }
  const tasks = stage.tasks;
  for (const t of tasks) {
    const inflight = t.payload.channels.reduce((s, c) => s + c.inflight, 0);
    if (inflight > 0 || t.operators.inflight.some((r) => r.length > 0)) {
      throw new StreamError(
        'RESCALE_UNSUPPORTED',
        `task ${t.taskId} of the savepoint holds ${inflight} in-flight records (an unaligned snapshot): only aligned savepoints can be rescaled; take a savepoint ('kstate savepoint <name>')`,
      );
    }
  }
  const partitioner = o.partitioner ?? partitionerFromName(stage.partitioner);
  if (partitioner === undefined && m !== stage.partitions) {
    throw new StreamError(
      'RESCALE_UNSUPPORTED',
      `stage ${stage.stage} is keyed by a partitioner function (${stage.partitioner}), which the savepoint names but cannot hold: rescale it from code with rescaleSavepoint(..., { partitioner }) giving the same function`,
    );
  }
  // Without the function (M = N): every key stays in the key group it is in.
  const keyed =
    partitioner === undefined
      ? tasks.map((t) => t.keyed)
      : rehashKeyedSnapshots(
          tasks.map((t) => t.keyed),
          m,
          partitioner,
        );
  const operators = rescaleOperators(stage, m, partitioner);
  const channels = rescaleChannels(stage, m, o.position ?? ((q) => q.old));
  const out: TaskSavepointContent[] = [];
  for (let p = 0; p < m; p++) {
    out.push({
      keyed: keyed[p]!,
      operators: {
        format: TASK_SNAPSHOT_FORMAT,
        operators: operators[p]!,
        inflight: channels[p]!.map(() => []),
      },
      channels: channels[p]!,
    });
  }
  return {
    stage: stage.stage,
    partitioner:
      o.partitioner === undefined ? (stage.partitioner ?? 'murmur2') : partitionerName(o.partitioner),
    tasks: out,
  };
}

function rescaleOperators(
  stage: StageSavepoint,
  m: number,
  partitioner: Partitioner | undefined,
): Record<string, OperatorSnapshot>[] {
  const n = stage.partitions;
  const out: Record<string, OperatorSnapshot>[] = Array.from({ length: m }, () => ({}));
  const uids = [...new Set(stage.tasks.flatMap((t) => Object.keys(t.operators.operators)))].sort();
  for (const uid of uids) {
    const old = stage.tasks.map((t) => t.operators.operators[uid] ?? {});
    const news: OperatorSnapshot[] = Array.from({ length: m }, () => ({}));
    // Timers follow their key.
    const event = old.flatMap((s) => s.timers?.event ?? []);
    const processing = old.flatMap((s) => s.timers?.processing ?? []);
    if (old.some((s) => s.timers !== undefined)) {
      const byKey = (t: [number, KeyId]) => t[1];
      // Without the partitioner function (M = N), timers stay with their task, like their keys.
      const ev = partitioner
        ? splitByKeyGroup(event, byKey, m, partitioner)
        : old.map((s) => s.timers?.event ?? []);
      const pr = partitioner
        ? splitByKeyGroup(processing, byKey, m, partitioner)
        : old.map((s) => s.timers?.processing ?? []);
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
    } else {
      const withRaw = old.findIndex((s) => s.raw !== undefined && s.raw.length > 0);
      if (withRaw >= 0) {
        throw new StreamError(
          'RESCALE_UNSUPPORTED',
          `operator '${uid}' keeps raw state (task ${stage.stage}-p${withRaw}), which the framework cannot split over another partition count: move it to operator list state, or rescale without it by restoring, clearing it and taking a new savepoint`,
        );
      }
      if (old.some((s) => s.operatorState !== undefined)) {
        const snaps = old.map(
          (s): OperatorStateSnapshot => s.operatorState ?? { formatVersion: 1, states: [] },
        );
        redistributeOperatorState(snaps, m).forEach((s, p) => {
          news[p]!.operatorState = s;
        });
      }
      old.forEach((s, j) => {
        if (!s.committables || s.committables.length === 0) return;
        const target = news[j % m]!;
        target.committables = [...(target.committables ?? []), ...s.committables].sort((a, b) => a[0] - b[0]);
      });
    }
    news.forEach((s, p) => {
      out[p]![uid] = s;
    });
  }
  return out;
}

/**
 * Which sources of the stage are partitioned (task p reads partition p only) rather than broadcast
 * (every task reads every partition). The payload does not say, so: a broadcast source shows as
 * channels other than {p} in some task p; with one partition and one task the stage name (its
 * non-broadcast source uids, joined by '.') decides.
 */
function partitionedSources(stage: StageSavepoint): Set<string> {
  const sources = new Set(stage.tasks.flatMap((t) => t.payload.channels.map((c) => c.source)));
  const out = new Set<string>();
  for (const s of sources) {
    const structural = stage.tasks.every((t) => {
      const parts = t.payload.channels.filter((c) => c.source === s).map((c) => c.partition);
      return parts.length === 1 && parts[0] === t.payload.partition;
    });
    const named = `.${stage.stage}.`.includes(`.${s.replace(/[^A-Za-z0-9._-]/g, '_')}.`);
    if (structural && (stage.partitions > 1 || named)) out.add(s);
  }
  return out;
}

function rescaleChannels(
  stage: StageSavepoint,
  m: number,
  position: (q: PositionQuery) => unknown,
): ChannelPosition[][] {
  const partitioned = partitionedSources(stage);
  const first = stage.tasks[0]!.payload.channels;
  const broadcast = first.filter((c) => !partitioned.has(c.source));
  const sources = [...new Set(first.map((c) => c.source))].filter((s) => partitioned.has(s));
  const out: ChannelPosition[][] = [];
  for (let p = 0; p < m; p++) {
    const channels: ChannelPosition[] = [];
    for (const source of sources) {
      const old = stage.tasks[p]?.payload.channels.find((c) => c.source === source && c.partition === p);
      const pos = position({ source, partition: p, broadcast: false, old: old?.position });
      if (pos !== undefined)
        channels.push({ source, partition: p, position: pos, inflight: 0, ...eventTimeAt(old, pos) });
    }
    for (const c of broadcast) {
      const pos = position({ source: c.source, partition: c.partition, broadcast: true, old: c.position });
      if (pos !== undefined)
        channels.push({
          source: c.source,
          partition: c.partition,
          position: pos,
          inflight: 0,
          ...eventTimeAt(c, pos),
        });
    }
    out.push(channels);
  }
  return out;
}

/** The old channel's event time, when the new position is the old one (it is the event time up to there). */
function eventTimeAt(old: ChannelPosition | undefined, position: unknown): { eventTime?: number } {
  if (old?.eventTime === undefined || JSON.stringify(old.position) !== JSON.stringify(position)) return {};
  return { eventTime: old.eventTime };
}
