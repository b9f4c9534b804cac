import type { Clock } from '../api/clock.ts';
import type { RuntimeConfig } from '../api/config.ts';
import { StreamError } from '../api/errors.ts';
import type { CheckpointCommitter } from '../api/sink.ts';
import { checkpointPhase, type RestoreFrom } from '../checkpoint/decisions.ts';
import type { CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import type { JobPlan, StagePlan } from '../graph/plan.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { partitionerName } from '../state/partitioners.ts';
import type { InputChannel } from './channel.ts';
import type { Checkpointer } from './checkpointer.ts';
import type { FaultInjector } from './faults.ts';
import type { TaskInputs } from './inputs.ts';
import type { TaskListener } from './listener.ts';
import { restoreTask } from './restore.ts';
import { TASK_SNAPSHOT_FORMAT } from './snapshot-io.ts';
import { WatermarkValve } from './watermark-valve.ts';
import { createOperators, type OperatorWiring, type WiringOptions } from './wiring.ts';

export interface TaskOptions {
  readonly jobId: string;
  readonly plan: JobPlan;
  readonly stage: StagePlan;
  readonly partition: number;
  readonly storage: CheckpointStorage;
  readonly createBackend: (scope: Scope) => KeyedStateBackend | Promise<KeyedStateBackend>;
  readonly clock: Clock;
  readonly config: RuntimeConfig;
  readonly restoreFrom: RestoreFrom;
  readonly faults?: FaultInjector;
  readonly listener?: TaskListener;
}

/** The id a task's checkpoints are stored under: stage (its source uids) and partition. */
export function taskScope(jobId: string, plan: JobPlan, stage: StagePlan, partition: number): Scope {
  const sources = stage.nodes
    .map((id) => plan.graph.nodes[id]!)
    .filter((n) => n.spec.kind === 'source' && !n.spec.broadcast)
    .map((n) => n.uid)
    .sort();
  return {
    jobId,
    taskId: `${sources
      .join('.')
      .replace(/[^A-Za-z0-9._-]/g, '_')
      .slice(0, 180)}-p${partition}`,
  };
}

/** What opening a task needs from the task itself. */
export interface TaskOpening {
  readonly options: TaskOptions;
  readonly scope: Scope;
  readonly attempt: string;
  readonly inputs: TaskInputs;
  readonly checkpointer: Checkpointer;
  /** The task's side of each operator's environment (see OperatorEnv). */
  readonly operatorHooks: Pick<WiringOptions, 'watermarkOf' | 'currentSource' | 'recordError'>;
  /** Ends the loop's wait (records arrived). */
  readonly wake: () => void;
  /** A channel's reader failed (see TaskInputs). */
  readonly sourceFailed: (channel: InputChannel, error: unknown) => void;
  /** Takes each part as soon as it exists, so that a teardown closes it when opening fails later. */
  readonly adopt: (part: { backend: KeyedStateBackend } | { wiring: OperatorWiring }) => void;
}

/**
 * Open a task, in this order: its keyed backend; its operators (they hold no state yet, and a sink
 * may be the task's checkpoint committer); the restored state (`restoreTask`); the input channels,
 * positioned as restored; event time (the watermark valve over the channels, at the channels'
 * restored event time); the operators opened with their restored snapshots; the readers started;
 * the checkpointer, whose first periodic checkpoint falls at this task's phase of the interval
 * (spread, not all tasks together).
 */
export async function openTask(t: TaskOpening): Promise<{ valve: WatermarkValve }> {
  const { storage, restoreFrom, listener, plan, stage, partition, jobId, clock, config } = t.options;
  const { scope, inputs } = t;
  const started = performance.now();
  const backend = await t.options.createBackend(scope);
  t.adopt({ backend });
  const wiring = await createOperators({
    plan,
    stage,
    partition,
    jobId,
    clock,
    backend,
    taskId: scope.taskId,
    attempt: t.attempt,
    ...t.operatorHooks,
  });
  t.adopt({ wiring });
  const committer = committerOf(wiring, scope);
  const { restored, nextCheckpointId, fromSavepoint } = await restoreTask({
    storage,
    scope,
    attempt: t.attempt,
    backend,
    partitions: stage.partitions,
    from: restoreFrom,
    restoreFallback: config.checkpoints.restoreFallback,
    committer,
    inputs: wiring.sources.flatMap((s) => (s.broadcast ? [] : [{ source: s.source, partition }])),
  });

  const restoredChannels = restored && {
    channels: restored.payload.channels,
    inflight: restored.operators.inflight,
  };
  inputs.open(wiring.sources, partition, config.channelCapacity, restoredChannels, t.wake, t.sourceFailed);
  wiring.computeUpstreamChannels(inputs.channels.length);
  const strategies = inputs.channels.map(
    (c) => wiring.sources.find((s) => s.uid === c.sourceUid)!.watermarks,
  );
  const eventTimes = new Map(
    (restored?.payload.channels ?? []).map((c) => [`${c.source}#${c.partition}`, c.eventTime]),
  );
  const valve = new WatermarkValve(
    strategies,
    wiring.upstreamChannels,
    clock.now(),
    inputs.channels.map((c) => eventTimes.get(`${c.sourceUid}#${c.partition}`)),
  );

  const snapshots = restored?.operators.operators ?? {};
  for (const op of wiring.operators) await op.open(restored ? (snapshots[op.uid] ?? {}) : undefined);
  await inputs.start(wiring.sources, config.pollBatch);

  t.checkpointer.open(
    {
      backend,
      operators: wiring.operators,
      inputs,
      eventTime: (c) => valve.eventTime(c),
      committer,
      broadcastUids: new Set(wiring.sources.filter((s) => s.broadcast).map((s) => s.uid)),
      payload: {
        format: TASK_SNAPSHOT_FORMAT,
        stage: scope.taskId.replace(/-p\d+$/, ''),
        partition,
        partitions: stage.partitions,
        partitioner: partitionerName(stage.partitioner),
        backend: backend.kind,
        ...(fromSavepoint !== undefined ? { fromSavepoint } : {}),
      },
      nextCheckpointId,
      restoredId: restored?.meta.checkpointId,
      restoredHandle: restored?.keyedHandle,
    },
    clock.now() - Math.floor(config.checkpoints.intervalMs * checkpointPhase(scope.taskId)),
  );
  listener?.restored?.({
    taskId: scope.taskId,
    checkpointId: restored?.meta.checkpointId,
    ms: performance.now() - started,
  });
  return { valve };
}

/** The task's checkpoint committer: the one its transactional sinks share, if any. */
function committerOf(wiring: OperatorWiring, scope: Scope): CheckpointCommitter | undefined {
  const committers = new Set(wiring.operators.map((o) => o.committer?.()).filter((c) => c !== undefined));
  if (committers.size > 1) {
    throw new StreamError(
      'GRAPH_INVALID',
      `task ${scope.taskId} has sinks with ${committers.size} different checkpoint committers: all transactional sinks of a task must share one transaction`,
    );
  }
  return [...committers][0];
}
