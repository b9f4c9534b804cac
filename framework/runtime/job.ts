import type { Clock } from '../api/clock.ts';
import { systemClock } from '../api/clock.ts';
import { type FailureClass, failureClass, StreamError } from '../api/errors.ts';
import { decideRestart, restartDelay } from '../checkpoint/decisions.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import { type JobPlan, planJob } from '../graph/plan.ts';
import type { JobGraph } from '../graph/types.ts';
import { type JobChangeHooks, type JobStart, prepareJobStart } from '../savepoint/job-change.ts';
import { commitSavepointTopology, jobTopology } from '../savepoint/topology.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';
import { type RuntimeConfigInput, resolveRuntimeConfig } from './config.ts';
import type { FaultInjector } from './faults.ts';
import { type RestoreFrom, Task, type TaskListener } from './task.ts';

export interface JobOptions extends RuntimeConfigInput {
  readonly storage: CheckpointStorage;
  /** Keyed state backend per task; default heap. */
  readonly backend?: (scope: Scope) => KeyedStateBackend | Promise<KeyedStateBackend>;
  readonly clock?: Clock;
  /**
   * Start from a named savepoint instead of the latest checkpoint. A savepoint of other stages than
   * the job's is re-cut by operator uid first (docs/savepoints.md, "Job changes").
   */
  readonly savepoint?: string;
  /** What the environment knows and does when the job's stages changed (Kafka: runKafkaJob sets it). */
  readonly jobChange?: JobChangeHooks;
  /**
   * A scratch backend to read keyed state that old checkpoints keep in a backend's own format when the
   * job's stages changed. Default: `backend` with the task id suffixed `.restructure`.
   */
  readonly scratchBackend?: (scope: Scope) => KeyedStateBackend | Promise<KeyedStateBackend>;
  readonly faults?: FaultInjector;
  readonly listener?: JobListener;
  /**
   * Which partitions this instance runs (a consumer group's assignment). Default: every partition of
   * every stage, and the job is done when all of them ended their input.
   */
  readonly assignment?: AssignmentSource;
}

/**
 * Tells a job which partitions of each stage this instance owns, and when that changes (Kafka
 * consumer-group rebalances). `start` returns once the source is running; `onChange` gets the full
 * new ownership each time; tasks of partitions no longer owned are stopped, new ones started.
 */
export interface AssignmentSource {
  /**
   * Start assigning: `onChange` gets the partitions this instance owns after every change. Should the
   * source stop assigning for good (a Kafka consumer kafkajs stopped), it calls `onFailed`: the job
   * fails with that error rather than run on with an assignment nobody keeps.
   */
  start(
    plan: JobPlan,
    onChange: (owned: ReadonlyMap<number, ReadonlySet<number>>) => Promise<void>,
    onFailed?: (error: unknown) => void,
  ): Promise<void>;
  stop(): Promise<void>;
}

export interface JobListener extends TaskListener {
  /** How the job starts, decided before any task starts (`prepareJobStart`); `changed` when its stages changed. */
  jobStart?(info: JobStart): void;
  /** A line worth a log entry about the start (a job change, dropped state). */
  jobNotice?(info: { level: 'info' | 'warn'; message: string }): void;
  /**
   * A task failed: `restarting` after `delayMs`, or not (the job fails with it: a permanent failure, or
   * the restart strategy gave up). `failure` is its class (`failureClass`): transient ones are not
   * counted by the restart strategy.
   */
  taskFailed?(info: {
    taskId: string;
    error: unknown;
    restarting: boolean;
    delayMs: number;
    failure?: FailureClass;
  }): void;
  taskStarted?(info: { taskId: string; partition: number }): void;
  taskStopped?(info: { taskId: string; partition: number }): void;
}

