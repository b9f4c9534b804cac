/**
 * Issue 12 (5): commits that scale with the partitions. One instance of the count job over an input
 * topic of 256 partitions (256 tasks, each with its own transactions), checkpoints every 500 ms,
 * exactly-once sink, for about five minutes:
 *
 * 1. busy: records flow into every partition for BUSY_MS (up to RATE per second, never more than
 *    MAX_AHEAD records ahead of the job, so the catch-up stays short on a slow machine), while 256
 *    tasks commit a transaction every 500 ms each;
 * 2. idle for IDLE_MS once the job's committed offsets reach the end of the input: a task that
 *    processed nothing takes no checkpoint, so at most one commit per task follows the catch-up;
 * 3. a little more input (TAIL_PER_PARTITION records per partition), which every task commits.
 *
 * No task may fail at any time (`taskFailed`; the code before this work lost tasks at 128
 * partitions on CONCURRENT_TRANSACTIONS from sendOffsets), and the committed output read with kcat in
 * read_committed mode is exact: every input has one effect, and per key the counts run 1..n in
 * offset order.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runKafkaJob } from '../../index.ts';
import { checkpointStorage, countJob, type Out } from '../jobs/count-job.ts';
import { readCommitted, sendWhenReady, verifyCounts } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const PARTITIONS = 256;
const INTERVAL_MS = 500;
const BUSY_MS = Number(process.env.PARTITIONS_BUSY_MS ?? 150_000);
const IDLE_MS = Number(process.env.PARTITIONS_IDLE_MS ?? 60_000);
const RATE = 1_000;
const MAX_AHEAD = 20_000;
const TAIL_PER_PARTITION = 20;
/** Keys `k0`..: enough that murmur2 puts some in every one of the 256 partitions (checked below). */
const KEYS = 4096;
/** Generous: CI runs this on 2 cores shared with a broker, a schema registry and a browser. */
const CATCH_UP_MS = 150_000;

type Admin = ReturnType<ReturnType<typeof kafkaClient>['admin']>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `{k, n}` records for n in [from, to), keyed by k. */
function records(from: number, to: number): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  for (let n = from; n < to; n++) {
    const k = `k${n % KEYS}`;
    out.push({ key: k, value: JSON.stringify({ k, n }) });
  }
  return out;
}

/** Per key, in offset order (kcat prints each partition in offset order; a key has one partition). */
function outOfOrderKeys(out: readonly Out[]): string[] {
  const last = new Map<string, number>();
  const broken = new Set<string>();
  for (const o of out) {
    const c = last.get(o.k) ?? 0;
    if (o.count !== c + 1) broken.add(o.k);
    last.set(o.k, o.count);
  }
  return [...broken];
}

/**
 * Until the broker leads every partition of `topics`: right after createTopics (even with
 * waitForLeaders) a fresh broker may still answer NOT_LEADER_FOR_PARTITION for some of 256 partitions
 * for a few seconds. ListOffsets is answered by the leader only, and writes nothing.
 */
async function leading(admin: Admin, topics: readonly string[]): Promise<void> {
  for (const topic of topics) {
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.fetchTopicOffsets(topic);
        break;
      } catch (e) {
        if (attempt >= 60) throw e;
        await sleep(500);
      }
    }
  }
}

