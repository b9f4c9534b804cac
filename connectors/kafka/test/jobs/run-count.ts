/**
 * The count job as a process, for crash tests: reads its settings from the environment, runs until
 * SIGTERM (then stops its tasks and exits 0), prints `ready` once its first tasks run and
 * `checkpoint <task> <id>` for each completed checkpoint.
 *
 *   KAFKA_BROKERS, JOB_ID, INPUT, OUTPUT, STATE_DIR, CHECKPOINT_MS (default 100), GROUP_INSTANCE_ID,
 *   SESSION_TIMEOUT_MS
 */
import { join } from 'node:path';
import type { FaultInjector } from '../../../../framework/index.ts';
import { checkpointStorage, countJob } from './count-job.ts';
import { env, runJobProcess } from './job-process.ts';

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

/** GROUP_INSTANCE_ID: join as that static member; SESSION_TIMEOUT_MS: the group's session and rebalance timeouts. */
const instanceId = process.env.GROUP_INSTANCE_ID;
const sessionMs = process.env.SESSION_TIMEOUT_MS;
const consumer = {
  ...(sessionMs === undefined
    ? {}
    : { sessionTimeoutMs: Number(sessionMs), rebalanceTimeoutMs: Number(sessionMs) }),
  ...(instanceId === undefined ? {} : { groupInstanceId: instanceId }),
};

await runJobProcess(countJob({ jobId: env('JOB_ID'), input: env('INPUT'), output: env('OUTPUT') }), {
  storage: checkpointStorage(join(env('STATE_DIR'), 'shared')),
  ...(faults ? { faults } : {}),
  consumer,
});
