/**
 * An example job (EXAMPLE = nexmark | clickstream) as a process, for crash tests: settings from the
 * environment, runs until SIGTERM (then stops its tasks and exits 0); prints `restored <task> <id>`
 * after each task's restore and `ready` once running.
 *
 *   KAFKA_BROKERS, EXAMPLE, JOB_ID, PREFIX (topic prefix), STATE_DIR, BACKEND (heap | level), CHECKPOINT_MS
 */
import { join } from 'node:path';
import { clickstreamJob } from '../../../../examples/clickstream/job.ts';
import { nexmarkJob, nexmarkTopics } from '../../../../examples/nexmark/job.ts';
import { FilesystemCheckpointStorage, levelBackend } from '../../../../framework/index.ts';
import { runKafkaJob } from '../../index.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const dir = env('STATE_DIR');
const prefix = env('PREFIX');
const examples = {
  nexmark: () => nexmarkJob(env('JOB_ID'), nexmarkTopics(prefix)),
  clickstream: () =>
    clickstreamJob(env('JOB_ID'), { clicks: `${prefix}.clicks`, sessions: `${prefix}.sessions` }),
};
const make = examples[env('EXAMPLE') as keyof typeof examples];
if (!make) throw new Error(`EXAMPLE must be one of ${Object.keys(examples).join(', ')}`);
const job = await runKafkaJob(make(), {
  connection: { brokers: env('KAFKA_BROKERS').split(',') },
  storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
  ...(process.env.BACKEND === 'level' ? { backend: levelBackend(join(dir, 'level')) } : {}),
  checkpoints: { intervalMs: Number(process.env.CHECKPOINT_MS ?? 100) },
  restart: { kind: 'exponential-backoff', initialDelayMs: 100, maxDelayMs: 2000, multiplier: 2 },
  consumer: { sessionTimeoutMs: 2000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 5000 },
  listener: {
    restored: (r) => console.log(`restored ${r.taskId} ${r.checkpointId ?? '-'}`),
    checkpointCompleted: (c) => console.log(`checkpoint ${c.taskId} ${c.checkpointId}`),
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