describe('many partitions: one instance, 256 tasks with their own transactions', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('partitions-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'partitions-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test(`${PARTITIONS} partitions, checkpoints every ${INTERVAL_MS} ms: busy, idle, busy again; no task fails and the committed output is exact`, async (t) => {
    const n = names('partitions');
    const input = n.topic('in');
    const output = n.topic('out');
    const jobId = n.group('job');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: PARTITIONS },
        { topic: output, numPartitions: PARTITIONS },
      ],
      waitForLeaders: true,
    });
    await leading(admin, [input, output]);

    const failures: string[] = [];
    const checkpointFailures: string[] = [];
    let failed: (e: Error) => void = () => {};
    const failure = new Promise<never>((_, reject) => {
      failed = reject;
    });
    failure.catch(() => {});
    let checkpoints = 0;
    let firstCommitMs: number | undefined;
    const started = new Set<string>();
    const restored = new Set<string>();
    const committed = new Set<string>();
    let stopped = 0;
    let produced = 0;
    const t0 = performance.now();
    let recordsIn = () => 0;
    /** Where the run is, for failure messages (and every 10 s on stderr with PARTITIONS_PROGRESS=1). */
    const progress = () =>
      `at ${Math.round((performance.now() - t0) / 1000)} s: ${started.size} tasks started, ${restored.size} restored, ${committed.size} with a committed checkpoint; ${checkpoints} checkpoints committed, ${checkpointFailures.length} failed; ${recordsIn()} of ${produced} records taken`;
    const progressTimer = process.env.PARTITIONS_PROGRESS
      ? setInterval(() => process.stderr.write(`partitions: ${progress()}\n`), 10_000)
      : undefined;
    const job = await runKafkaJob(countJob({ jobId, input, output }), {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, n.stem)),
      checkpoints: { intervalMs: INTERVAL_MS },
      listener: {
        taskStarted: (s) => started.add(s.taskId),
        restored: (r) => restored.add(r.taskId),
        taskStopped: () => {
          stopped++;
        },
        checkpointCompleted: (c) => {
          checkpoints++;
          committed.add(c.taskId);
          firstCommitMs ??= performance.now() - t0;
        },
        checkpointFailed: (f) =>
          checkpointFailures.push(
            `${f.taskId} #${f.checkpointId}: ${f.error instanceof Error ? f.error.message : String(f.error)}`,
          ),
        taskFailed: (f) => {
          const why = `${f.taskId}: ${f.error instanceof Error ? f.error.message : String(f.error)}`;
          failures.push(why);
          failed(new Error(`a task failed ${progress()}: ${why}`));
        },
      },
    });
    job.done.catch((e: unknown) => failed(e instanceof Error ? e : new Error(String(e))));
    recordsIn = () => job.tasks().reduce((s, task) => s + task.recordsIn, 0);

    /** Until `check` holds; rejects at once when a task fails, or after `ms` with `what()`. */
    async function until(check: () => Promise<boolean>, ms: number, what: () => string): Promise<void> {
      const deadline = performance.now() + ms;
      const poll = async () => {
        while (!(await check())) {
          if (performance.now() > deadline)
            throw new Error(`timed out after ${ms} ms: ${what()}; ${progress()}`);
          await sleep(250);
        }
      };
      await Promise.race([poll(), failure]);
    }

    /** The job's committed offsets (its checkpoints' sendOffsets) against the input's end offsets. */
    let behind = 0;
    async function caughtUp(): Promise<boolean> {
      const ends = await admin.fetchTopicOffsets(input);
      const [committed] = await admin.fetchOffsets({ groupId: jobId, topics: [input] });
      const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
      behind = 0;
      for (const e of ends) behind += Math.max(0, Number(e.high) - Math.max(0, at.get(e.partition) ?? 0));
      return behind === 0;
    }

    const producer = kafkaClient('partitions-input').producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      // 1. Busy: records into every partition, paced at RATE per second, at most MAX_AHEAD ahead.
      const busyStart = performance.now();
      while (performance.now() - busyStart < BUSY_MS) {
        const due = Math.floor(((performance.now() - busyStart) / 1000) * RATE);
        if (due - produced >= 500 && produced - recordsIn() < MAX_AHEAD) {
          const to = produced + 500;
          await sendWhenReady(() =>
            Promise.race([producer.send({ topic: input, messages: records(produced, to) }), failure]),
          );
          produced = to;
        } else {
          await Promise.race([sleep(100), failure]);
        }
      }
      const busyMs = performance.now() - busyStart;
      const ends = await admin.fetchTopicOffsets(input);
      const empty = ends.filter((e) => Number(e.high) === 0).map((e) => e.partition);
      assert.deepEqual(empty, [], 'every input partition got records');
      await until(
        caughtUp,
        CATCH_UP_MS,
        () => `${behind} input records not committed yet (${recordsIn()}/${produced} taken)`,
      );
      const caughtUpMs = performance.now() - busyStart - busyMs;

      const busyCheckpoints = checkpoints;

      // 2. Idle: no input; at most the one checkpoint per task that may have been under way (its
      // commit reached the broker, its completion not yet the listener).
      const idleFrom = checkpoints;
      await Promise.race([sleep(IDLE_MS), failure]);
      const idleCheckpoints = checkpoints - idleFrom;
      assert.ok(
        idleCheckpoints <= PARTITIONS,
        `${idleCheckpoints} checkpoints committed in ${IDLE_MS} ms without input (at most one per task expected)`,
      );

      // 3. A little more input into every partition, committed by every task.
      const tail = PARTITIONS * TAIL_PER_PARTITION;
      await sendWhenReady(() =>
        producer.send({ topic: input, messages: records(produced, produced + tail) }),
      );
      produced += tail;
      await until(caughtUp, CATCH_UP_MS, () => `${behind} input records of the tail not committed yet`);

      const report = job.stop();
      const out = await readCommitted<Out>(output, produced, 60_000);
      await report;
      assert.deepEqual(failures, [], 'no task failed');
      verifyCounts(out, produced);
      const broken = outOfOrderKeys(out);
      assert.deepEqual(
        broken.slice(0, 10),
        [],
        `${broken.length} keys whose counts are not 1..n in offset order`,
      );
      assert.equal(started.size, PARTITIONS, 'one task per partition ran');
      t.diagnostic(
        `${PARTITIONS} partitions, ${produced} records (${Math.round(produced / (busyMs / 1000))}/s over ${Math.round(busyMs / 1000)} s busy, caught up ${Math.round(caughtUpMs / 1000)} s later, ${tail} more after ${IDLE_MS / 1000} s idle); ` +
          `first commit after ${Math.round(firstCommitMs ?? -1)} ms; checkpoints committed: ${busyCheckpoints} until caught up, ${idleCheckpoints} in ${IDLE_MS / 1000} s idle, ${checkpoints} in all; ` +
          `checkpoint failures ${checkpointFailures.length}${checkpointFailures.length > 0 ? ` (first: ${checkpointFailures[0]})` : ''}; task failures ${failures.length}; tasks stopped ${stopped}; ${Math.round((performance.now() - t0) / 1000)} s in all`,
      );
    } finally {
      clearInterval(progressTimer);
      await producer.disconnect().catch(() => {});
      await job.stop().catch(() => {});
    }
  });
});
