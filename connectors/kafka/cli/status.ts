import cluster from 'node:cluster';
import { hostname } from 'node:os';
import type { CheckpointStats, JobListener } from '../../../framework/index.ts';
import { GroupQueryRouting } from '../query-routing.ts';
import type { KafkaRunningJob } from '../run-kafka-job.ts';
import type { PartitionLag } from '../source/hub.ts';

export { STATUS_HTML } from './status-page.ts';

/** The process (and consumer-group member) that runs a task. */
export interface TaskOwner {
  readonly host: string;
  readonly pid: number;
  /** node:cluster worker id under `kstate run --workers n`. */
  readonly worker?: number;
  /** The consumer-group member id, once the instance has joined. */
  readonly memberId?: string;
}

export interface CheckpointFailure {
  readonly taskId: string;
  readonly checkpointId: number;
  /** Epoch ms. */
  readonly at: number;
  /** The error's message (`timed out after ... ms` for an expired checkpoint). */
  readonly reason: string;
}

export interface TaskStatus {
  readonly taskId: string;
  readonly state: 'starting' | 'running' | 'failed' | 'stopped';
  readonly owner: TaskOwner;
  readonly restoredFrom: number | null;
  readonly lastCheckpoint: number | null;
  readonly restarts: number;
  /** Records taken from the task's inputs, and written to its sinks, on this instance (restarts re-read). */
  readonly recordsIn: number;
  readonly recordsOut: number;
  /** Over the last sampling interval (about 2 s). */
  readonly inPerSec: number;
  readonly outPerSec: number;
  /** Lowest event-time watermark of the task's operators (epoch ms); null before the first. */
  readonly watermark: number | null;
  /**
   * Wall clock minus the watermark, in ms, when the watermark is a wall-clock time (2000 or later);
   * null for event times that are not (test data of 1970, sequence numbers).
   */
  readonly watermarkLagMs: number | null;
  /** Records the task's operators dropped for being late (kstate_late_records_dropped_total). */
  readonly lateDropped: number;
  /** Checkpoints declined, failed or expired (timed out). */
  readonly checkpointsFailed: number;
  readonly lastCheckpointFailure: CheckpointFailure | null;
  /** The last task failure's message, if it failed since it was assigned here. */
  readonly lastFailure: string | null;
}

export interface CheckpointPoint {
  readonly id: number;
  /** Completion time, epoch ms. */
  readonly at: number;
  /** Alignment + synchronous + asynchronous time. */
  readonly durationMs: number;
  readonly bytes: number;
  readonly savepoint?: string;
}

/** What `/status.json` answers (and the status page draws). */
export interface StatusJson {
  readonly job: string;
  readonly at: string;
  /** Epoch ms of `at`. */
  readonly now: number;
  /** Who answers: an instance, or the primary of `kstate run --workers n` (its tasks are the workers'). */
  readonly instance: TaskOwner & { readonly workers?: number };
  /** `instance`: this instance's tasks only; `workers`: every worker of this process. */
  readonly scope: 'instance' | 'workers';
  /** Tasks of the whole job (every stage's partitions), wherever they run. */
  readonly jobTasks: number;
  readonly totals: {
    readonly inPerSec: number;
    readonly outPerSec: number;
    readonly lateDropped: number;
    readonly checkpointsFailed: number;
  };
  readonly tasks: readonly TaskStatus[];
  /** Recent completed checkpoints, one series per task (oldest first). */
  readonly checkpoints: Readonly<Record<string, readonly CheckpointPoint[]>>;
  /** Recent checkpoint failures of all tasks, oldest first. */
  readonly failures: readonly CheckpointFailure[];
  readonly lag: readonly PartitionLag[];
  /** Scope `workers`: how many workers answered the primary (the others are left out). */
  readonly answered?: number;
}

/** Per task: how many checkpoints are kept for the chart. */
const POINTS_PER_TASK = 40;
const RECENT_FAILURES = 20;
/** Event times before this (2000-01-01) are not wall-clock times: no lag is shown for them. */
const WALL_CLOCK_EPOCH = 946_684_800_000;

