/**
 * The count job as a process, for crash tests: reads its settings from the environment, runs until
 * SIGTERM (then stops its tasks and exits 0), prints `ready` once its first tasks run and
 * `checkpoint <task> <id>` for each completed checkpoint.
 *
 *   KAFKA_BROKERS, JOB_ID, INPUT, OUTPUT, STATE_DIR, CHECKPOINT_MS (default 100)
 */
import { join } from 'node:path';
import type { FaultInjector } from '../../../../framework/index.ts';
import { runKafkaJob } from '../../index.ts';
import { checkpointStorage, countJob } from './count-job.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

/** CRASH_AT=<fault point>:<n>: the process kills itself (SIGKILL) at the n-th time it reaches the point. */
const crashAt = process.env.CRASH_AT?.split(':');
let reached = 0;
const faults: FaultInjector | undefined = crashAt
  ? (point, info) => {
      if (point === crashAt[0] && ++reached === Number(crashAt[1] ?? 1)) {
        console.log(`crashing at ${point} ${info.taskId} ${info.checkpointId}`);
        process.kill(process.pid, 'SIGKILL');
      }
    }
  : undefined;

const job = await runKafkaJob(
  countJob({ jobId: env('JOB_ID'), input: env('INPUT'), output: env('OUTPUT') }),
  {
    connection: { brokers: env('KAFKA_BROKERS').split(',') },
    storage: checkpointStorage(join(env('STATE_DIR'), 'shared')),
    checkpoints: { intervalMs: Number(process.env.CHECKPOINT_MS ?? 100) },
    restart: { kind: 'exponential-backoff', initialDelayMs: 100, maxDelayMs: 2000, multiplier: 2 },
    ...(faults ? { faults } : {}),
    consumer: { sessionTimeoutMs: 2000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 5000 },
    listener: {
      taskStarted: (t) => console.log(`started ${t.taskId}`),
      taskStopped: (t) => console.log(`stopped ${t.taskId}`),
      restored: (r) => console.log(`restored ${r.taskId} ${r.checkpointId ?? '-'}`),
      checkpointCompleted: (s) => console.log(`checkpoint ${s.taskId} ${s.checkpointId}`),
      taskFailed: (f) =>
        console.log(`failed ${f.taskId} ${f.error instanceof Error ? f.error.message : String(f.error)}`),
    },
  },
);
console.log('ready');
process.on('SIGTERM', () => {
  void job.stop().then(() => process.exit(0));
});
job.done.catch((e) => {
  console.error(`job failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