/** A running job: its tasks, each restarted on failure per the restart strategy. */
export interface RunningJob {
  readonly plan: JobPlan;
  /**
   * Resolves once the start is decided (where every task restores from; state re-cut first when the
   * job's stages changed) and tasks or the assignment have started; rejects with the reason the job
   * cannot start (STATE_NOT_RESTORED, JOB_CHANGE_BLOCKED, ...), as `done` then does.
   */
  readonly started: Promise<JobStart>;
  /**
   * Static jobs: resolves when every task has ended its input (after final checkpoints). Jobs with an
   * assignment source: resolves after `stop()`. Rejects when a task's restart strategy gives up.
   */
  readonly done: Promise<void>;
  /** Take a savepoint of every running task; resolves with their metadata. */
  savepoint(name: string): Promise<CheckpointMetadata[]>;
  /**
   * Stop every task. With `finalCheckpoint`, each task first takes a checkpoint and commits it
   * (graceful shutdown: the next start resumes exactly there); past `timeoutMs` (or without it) the
   * tasks stop at once, resuming from their last committed checkpoint. Nothing committed is lost.
   */
  stop(options?: StopOptions): Promise<StopReport>;
  /** Hold back or release the input of one source in every task (backpressure on one input). */
  hold(sourceUid: string, held: boolean): void;
  /** Restarts made so far, over all tasks. */
  restarts(): number;
  tasks(): readonly Task[];
}

export interface StopOptions {
  readonly finalCheckpoint?: boolean;
  /** Deadline for the final checkpoints. Default 30000. */
  readonly timeoutMs?: number;
}

export interface StopReport {
  /** Tasks whose final checkpoint committed before the stop. */
  readonly checkpointed: number;
  /** Tasks stopped without one (deadline, or failure): they resume from their last checkpoint. */
  readonly uncheckpointed: number;
}

/** A task that ran this long before a transient failure starts its backoff from the first delay again. */
const RESET_TRANSIENT_AFTER_MS = 60_000;

interface Supervisor {
  readonly key: string;
  /** The current incarnation; while `waking` is set, the failed one, torn down. */
  task: Task | undefined;
  revoked: boolean;
  /** Set while the task waits out its restart delay: ends the wait at once (stop, revoke). */
  waking: (() => void) | undefined;
  readonly done: Promise<void>;
}

/**
 * Run a job in this process: one task per stage x owned partition. A failed task alone is torn down
 * and restored from its last committed checkpoint (tasks share nothing, so a failure is local). How
 * depends on the failure's class (`failureClass`, docs/runtime.md "Failures and restarts"):
 * - counted (a user function threw, a checkpoint failed ...): after the delay the restart strategy
 *   decides; when it gives up, the job fails with RESTART_LIMIT_EXCEEDED carrying the last error;
 * - transient (the broker, the schema registry or the object store unreachable): restarted with the
 *   strategy's backoff for as long as it lasts, not counted (only strategy 'none' never restarts);
 * - permanent (a code in PERMANENT_CODES: configuration, a corrupt or missing savepoint or checkpoint,
 *   incompatible state, a record in the wrong partition; or an unusable storage path): not restarted,
 *   the job fails at once with that error.
 */
