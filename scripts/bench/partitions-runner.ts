/**
 * The job process of scripts/bench/partitions.ts and of scripts/bench/kafka-peers.ts (the kstate
 * engine): the count job (connectors/kafka/test/jobs/count-job.ts: exactly-once) through
 * `runKafkaJob` with the framework's defaults (heap state, filesystem checkpoint storage under
 * STATE_DIR) except the checkpoint interval, alone in its process so that its CPU time and its
 * connections can be measured apart from the benchmark's.
 *
 *   KAFKA_BROKERS, JOB_ID, INPUT, OUTPUT, STATE_DIR, CHECKPOINT_MS (default 1000), TASKS (the
 *   input's partition count)
 *
 * Prints on stdout, each with the wall clock (Date.now()) of the event: `first-record <ms>` once a
 * task took its first record; `first-commit <ms>` at the first completed checkpoint; `all-committed
 * <ms>` once each of the TASKS tasks completed one; `checkpoints <n> <ms>` (completed so far) on
 * SIGUSR2 (asked for, so that nothing wakes the idle process it measures); `failed <ms> <task> <why>`
 * for each task failure; `job-failed <ms> <why>` when the restart strategy gives up (exit 1).
 * SIGTERM stops the job and exits 0.
 */
import { join } from 'node:path';
import { runKafkaJob } from '../../connectors/kafka/index.ts';
import { checkpointStorage, countJob } from '../../connectors/kafka/test/jobs/count-job.ts';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ');
const tasks = Number(process.env.TASKS ?? 0);
const committed = new Set<string>();
let checkpoints = 0;

const job = await runKafkaJob(
  countJob({ jobId: env('JOB_ID'), input: env('INPUT'), output: env('OUTPUT') }),
  {
    connection: { brokers: env('KAFKA_BROKERS').split(',') },
    storage: checkpointStorage(join(env('STATE_DIR'), 'shared')),
    checkpoints: { intervalMs: Number(process.env.CHECKPOINT_MS ?? 1000) },
    listener: {
      checkpointCompleted: (c) => {
        if (checkpoints++ === 0) say(`first-commit ${Date.now()}`);
        if (committed.size < tasks) {
          committed.add(c.taskId);
          if (committed.size === tasks) say(`all-committed ${Date.now()}`);
        }
      },
      taskFailed: (f) => say(`failed ${Date.now()} ${f.taskId} ${oneLine(f.error)}`),
    },
  },
);

// Until the first record only: a timer left running would wake the idle process it measures.
const firstRecord = setInterval(() => {
  if (job.tasks().some((t) => t.recordsIn > 0)) {
    clearInterval(firstRecord);
    say(`first-record ${Date.now()}`);
  }
}, 20);
process.on('SIGUSR2', () => say(`checkpoints ${checkpoints} ${Date.now()}`));
process.on('SIGTERM', () => {
  clearInterval(firstRecord);
  void job.stop().then(() => process.exit(0));
});
job.done.catch((e: unknown) => {
  say(`job-failed ${Date.now()} ${oneLine(e)}`);
  process.exit(1);
});
