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
import { env, runJobProcess } from './job-process.ts';

const dir = env('STATE_DIR');
await runJobProcess(
  mlJob({
    jobId: env('JOB_ID'),
    train: env('TRAIN'),
    score: env('SCORE'),
    predictions: env('PREDICTIONS'),
    models: env('MODELS'),
    publishIntervalMs: Number(process.env.PUBLISH_MS ?? 100),
  }),
  {
    storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
    ...(process.env.BACKEND === 'heap' ? {} : { backend: levelBackend(join(dir, 'level')) }),
  },
);