interface Row {
  taskId: string;
  state: TaskStatus['state'];
  restoredFrom: number | null;
  lastCheckpoint: number | null;
  restarts: number;
  checkpointsFailed: number;
  lastCheckpointFailure: CheckpointFailure | null;
  lastFailure: string | null;
}

interface Counts {
  in: number;
  out: number;
  late: number;
}

/** What a Task object shows of its counters. */
interface TaskCounters {
  readonly scope: { readonly taskId: string };
  readonly recordsIn: number;
  recordsWritten(): number;
  lateRecordsDropped(): readonly { readonly records: number }[];
  watermarks(): readonly { readonly watermark: number }[];
}

/** One task id's counters across its incarnations (a restart makes a new Task object). */
interface Tracked {
  task: TaskCounters;
  /** Totals of the earlier incarnations, as last sampled. */
  base: Counts;
  last: Counts;
  /** Totals and time of the previous sample, for rates. */
  prev: { total: Counts; atMs: number } | undefined;
  rate: { in: number; out: number };
}

const ZERO: Counts = { in: 0, out: 0, late: 0 };
const plus = (a: Counts, b: Counts): Counts => ({
  in: a.in + b.in,
  out: a.out + b.out,
  late: a.late + b.late,
});
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * What the status page shows of one instance: its tasks with their state, owner, throughput,
 * watermark, late records, checkpoint failures; recent checkpoints per task; consumer lag. Fed by a
 * JobListener and by sampling the job's tasks every `everyMs` (`watch`); `json()` is /status.json.
 */
export class StatusBoard {
  readonly jobId: string;
  readonly #owner: { host: string; pid: number; worker?: number };
  readonly #rows = new Map<string, Row>();
  readonly #points = new Map<string, CheckpointPoint[]>();
  readonly #failures: CheckpointFailure[] = [];
  readonly #tracked = new Map<string, Tracked>();
  #lag: PartitionLag[] = [];
  #job: KafkaRunningJob | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #now: () => number;

