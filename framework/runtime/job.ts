import type { Clock } from '../api/clock.ts';
import { systemClock } from '../api/clock.ts';
import { StreamError } from '../api/errors.ts';
import { decideRestart } from '../checkpoint/decisions.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import { type JobPlan, planJob } from '../graph/plan.ts';
import type { JobGraph } from '../graph/types.ts';
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
  /** Start from a named savepoint instead of the latest checkpoint. */
  readonly savepoint?: string;
  readonly faults?: FaultInjector;
  readonly listener?: JobListener;
}

export interface JobListener extends TaskListener {
  taskFailed?(info: { taskId: string; error: unknown; restarting: boolean; delayMs: number }): void;
}

/** A running job: its tasks, each restarted on failure per the restart strategy. */
export interface RunningJob {
  readonly plan: JobPlan;
  /** Resolves when every task has ended its input (after final checkpoints); rejects when one gives up. */
  readonly done: Promise<void>;
  /** Take a savepoint of every task; resolves with their metadata. */
  savepoint(name: string): Promise<CheckpointMetadata[]>;
  /** Stop every task without a final checkpoint (the next start resumes from the last one). */
  stop(): Promise<void>;
  /** Hold back or release the input of one source in every task (backpressure on one input). */
  hold(sourceUid: string, held: boolean): void;
  /** Restarts made so far, over all tasks. */
  restarts(): number;
  tasks(): readonly Task[];
}

/**
 * Run a job in this process: one task per stage x partition. A failed task alone is torn down and
 * restored from its last committed checkpoint (tasks share nothing, so a failure is local), after
 * the delay the restart strategy decides; when the strategy gives up the job fails with
 * RESTART_LIMIT_EXCEEDED carrying the last error.
 */
export function runJob(graph: JobGraph, options: JobOptions): RunningJob {
  const plan = planJob(graph);
  const config = resolveRuntimeConfig(options);
  const clock = options.clock ?? systemClock;
  const createBackend = options.backend ?? (() => new HeapKeyedStateBackend());
  const current: Task[] = [];
  let stopped = false;
  let restarts = 0;
  const held = new Set<string>();

  const supervise = async (stageIndex: number, partition: number, slot: number): Promise<void> => {
    const stage = plan.stages[stageIndex]!;
    let restoreFrom: RestoreFrom = options.savepoint
      ? { kind: 'savepoint', name: options.savepoint }
      : { kind: 'latest' };
    let windowRestarts = 0;
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
      current[slot] = task;
      const started = clock.now();
      try {
        const run = task.run();
        for (const uid of held) task.hold(uid, true);
        await run;
        if (stopped) await task.abort();
        return;
      } catch (error) {
        await task.abort();
        if (stopped) return;
        // Once this run committed a checkpoint, restarts resume from the latest one.
        if (task.lastCompletedCheckpoint !== undefined) restoreFrom = { kind: 'latest' };
        const d = decideRestart(config.restart, {
          restarts: windowRestarts,
          ranForMs: clock.now() - started,
        });
        options.listener?.taskFailed?.({
          taskId: task.scope.taskId,
          error,
          restarting: d.restart,
          delayMs: d.restart ? d.delayMs : 0,
        });
        if (!d.restart) {
          throw new StreamError(
            'RESTART_LIMIT_EXCEEDED',
            `task ${task.scope.taskId} failed and the restart strategy (${config.restart.kind}) gives up: ${error instanceof Error ? error.message : String(error)}`,
            { cause: error },
          );
        }
        windowRestarts = d.restarts;
        restarts++;
        if (d.delayMs > 0) await new Promise<void>((r) => clock.schedule(clock.now() + d.delayMs, r));
        if (stopped) return;
      }
    }
  };

  const runs: Promise<void>[] = [];
  let slot = 0;
  for (const stage of plan.stages) {
    for (let p = 0; p < stage.partitions; p++) runs.push(supervise(stage.index, p, slot++));
  }
  const done = (async () => {
    const results = await Promise.allSettled(runs);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      stopped = true;
      await Promise.allSettled(current.map((t) => t.abort()));
      throw (failed as PromiseRejectedResult).reason;
    }
  })();
  done.catch(() => {});

  return {
    plan,
    done,
    async savepoint(name) {
      return Promise.all(current.map((t) => t.savepoint(name)));
    },
    async stop() {
      stopped = true;
      for (const t of current) t.stop();
      await done.catch(() => {});
    },
    hold(uid, h) {
      if (h) held.add(uid);
      else held.delete(uid);
      for (const t of current) t.hold(uid, h);
    },
    restarts: () => restarts,
    tasks: () => current,
  };
}