export function runJob(graph: JobGraph, options: JobOptions): RunningJob {
  const plan = planJob(graph);
  const config = resolveRuntimeConfig(options);
  const clock = options.clock ?? systemClock;
  const createBackend = options.backend ?? (() => new HeapKeyedStateBackend());
  const notice = (level: 'info' | 'warn', message: string) => {
    if (options.listener?.jobNotice) options.listener.jobNotice({ level, message });
    else if (level === 'warn') process.emitWarning(message, 'JobChangeWarning');
  };
  const started: Promise<JobStart> = prepareJobStart({
    storage: options.storage,
    jobId: graph.jobId,
    plan,
    savepoint: options.savepoint,
    allowNonRestoredState: config.allowNonRestoredState,
    ...(options.jobChange ? { hooks: options.jobChange } : {}),
    openBackend: async (scope) =>
      options.scratchBackend
        ? options.scratchBackend(scope)
        : createBackend({ jobId: scope.jobId, taskId: `${scope.taskId}.restructure` }),
    warn: (m) => notice('warn', m),
    info: (m) => notice('info', m),
  }).then((s) => {
    options.listener?.jobStart?.(s);
    return s;
  });
  started.catch(() => {});
  const supervisors = new Map<string, Supervisor>();
  let stopped = false;
  /** From the first `stop()` on: a task that fails is not restarted (it resumes from its last checkpoint). */
  let stopping = false;
  let restarts = 0;
  const held = new Set<string>();
  let fail!: (e: unknown) => void;
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => {});

  const supervise = async (sup: Supervisor, stageIndex: number, partition: number): Promise<void> => {
    const stage = plan.stages[stageIndex]!;
    const start = await started;
    let restoreFrom: RestoreFrom =
      start.savepoint !== undefined ? { kind: 'savepoint', name: start.savepoint } : { kind: 'latest' };
    let windowRestarts = 0;
    /** Transient failures in a row (their backoff grows; no strategy limits them). */
    let transientStreak = 0;
    /** When this task's counted failures happened (the failure-rate strategy's window). */
    const counted: number[] = [];
    for (;;) {
      const task = new Task({
        jobId: graph.jobId,
        plan,
        stage,
        partition,
        storage: options.storage,
        createBackend,
        clock,
        config,
        restoreFrom,
        faults: options.faults,
        listener: options.listener,
      });
      sup.task = task;
      for (const uid of held) task.hold(uid, true);
      const started = clock.now();
      options.listener?.taskStarted?.({ taskId: task.scope.taskId, partition });
      try {
        await task.run();
        if (stopped || sup.revoked) {
          options.listener?.taskEnding?.({ taskId: task.scope.taskId, partition });
          await task.abort();
        }
        options.listener?.taskStopped?.({ taskId: task.scope.taskId, partition });
        return;
      } catch (error) {
        options.listener?.taskEnding?.({ taskId: task.scope.taskId, partition });
        await task.abort();
        if (stopped || stopping || sup.revoked) {
          options.listener?.taskStopped?.({ taskId: task.scope.taskId, partition });
          return;
        }
        // Once this run committed a checkpoint, restarts resume from the latest one.
        if (task.lastCompletedCheckpoint !== undefined) restoreFrom = { kind: 'latest' };
        const failure = failureClass(error);
        const ranForMs = clock.now() - started;
        if (ranForMs >= RESET_TRANSIENT_AFTER_MS || failure !== 'transient') transientStreak = 0;
        const d =
          failure === 'transient' && config.restart.kind !== 'none'
            ? {
                restart: true as const,
                delayMs: restartDelay(config.restart, transientStreak++),
                restarts: windowRestarts,
              }
            : decideRestart(config.restart, {
                restarts: windowRestarts,
                ranForMs,
                permanent: failure === 'permanent',
                failureTimes: counted,
                now: clock.now(),
              });
        if (failure === 'counted') {
          counted.push(clock.now());
          if (counted.length > 1000) counted.shift();
        }
        options.listener?.taskFailed?.({
          taskId: task.scope.taskId,
          error,
          restarting: d.restart,
          delayMs: d.restart ? d.delayMs : 0,
          failure,
        });
        if (!d.restart) {
          // A permanent failure would fail every restart the same way: the job fails with it.
          if (d.permanent) throw error;
          throw new StreamError(
            'RESTART_LIMIT_EXCEEDED',
            `task ${task.scope.taskId} failed and the restart strategy (${config.restart.kind}) gives up: ${error instanceof Error ? error.message : String(error)}`,
            { cause: error },
          );
        }
        windowRestarts = d.restarts;
        restarts++;
        if (d.delayMs > 0) {
          await new Promise<void>((resolve) => {
            const cancel = clock.schedule(clock.now() + d.delayMs, resolve);
            sup.waking = () => {
              cancel();
              resolve();
            };
          });
          sup.waking = undefined;
        }
        if (stopped || stopping || sup.revoked) {
          options.listener?.taskStopped?.({ taskId: task.scope.taskId, partition });
          return;
        }
      }
    }
  };

  const startTask = (stageIndex: number, partition: number): Supervisor => {
    const key = `${stageIndex}/${partition}`;
    const sup: Supervisor = {
      key,
      task: undefined,
      revoked: false,
      waking: undefined,
      done: Promise.resolve(),
    };
    const done = supervise(sup, stageIndex, partition);
    done.catch((e) => fail(e));
    Object.assign(sup, { done });
    supervisors.set(key, sup);
    return sup;
  };

  const revoke = async (sup: Supervisor): Promise<void> => {
    sup.revoked = true;
    sup.task?.stop();
    sup.waking?.();
    await sup.done.catch(() => {});
    supervisors.delete(sup.key);
  };

  let done: Promise<void>;
  let stopAll: () => Promise<void>;
  if (options.assignment) {
    const source = options.assignment;
    let stopRequested!: () => void;
    const stopSignal = new Promise<void>((r) => {
      stopRequested = r;
    });
    const onChange = async (owned: ReadonlyMap<number, ReadonlySet<number>>) => {
      if (stopped) return;
      const keep = new Set<string>();
      for (const [stage, parts] of owned) for (const p of parts) keep.add(`${stage}/${p}`);
      await Promise.all([...supervisors.values()].filter((s) => !keep.has(s.key)).map(revoke));
      for (const [stage, parts] of owned)
        for (const p of parts) if (!supervisors.has(`${stage}/${p}`)) startTask(stage, p);
    };
    done = (async () => {
      await started;
      await source.start(plan, onChange, (e) => fail(e));
      try {
        await Promise.race([stopSignal, failed]);
      } finally {
        stopped = true;
        await Promise.allSettled([...supervisors.values()].map(revoke));
        await source.stop();
      }
    })();
    stopAll = async () => {
      stopped = true;
      stopRequested();
      await done.catch(() => {});
    };
  } else {
    for (const stage of plan.stages) for (let p = 0; p < stage.partitions; p++) startTask(stage.index, p);
    done = (async () => {
      const all = Promise.all([...supervisors.values()].map((s) => s.done));
      try {
        await Promise.race([all, failed]);
      } catch (e) {
        stopped = true;
        for (const s of supervisors.values())
          if (s.task)
            options.listener?.taskEnding?.({ taskId: s.task.scope.taskId, partition: s.task.partition });
        await Promise.allSettled([...supervisors.values()].map((s) => s.task?.abort()));
        throw e;
      }
    })();
    stopAll = async () => {
      stopped = true;
      for (const s of supervisors.values()) {
        s.task?.stop();
        s.waking?.();
      }
      await done.catch(() => {});
    };
  }
  done.catch(() => {});
  const tasks = () => [...supervisors.values()].flatMap((s) => (s.task ? [s.task] : []));

  return {
    plan,
    started,
    done,
    async savepoint(name) {
      // A task waiting to restart would never answer: refuse rather than hang.
      const waiting = [...supervisors.values()].filter((s) => s.waking !== undefined);
      if (waiting.length > 0) {
        throw new StreamError(
          'CHECKPOINT_DECLINED',
          `savepoint '${name}': task(s) ${waiting.map((s) => s.task?.scope.taskId ?? s.key).join(', ')} wait to restart after a failure; take it once they run again`,
        );
      }
      const metas = await Promise.all(tasks().map((t) => t.savepoint(name)));
      // The layout it was taken with: a start from it of another layout re-cuts it by uid.
      await commitSavepointTopology(options.storage, graph.jobId, name, jobTopology(graph.jobId, plan));
      return metas;
    },
    async stop(opts = {}) {
      stopping = true;
      let checkpointed = 0;
      // A task waiting out its restart delay has nothing to checkpoint: it stops at once and resumes
      // from its last committed checkpoint (it counts as uncheckpointed).
      const all = supervisors.size;
      const running = [...supervisors.values()].flatMap((s) =>
        s.task !== undefined && s.waking === undefined ? [s.task] : [],
      );
      for (const s of supervisors.values()) s.waking?.();
      if (opts.finalCheckpoint && running.length > 0) {
        const deadline = new Promise<'deadline'>((r) =>
          setTimeout(() => r('deadline'), opts.timeoutMs ?? 30_000).unref(),
        );
        const results = await Promise.all(
          running.map((t) =>
            Promise.race([
              t.checkpointNow().then(
                () => 'ok' as const,
                () => 'failed' as const,
              ),
              deadline,
            ]),
          ),
        );
        checkpointed = results.filter((r) => r === 'ok').length;
      }
      await stopAll();
      return { checkpointed, uncheckpointed: all - checkpointed };
    },
    hold(uid, h) {
      if (h) held.add(uid);
      else held.delete(uid);
      for (const t of tasks()) t.hold(uid, h);
    },
    restarts: () => restarts,
    tasks,
  };
}
