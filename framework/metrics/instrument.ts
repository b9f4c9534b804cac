/**
 * The framework's own metrics and readiness, fed from a job's listener and a sampler over its tasks.
 *
 *   const metrics = createPrometheusMetrics();
 *   const inst = instrumentJob(metrics, 'orders');
 *   const job = runJob(graph, { ...options, listener: combineListeners(inst, myListener) });
 *   const detach = inst.attach(job); // samples records in; stop with detach()
 *   inst.readiness(); // { ready, reason }
 */
import type { JobListener, RunningJob } from '../runtime/job.ts';
import type { CheckpointStats, Task, TaskListener } from '../runtime/task.ts';
import type { Metrics } from './metrics.ts';

/** Buckets (seconds) for checkpoint and restore durations: 5 ms .. 5 min. */
export const DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];

export interface Readiness {
  readonly ready: boolean;
  /** Why not (or 'ready'). */
  readonly reason: string;
  readonly tasks: { readonly assigned: number; readonly running: number; readonly restarting: number };
}

export interface InstrumentedJob extends JobListener {
  /** Ready when at least one task is assigned and every assigned task restored and runs. */
  readiness(): Readiness;
  /**
   * Follow a running job: sample its tasks' record counters every `intervalMs` (default 1000) and
   * before every exposition, and turn not-ready when the job fails. Returns a detach function (it
   * takes a last sample).
   */
  attach(job: RunningJob, options?: { intervalMs?: number }): () => void;
}

type TaskState = 'restoring' | 'running' | 'restarting' | 'failed';

/** A task incarnation being sampled: what of its counters was already added to the metrics. */
interface Tracked {
  readonly task: Task;
  counted: number;
  /** Late records dropped already counted, per operator uid. */
  readonly late: Map<string, number>;
}

const ms = (v: number) => v / 1000;

/**
 * Every method of JobListener: a key added to the interface and missing here fails the type check,
 * so `combineListeners` never drops a notification.
 */
const LISTENER_METHODS: Record<keyof JobListener, true> = {
  checkpointCompleted: true,
  checkpointFailed: true,
  restored: true,
  indexFailed: true,
  jobStart: true,
  jobNotice: true,
  taskFailed: true,
  taskStarted: true,
  taskStopped: true,
  taskEnding: true,
  recordFailed: true,
};

/**
 * One listener that calls each given listener in turn (undefined entries are skipped). It has a
 * method only where one of them has it, so "no listener for this" stays visible to the caller.
 */
export function combineListeners(...listeners: (JobListener | undefined)[]): JobListener {
  const all = listeners.filter((l): l is JobListener => l !== undefined);
  const combined: Record<string, (info: unknown) => void> = {};
  for (const k of Object.keys(LISTENER_METHODS) as (keyof JobListener)[]) {
    if (!all.some((l) => typeof l[k] === 'function')) continue;
    combined[k] = (info) => {
      for (const l of all) (l[k] as ((i: unknown) => void) | undefined)?.call(l, info);
    };
  }
  return combined as JobListener;
}

/**
 * The framework's metrics for one job, and its readiness. The job is the label `job_id`, not `job`:
 * Prometheus sets `job` (and `instance`) on every scraped series itself, and would rename ours to
 * `exported_job`.
 */
