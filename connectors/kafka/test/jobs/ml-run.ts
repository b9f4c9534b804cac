/**
 * The online-learning example job as a process, for the ML crash test: settings from the
 * environment, runs until SIGTERM (then stops its tasks and exits 0), prints `ready` once its
 * tasks run, `restored <task> <checkpoint>` and `checkpoint <task> <id>` as they happen.
 *
 *   KAFKA_BROKERS, JOB_ID, TRAIN, SCORE, PREDICTIONS, MODELS, STATE_DIR,
 *   CHECKPOINT_MS (default 100), PUBLISH_MS (default 100), BACKEND (level | heap, default level)
 */
import { join } from 'node:path';
import { mlJob } from '../../../../examples/ml/job.ts';
import { FilesystemCheckpointStorage, levelBackend } from '../../../../framework/index.ts';
import { runKafkaJob } from '../../index.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const dir = env('STATE_DIR');
const job = await runKafkaJob(
  mlJob({
    jobId: env('JOB_ID'),
    train: env('TRAIN'),
    score: env('SCORE'),
    predictions: env('PREDICTIONS'),
    models: env('MODELS'),
    publishIntervalMs: Number(process.env.PUBLISH_MS ?? 100),
  }),
  {
    connection: { brokers: env('KAFKA_BROKERS').split(',') },
    storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
    ...(process.env.BACKEND === 'heap' ? {} : { backend: levelBackend(join(dir, 'level')) }),
    checkpoints: { intervalMs: Number(process.env.CHECKPOINT_MS ?? 100) },
    restart: { kind: 'exponential-backoff', initialDelayMs: 100, maxDelayMs: 2000, multiplier: 2 },
    consumer: { sessionTimeoutMs: 2000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 5000 },
    listener: {
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
