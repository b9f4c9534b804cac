/**
 * The Nexmark job (examples/nexmark) as a process, for crash tests: settings from the environment,
 * runs until SIGTERM (then stops its tasks and exits 0); prints `restored <task> <id>` after each
 * task's restore and `ready` once running.
 *
 *   KAFKA_BROKERS, JOB_ID, PREFIX (topic prefix), STATE_DIR, BACKEND (heap | level), CHECKPOINT_MS
 */
import { join } from 'node:path';
import { nexmarkJob, nexmarkTopics } from '../../../../examples/nexmark/job.ts';
import { FilesystemCheckpointStorage, levelBackend } from '../../../../framework/index.ts';
import { runKafkaJob } from '../../index.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const dir = env('STATE_DIR');
const job = await runKafkaJob(nexmarkJob(env('JOB_ID'), nexmarkTopics(env('PREFIX'))), {
  connection: { brokers: env('KAFKA_BROKERS').split(',') },
  storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
  ...(process.env.BACKEND === 'level' ? { backend: levelBackend(join(dir, 'level')) } : {}),
  checkpoints: { intervalMs: Number(process.env.CHECKPOINT_MS ?? 100) },
  restart: { kind: 'exponential-backoff', initialDelayMs: 100, maxDelayMs: 2000, multiplier: 2 },
  consumer: { sessionTimeoutMs: 2000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 5000 },
  listener: {
    restored: (r) => console.log(`restored ${r.taskId} ${r.checkpointId ?? '-'}`),
    taskFailed: (f) =>
      console.log(`failed ${f.taskId} ${f.error instanceof Error ? f.error.message : String(f.error)}`),
  },
});
console.log('ready');
process.on('SIGTERM', () => {
  void job.stop().then(() => process.exit(0));
});
job.done.catch((e) => {
  console.error(`job failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