  /** `now`: the wall clock (epoch ms) of checkpoint times, failures and the watermark lag; tests pass their own. */
  constructor(jobId: string, o: { now?: () => number } = {}) {
    this.jobId = jobId;
    this.#now = o.now ?? Date.now;
    this.#owner = {
      host: hostname(),
      pid: process.pid,
      ...(cluster.isWorker && cluster.worker ? { worker: cluster.worker.id } : {}),
    };
  }

  listener(): JobListener {
    const row = (taskId: string): Row => {
      let r = this.#rows.get(taskId);
      if (!r) {
        r = {
          taskId,
          state: 'starting',
          restoredFrom: null,
          lastCheckpoint: null,
          restarts: 0,
          checkpointsFailed: 0,
          lastCheckpointFailure: null,
          lastFailure: null,
        };
        this.#rows.set(taskId, r);
      }
      return r;
    };
    return {
      taskStarted: (t) => {
        row(t.taskId).state = 'starting';
      },
      restored: (r) => {
        const t = row(r.taskId);
        t.state = 'running';
        t.restoredFrom = r.checkpointId ?? null;
      },
      taskFailed: (f) => {
        const t = row(f.taskId);
        t.state = 'failed';
        t.lastFailure = message(f.error);
        if (f.restarting) t.restarts++;
      },
      taskStopped: (t) => {
        row(t.taskId).state = 'stopped';
      },
      checkpointCompleted: (s: CheckpointStats) => {
        row(s.taskId).lastCheckpoint = s.checkpointId;
        const points = this.#points.get(s.taskId) ?? [];
        points.push({
          id: s.checkpointId,
          at: this.#now(),
          durationMs: Math.round((s.alignmentMs + s.syncMs + s.asyncMs) * 10) / 10,
          bytes: s.bytes,
          ...(s.savepoint === undefined ? {} : { savepoint: s.savepoint }),
        });
        if (points.length > POINTS_PER_TASK) points.shift();
        this.#points.set(s.taskId, points);
      },
      checkpointFailed: (f) => {
        const failure = {
          taskId: f.taskId,
          checkpointId: f.checkpointId,
          at: this.#now(),
          reason: message(f.error),
        };
        const t = row(f.taskId);
        t.checkpointsFailed++;
        t.lastCheckpointFailure = failure;
        this.#failures.push(failure);
        if (this.#failures.length > RECENT_FAILURES) this.#failures.shift();
      },
    };
  }

  /** Sample the job's tasks and poll its consumer lag every `everyMs`. */
  watch(job: KafkaRunningJob, everyMs = 2000): void {
    this.#job = job;
    const poll = () => {
      this.sample();
      job.lag().then(
        (l) => {
          this.#lag = l;
        },
        () => {},
      );
    };
    poll();
    this.#timer = setInterval(poll, everyMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * Read every task's counters; rates are over the time since the previous sample. Public for tests
   * (`watch` calls it on its timer).
   */
  sample(tasks: readonly TaskCounters[] = this.#job?.tasks() ?? [], atMs = performance.now()): void {
    for (const task of tasks) {
      const id = task.scope.taskId;
      let t = this.#tracked.get(id);
      if (t === undefined || t.task !== task) {
        t = {
          task,
          base: t ? plus(t.base, t.last) : ZERO,
          last: ZERO,
          prev: t?.prev,
          rate: { in: 0, out: 0 },
        };
        this.#tracked.set(id, t);
      }
      t.last = {
        in: task.recordsIn,
        out: task.recordsWritten(),
        late: task.lateRecordsDropped().reduce((s, o) => s + o.records, 0),
      };
      const total = plus(t.base, t.last);
      if (t.prev !== undefined && atMs > t.prev.atMs) {
        const seconds = (atMs - t.prev.atMs) / 1000;
        t.rate = {
          in: Math.max(0, total.in - t.prev.total.in) / seconds,
          out: Math.max(0, total.out - t.prev.total.out) / seconds,
        };
      }
      t.prev = { total, atMs };
    }
  }

  json(): StatusJson {
    const now = this.#now();
    const membership =
      this.#job?.queryRouting instanceof GroupQueryRouting ? this.#job.queryRouting.membership() : undefined;
    const owner: TaskOwner = {
      ...this.#owner,
      ...(membership?.memberId === undefined ? {} : { memberId: membership.memberId }),
    };
    const tasks: TaskStatus[] = [...this.#rows.values()]
      .filter((r) => r.state !== 'stopped')
      .map((r) => {
        const t = this.#tracked.get(r.taskId);
        const total = t ? plus(t.base, t.last) : ZERO;
        const marks = (t?.task.watermarks() ?? []).map((w) => w.watermark);
        const low = marks.length === 0 ? Number.NEGATIVE_INFINITY : Math.min(...marks);
        const watermark = Number.isFinite(low) ? low : null;
        return {
          ...r,
          owner,
          recordsIn: total.in,
          recordsOut: total.out,
          inPerSec: round(t?.rate.in ?? 0),
          outPerSec: round(t?.rate.out ?? 0),
          watermark,
          watermarkLagMs:
            watermark !== null && watermark >= WALL_CLOCK_EPOCH ? Math.max(0, now - watermark) : null,
          lateDropped: total.late,
        };
      });
    const shown = new Set(tasks.map((t) => t.taskId));
    return {
      job: this.jobId,
      at: new Date(now).toISOString(),
      now,
      instance: owner,
      scope: 'instance',
      jobTasks: (this.#job?.plan.stages ?? []).reduce((s, st) => s + st.partitions, 0),
      totals: totalsOf(tasks),
      tasks,
      checkpoints: Object.fromEntries([...this.#points].filter(([id]) => shown.has(id))),
      failures: [...this.#failures],
      lag: this.#lag,
    };
  }
}

export function totalsOf(tasks: readonly TaskStatus[]): StatusJson['totals'] {
  return {
    inPerSec: round(tasks.reduce((s, t) => s + t.inPerSec, 0)),
    outPerSec: round(tasks.reduce((s, t) => s + t.outPerSec, 0)),
    lateDropped: tasks.reduce((s, t) => s + t.lateDropped, 0),
    checkpointsFailed: tasks.reduce((s, t) => s + t.checkpointsFailed, 0),
  };
}

const round = (x: number) => Math.round(x * 10) / 10;
