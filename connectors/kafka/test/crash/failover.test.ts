import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/count-job.ts';
import { type JobProcess, startJobProcess, transactionStates } from '../support/crash-helpers.ts';
import { produceInput, verifyCountsInOrder } from '../support/eos-helpers.ts';
import { kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { kcatRecords, readCommittedRecords } from '../support/sequence-check.ts';

/**
 * (b) deterministic crash points, (c) failover between two instances, (d) a zombie instance: each
 * with the count job in child processes and the committed output read back with kcat.
 */
describe('exactly-once at deterministic crash points, failover and zombies', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('failover-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'failover-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(label: string, partitions = 4) {
    const n = names(label);
    const input = n.topic('in');
    const output = n.topic('out');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: partitions },
        { topic: output, numPartitions: partitions },
      ],
      waitForLeaders: true,
    });
    const env = { JOB_ID: n.group('job'), INPUT: input, OUTPUT: output, STATE_DIR: join(dir, n.stem) };
    return { input, output, env, jobId: env.JOB_ID };
  }

  async function stopClean(p: JobProcess): Promise<void> {
    p.child.kill('SIGTERM');
    assert.equal(await p.exited, 0, `a run did not stop cleanly:\n${p.lines.slice(-20).join('\n')}`);
  }

  for (const point of ['sink.flush', 'snapshot.write', 'checkpoint.after-commit'] as const) {
    test(`(b) a process killed at '${point}' restarts with every effect committed exactly once`, async () => {
      const s = await setup(`crash at ${point}`);
      await produceInput(s.input, 6000, 31);
      const crashing = startJobProcess({ ...s.env, CRASH_AT: `${point}:5` });
      await crashing.waitFor(/^crashing at /, 60_000);
      await crashing.exited;
      assert.equal(crashing.child.signalCode, 'SIGKILL');
      await produceInput(s.input, 4000, 31, 6000);
      const again = startJobProcess(s.env);
      try {
        verifyCountsInOrder(await readCommittedRecords<Out>(s.output, 10_000, 90_000), 10_000);
      } finally {
        await stopClean(again);
      }
    });
  }

  test('(c) two instances share the partitions; one is killed and the other takes over its tasks with their state', async () => {
    const s = await setup('failover');
    const a = startJobProcess(s.env);
    const b = startJobProcess(s.env);
    try {
      // Both own tasks once the group settled (2 of 4 partitions each).
      await a.waitFor(/^restored /, 30_000);
      await b.waitFor(/^restored /, 30_000);
      await produceInput(s.input, 8000, 53);
      await readCommittedRecords<Out>(s.output, 4000, 60_000);
      // What A owns once the group settled (A may have held all four before B joined).
      const owned = (p: JobProcess) => {
        const set = new Set<string>();
        for (const l of p.lines) {
          const [what, task] = l.split(' ');
          if (what === 'started' && task) set.add(task);
          if (what === 'stopped' && task) set.delete(task);
        }
        return set;
      };
      const deadline = Date.now() + 30_000;
      while (
        !(owned(a).size > 0 && owned(b).size > 0 && owned(a).size + owned(b).size === 4) &&
        Date.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 200));
      }
      const ownedByA = owned(a);
      assert.ok(
        ownedByA.size > 0 && ownedByA.size < 4,
        `instance A should own some partitions, owns ${[...ownedByA]}`,
      );
      a.child.kill('SIGKILL');
      await a.exited;
      await produceInput(s.input, 8000, 53, 8000);
      verifyCountsInOrder(await readCommittedRecords<Out>(s.output, 16_000, 90_000), 16_000);
      // B restored A's tasks from their committed checkpoints.
      for (const task of ownedByA) {
        assert.ok(
          b.lines.some((l) => l.startsWith(`restored ${task} `)),
          `instance B never restored ${task}:\n${b.lines.filter((l) => l.startsWith('restored')).join('\n')}`,
        );
      }
    } finally {
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
      await stopClean(b);
    }
  });

  test('(d) a zombie (SIGSTOP until its partitions moved, then SIGCONT) is fenced and writes nothing visible', async () => {
    const s = await setup('zombie', 2);
    const a = startJobProcess(s.env);
    await a.waitFor(/^checkpoint /, 30_000);
    await produceInput(s.input, 2000, 11);
    await readCommittedRecords<Out>(s.output, 2000, 60_000);
    // Freeze A in the middle of its work: records sent in an open transaction, not committed.
    await produceInput(s.input, 2000, 11, 2000);
    await new Promise((r) => setTimeout(r, 30));
    a.child.kill('SIGSTOP');
    const b = startJobProcess(s.env);
    try {
      // B gets every partition once A's session expired, restores, and finishes the input.
      await produceInput(s.input, 2000, 11, 4000);
      verifyCountsInOrder(await readCommittedRecords<Out>(s.output, 6000, 90_000), 6000);
      // A wakes up believing it still owns its tasks: whatever it tries to commit is fenced.
      a.child.kill('SIGCONT');
      await new Promise((r) => setTimeout(r, 4000));
      verifyCountsInOrder(await kcatRecords<Out>(s.output), 6000);
      const states = await transactionStates(`${s.jobId}.`);
      assert.ok(states.size > 0);
      const afterWake = a.lines.filter((l) => l.startsWith('failed '));
      console.log(
        `zombie: after SIGCONT instance A reported ${afterWake.length} task failures: ${afterWake.slice(0, 3).join(' | ')}`,
      );
    } finally {
      a.child.kill('SIGKILL');
      await a.exited;
      await stopClean(b);
    }
  });
});
