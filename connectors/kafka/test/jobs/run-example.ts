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
import { env, runJobProcess } from './job-process.ts';

const dir = env('STATE_DIR');
const prefix = env('PREFIX');
const examples = {
  nexmark: () => nexmarkJob(env('JOB_ID'), nexmarkTopics(prefix)),
  clickstream: () =>
    clickstreamJob(env('JOB_ID'), { clicks: `${prefix}.clicks`, sessions: `${prefix}.sessions` }),
};
const make = examples[env('EXAMPLE') as keyof typeof examples];
if (!make) throw new Error(`EXAMPLE must be one of ${Object.keys(examples).join(', ')}`);
await runJobProcess(make(), {
  storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
  ...(process.env.BACKEND === 'level' ? { backend: levelBackend(join(dir, 'level')) } : {}),
});