export function instrumentJob(metrics: Metrics, jobId: string): InstrumentedJob {
  const T = ['job_id', 'task'];
  const recordsIn = metrics.counter({
    name: 'records_in_total',
    help: 'Records taken from the input channels by a task (after deserialization, before processing).',
    labels: ['job_id', 'task', 'partition'],
  });
  const lateDropped = metrics.counter({
    name: 'late_records_dropped_total',
    help: 'Records an operator dropped because they came too late for event time (behind the watermark or past the allowed lateness) and no late side output took them; as Flink numLateRecordsDropped.',
    labels: ['job_id', 'task', 'operator'],
  });
  const cpCompleted = metrics.counter({
    name: 'checkpoints_completed_total',
    help: 'Checkpoints (and savepoints) a task committed.',
    labels: T,
  });
  const cpFailed = metrics.counter({
    name: 'checkpoints_failed_total',
    help: 'Checkpoints a task declined, timed out or failed to write.',
    labels: T,
  });
  const indexFailed = metrics.counter({
    name: 'checkpoint_index_failures_total',
    help: 'Checkpoints committed by a sink transaction that could not be added to the storage index.',
    labels: T,
  });
  const lastDuration = metrics.gauge({
    name: 'checkpoint_last_duration_seconds',
    help: 'Last completed checkpoint of a task: barrier alignment + synchronous + asynchronous time.',
    labels: T,
  });
  const lastSync = metrics.gauge({
    name: 'checkpoint_last_sync_seconds',
    help: 'Last completed checkpoint of a task: synchronous part (processing paused).',
    labels: T,
  });
  const lastAsync = metrics.gauge({
    name: 'checkpoint_last_async_seconds',
    help: 'Last completed checkpoint of a task: asynchronous part (writing and committing the snapshot).',
    labels: T,
  });
  const lastAlignment = metrics.gauge({
    name: 'checkpoint_last_alignment_seconds',
    help: 'Last completed checkpoint of a task: time spent aligning barriers.',
    labels: T,
  });
  const lastSize = metrics.gauge({
    name: 'checkpoint_last_size_bytes',
    help: 'Last completed checkpoint of a task: bytes of the files it wrote.',
    labels: T,
  });
  const stateSize = metrics.gauge({
    name: 'state_size_bytes',
    help: 'Size of a task state as of its last checkpoint (bytes of the files it needs), by state backend.',
    labels: ['job_id', 'task', 'backend'],
  });
  const lastInflight = metrics.gauge({
    name: 'checkpoint_last_inflight_records',
    help: 'Last completed checkpoint of a task: in-flight records it stored (unaligned checkpoints).',
    labels: T,
  });
  const lastId = metrics.gauge({
    name: 'checkpoint_last_id',
    help: 'Id of the last completed checkpoint of a task.',
    labels: T,
  });
  const lastTime = metrics.gauge({
    name: 'checkpoint_last_completed_timestamp_seconds',
    help: 'Unix time at which the last checkpoint of a task completed.',
    labels: T,
  });
  const cpDuration = metrics.histogram({
    name: 'checkpoint_duration_seconds',
    help: 'Completed checkpoints: alignment + synchronous + asynchronous time.',
    labels: ['job_id'],
    buckets: DURATION_BUCKETS,
  });
  const restoreLast = metrics.gauge({
    name: 'restore_last_duration_seconds',
    help: 'Time the last (re)start of a task took to restore its state and open its inputs.',
    labels: T,
  });
  const restoreDuration = metrics.histogram({
    name: 'restore_duration_seconds',
    help: 'Task restores: time to restore state and open inputs (from a checkpoint or empty).',
    labels: ['job_id', 'from'],
    buckets: DURATION_BUCKETS,
  });
  const failures = metrics.counter({
    name: 'task_failures_total',
    help: 'Task failures; restarting="false" when the restart strategy gave up (the job fails).',
    labels: ['job_id', 'task', 'restarting'],
  });
  const restartsTotal = metrics.counter({
    name: 'task_restarts_total',
    help: 'Task restarts after a failure (the restart strategy allowed it).',
    labels: T,
  });
  const assignmentChanges = metrics.counter({
    name: 'task_assignment_changes_total',
    help: 'Tasks started for a newly assigned partition (change="assigned") or stopped because revoked or the job stopped (change="revoked"); restarts after failures are not counted.',
    labels: ['job_id', 'change'],
  });
  const recordsFailed = metrics.counter({
    name: 'records_failed_total',
    help: "Records a user function threw on that its policy took (policy: skip, dead-letter), by task and operator; under 'fail' the task fails instead (task_failures_total).",
    labels: ['job_id', 'task', 'operator', 'policy'],
  });
  const tasksGauge = metrics.gauge({
    name: 'tasks',
    help: 'Tasks of this process by state: restoring, running, restarting (after a failure), failed (gave up).',
    labels: ['job_id', 'state'],
  });
  const up = metrics.gauge({
    name: 'job_ready',
    help: '1 when the job is ready (every assigned task restored and running), else 0.',
    labels: ['job_id'],
  });

  const states = new Map<string, TaskState>();
  const partitions = new Map<string, number>();
  /** The Task objects sampled, per task id, and what was already counted from each. */
  const tracked = new Map<string, Tracked>();
  let attached: RunningJob | undefined;
  let jobFailed: string | undefined;

  const refreshStates = () => {
    const count: Record<TaskState, number> = { restoring: 0, running: 0, restarting: 0, failed: 0 };
    for (const s of states.values()) count[s]++;
    for (const [state, n] of Object.entries(count)) tasksGauge.set({ job_id: jobId, state }, n);
    up.set({ job_id: jobId }, readiness().ready ? 1 : 0);
  };

  const countRecords = (taskId: string, entry: Tracked) => {
    const delta = entry.task.recordsIn - entry.counted;
    if (delta > 0) {
      recordsIn.inc({ job_id: jobId, task: taskId, partition: partitions.get(taskId) ?? '' }, delta);
      entry.counted = entry.task.recordsIn;
    }
    for (const { uid, records } of entry.task.lateRecordsDropped()) {
      const before = entry.late.get(uid);
      // The first sample shows the series at 0, so that rate() and increase() see the first drop.
      if (before === undefined || records > before) {
        lateDropped.inc({ job_id: jobId, task: taskId, operator: uid }, records - (before ?? 0));
        entry.late.set(uid, records);
      }
    }
  };

  const sample = () => {
    if (attached) {
      for (const task of attached.tasks()) {
        const id = task.scope.taskId;
        const entry = tracked.get(id);
        if (entry === undefined || entry.task !== task) {
          // A new incarnation: count what is left of the old one first.
          if (entry) countRecords(id, entry);
          tracked.set(id, { task, counted: 0, late: new Map() });
        }
      }
    }
    for (const [id, entry] of tracked) countRecords(id, entry);
    refreshStates();
  };

  /** Count a task incarnation to its end and forget it. */
  const finish = (taskId: string) => {
    const entry = tracked.get(taskId);
    if (entry) countRecords(taskId, entry);
    tracked.delete(taskId);
  };

  const readiness = (): Readiness => {
    let running = 0;
    let restarting = 0;
    let restoring = 0;
    let failed: string | undefined;
    for (const [id, s] of states) {
      if (s === 'running') running++;
      else if (s === 'restarting') restarting++;
      else if (s === 'restoring') restoring++;
      else failed ??= id;
    }
    const tasks = { assigned: states.size, running, restarting };
    const not = (reason: string): Readiness => ({ ready: false, reason, tasks });
    if (jobFailed !== undefined) return not(`the job failed: ${jobFailed}`);
    if (failed !== undefined) return not(`task ${failed} failed and the restart strategy gave up`);
    if (states.size === 0) return not('no task assigned yet');
    if (restarting > 0) return not(`${restarting} of ${states.size} tasks are restarting after a failure`);
    if (restoring > 0) return not(`${restoring} of ${states.size} tasks are restoring`);
    return { ready: true, reason: 'ready', tasks };
  };

  const perTask = [
    lastDuration,
    lastSync,
    lastAsync,
    lastAlignment,
    lastSize,
    lastInflight,
    lastId,
    lastTime,
  ];

  const listener: TaskListener & JobListener = {
    taskStarted({ taskId, partition }) {
      const restart = states.get(taskId) === 'restarting';
      if (!restart) assignmentChanges.inc({ job_id: jobId, change: 'assigned' });
      states.set(taskId, 'restoring');
      partitions.set(taskId, partition);
      // The new Task object is already visible in the job: start counting it from zero.
      if (attached) sample();
      else refreshStates();
    },
    taskStopped({ taskId }) {
      finish(taskId);
      states.delete(taskId);
      assignmentChanges.inc({ job_id: jobId, change: 'revoked' });
      for (const g of perTask) g.remove({ job_id: jobId, task: taskId });
      restoreLast.remove({ job_id: jobId, task: taskId });
      refreshStates();
    },
    taskFailed({ taskId, restarting }) {
      finish(taskId);
      failures.inc({ job_id: jobId, task: taskId, restarting: String(restarting) });
      if (restarting) restartsTotal.inc({ job_id: jobId, task: taskId });
      states.set(taskId, restarting ? 'restarting' : 'failed');
      refreshStates();
    },
    restored({ taskId, checkpointId, ms: took }) {
      if (states.get(taskId) === 'restoring' || !states.has(taskId)) states.set(taskId, 'running');
      restoreLast.set({ job_id: jobId, task: taskId }, ms(took));
      restoreDuration.observe(
        { job_id: jobId, from: checkpointId === undefined ? 'empty' : 'checkpoint' },
        ms(took),
      );
      refreshStates();
    },
    checkpointCompleted(s: CheckpointStats) {
      const l = { job_id: jobId, task: s.taskId };
      const total = ms(s.alignmentMs + s.syncMs + s.asyncMs);
      cpCompleted.inc(l);
      lastDuration.set(l, total);
      lastSync.set(l, ms(s.syncMs));
      lastAsync.set(l, ms(s.asyncMs));
      lastAlignment.set(l, ms(s.alignmentMs));
      lastSize.set(l, s.bytes);
      stateSize.set({ ...l, backend: s.backend }, s.bytes);
      lastInflight.set(l, s.inflightRecords);
      lastId.set(l, s.checkpointId);
      lastTime.set(l, Date.now() / 1000);
      cpDuration.observe({ job_id: jobId }, total);
    },
    checkpointFailed({ taskId }) {
      cpFailed.inc({ job_id: jobId, task: taskId });
    },
    indexFailed({ taskId }) {
      indexFailed.inc({ job_id: jobId, task: taskId });
    },
    recordFailed({ taskId, operator, policy }) {
      recordsFailed.inc({ job_id: jobId, task: taskId, operator, policy });
    },
  };
  refreshStates();

  return {
    ...listener,
    readiness,
    attach(job, options = {}) {
      attached = job;
      jobFailed = undefined;
      job.done.then(
        () => {},
        (e: unknown) => {
          if (attached !== job) return;
          jobFailed = e instanceof Error ? e.message : String(e);
          refreshStates();
        },
      );
      sample();
      const timer = setInterval(sample, options.intervalMs ?? 1000);
      timer.unref();
      const unhook = metrics.onCollect(sample);
      return () => {
        clearInterval(timer);
        unhook();
        sample();
        if (attached === job) attached = undefined;
      };
    },
  };
}
