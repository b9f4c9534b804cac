/**
 * The common part of the job processes the crash tests start (run-count.ts, run-example.ts,
 * ml-run.ts): settings from the environment, the crash-test tuning (checkpoints every CHECKPOINT_MS,
 * default 100; short group timeouts; restarts with backoff), and the protocol the tests read on
 * stdout: `started`/`stopped`/`restored <task> <id>`/`checkpoint <task> <id>`/`failed <task> <why>`,
 * `ready` once running. SIGTERM stops the tasks and exits 0; a failed job exits 1.
 */
import type { StreamJob } from '../../../../framework/index.ts';
import { type KafkaJobOptions, runKafkaJob } from '../../index.ts';

/** A required environment variable. */
export function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

/** Run `job` until SIGTERM with the crash-test settings; `options` adds storage, backend, faults. */
export async function runJobProcess(
  job: StreamJob,
  options: Omit<KafkaJobOptions, 'connection'>,
): Promise<void> {
  const running = await runKafkaJob(job, {
    connection: { brokers: env('KAFKA_BROKERS').split(',') },
    checkpoints: { intervalMs: Number(process.env.CHECKPOINT_MS ?? 100) },
    restart: { kind: 'exponential-backoff', initialDelayMs: 100, maxDelayMs: 2000, multiplier: 2 },
    listener: {
      taskStarted: (t) => console.log(`started ${t.taskId}`),
      taskStopped: (t) => console.log(`stopped ${t.taskId}`),
      restored: (r) => console.log(`restored ${r.taskId} ${r.checkpointId ?? '-'}`),
      checkpointCompleted: (s) => console.log(`checkpoint ${s.taskId} ${s.checkpointId}`),
      taskFailed: (f) =>
        console.log(`failed ${f.taskId} ${f.error instanceof Error ? f.error.message : String(f.error)}`),
    },
    ...options,
    // The process's group tuning, with what `options` sets of it on top.
    consumer: {
      sessionTimeoutMs: 2000,
      heartbeatIntervalMs: 300,
      rebalanceTimeoutMs: 5000,
      ...options.consumer,
    },
  });
  console.log('ready');
  process.on('SIGTERM', () => {
    void running.stop().then(() => process.exit(0));
  });
  running.done.catch((e) => {
    console.error(`job failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
