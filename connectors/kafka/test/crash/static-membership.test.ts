/**
 * Static membership (KIP-345, connectors/kafka/internal/static-membership.ts): an instance killed with
 * SIGKILL and started again with the same group.instance.id gets its partitions back at once, instead
 * of waiting for the group to drop the dead member (the session timeout, here 30 s, and the rebalance
 * timeout, the same); output stays exactly once and in order per key. Two live instances with one id:
 * the older is fenced and fails with an error that names the id (it does not sit silently idle).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/count-job.ts';
import { startJobProcess } from '../support/crash-helpers.ts';
import { countSequences, produceInput, verifyCountsInOrder } from '../support/eos-helpers.ts';
import { kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { describeSequences, readCommittedRecords } from '../support/sequence-check.ts';

/** The group's session and rebalance timeouts: a dynamic member's replacement waits about this long. */
const SESSION_MS = 30_000;
const TOTAL = 20_000;

describe('static group membership', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('static-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'static-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  async function setUp(label: string) {
    const n = names(label);
    const input = n.topic('in');
    const output = n.topic('out');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 4 },
        { topic: output, numPartitions: 4 },
      ],
      waitForLeaders: true,
    });
    return {
      input,
      output,
      env: {
        JOB_ID: n.group('job'),
        INPUT: input,
        OUTPUT: output,
        STATE_DIR: join(dir, label),
        CHECKPOINT_MS: '100',
        SESSION_TIMEOUT_MS: String(SESSION_MS),
        GROUP_INSTANCE_ID: `${n.stem}-instance-1`,
      },
    };
  }

  test('killed with SIGKILL and started again with its id, an instance has its partitions back at once; output exactly once, in order', async () => {
    const { input, output, env } = await setUp('static-kill');
    await produceInput(input, TOTAL / 2, 97, 0);
    const first = startJobProcess(env);
    await first.waitFor(/^checkpoint /, 60_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const restartedAt = performance.now();
    const second = startJobProcess(env);
    try {
      await second.waitFor(/^started /, 2 * SESSION_MS);
      const waited = performance.now() - restartedAt;
      assert.ok(
        waited < SESSION_MS / 2,
        `the restarted instance got its partitions ${Math.round(waited)} ms after its start: it waited for the dead member's session`,
      );
      await produceInput(input, TOTAL / 2, 97, TOTAL / 2);
      const out = await readCommittedRecords<Out>(output, TOTAL, 120_000);
      verifyCountsInOrder(out, TOTAL);
      console.log(
        `static membership: tasks started ${Math.round(waited)} ms after the restart (session ${SESSION_MS} ms); ${describeSequences(countSequences(out))}`,
      );
    } finally {
      second.child.kill('SIGTERM');
      assert.equal(
        await second.exited,
        0,
        `the second run did not stop cleanly:\n${second.lines.slice(-20).join('\n')}`,
      );
    }
  });

  test('a second live instance with the same id fences the first, which fails naming the id; output exactly once', async () => {
    const { input, output, env } = await setUp('static-twin');
    await produceInput(input, TOTAL / 2, 97, 0);
    const first = startJobProcess(env);
    await first.waitFor(/^checkpoint /, 60_000);
    const second = startJobProcess(env);
    try {
      const code = await Promise.race([
        first.exited,
        new Promise<'running'>((r) => setTimeout(() => r('running'), 4 * SESSION_MS).unref()),
      ]);
      assert.equal(code, 1, `the fenced instance did not fail:\n${first.lines.slice(-20).join('\n')}`);
      assert.ok(
        first.lines.some((l) => /another live instance joined with group\.instance\.id/.test(l)),
        `the failure does not name the instance id:\n${first.lines.slice(-20).join('\n')}`,
      );
      await produceInput(input, TOTAL / 2, 97, TOTAL / 2);
      const out = await readCommittedRecords<Out>(output, TOTAL, 120_000);
      verifyCountsInOrder(out, TOTAL);
    } finally {
      first.child.kill('SIGKILL');
      second.child.kill('SIGTERM');
      assert.equal(
        await second.exited,
        0,
        `the second run did not stop cleanly:\n${second.lines.slice(-20).join('\n')}`,
      );
    }
  });
  test('two static members: one killed with SIGKILL and started again has its tasks back at once; the other keeps its own throughout; output exactly once, in order', async () => {
    const { input, output, env } = await setUp('static-pair');
    const envA = { ...env, GROUP_INSTANCE_ID: `${env.GROUP_INSTANCE_ID}-a` };
    const envB = { ...env, GROUP_INSTANCE_ID: `${env.GROUP_INSTANCE_ID}-b` };
    await produceInput(input, TOTAL / 2, 97, 0);
    const a = startJobProcess(envA);
    let b = startJobProcess(envB);
    try {
      await a.waitFor(/^checkpoint /, 60_000);
      // The group settles with two tasks in each member: b started two, a holds the other two.
      const owned = (p: typeof a) => {
        const live = new Set<string>();
        for (const l of p.lines) {
          const m = /^(started|stopped) (\S+)/.exec(l);
          if (m?.[1] === 'started') live.add(m[2]!);
          else if (m) live.delete(m[2]!);
        }
        return live;
      };
      const settled = async () => {
        for (const end = Date.now() + 2 * SESSION_MS; Date.now() < end; ) {
          if (owned(a).size === 2 && owned(b).size === 2) return;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.fail(
          `the group did not settle at 2 + 2 tasks:\na: ${a.lines.slice(-10).join('\n')}\nb: ${b.lines.slice(-10).join('\n')}`,
        );
      };
      await settled();
      const aTasks = [...owned(a)].sort();
      const aLinesBefore = a.lines.length;
      b.child.kill('SIGKILL');
      await b.exited;
      const restartedAt = performance.now();
      b = startJobProcess(envB);
      await b.waitFor(/^started /, 2 * SESSION_MS);
      await settled();
      const waited = performance.now() - restartedAt;
      assert.ok(
        waited < SESSION_MS / 2,
        `b's tasks started ${Math.round(waited)} ms after its restart: it waited for its dead member's session`,
      );
      // None of a's tasks stopped or started while b was gone and came back (with or without ids: the
      // assignor keeps a member's partitions; the ids spare b the wait for its dead member's session).
      const aMoves = a.lines.slice(aLinesBefore).filter((l) => /^(started|stopped) /.test(l));
      assert.deepEqual(aMoves, [], 'the surviving static member had its tasks revoked or moved');
      assert.deepEqual([...owned(a)].sort(), aTasks);
      await produceInput(input, TOTAL / 2, 97, TOTAL / 2);
      const out = await readCommittedRecords<Out>(output, TOTAL, 120_000);
      verifyCountsInOrder(out, TOTAL);
      console.log(
        `two static members: b's tasks back ${Math.round(waited)} ms after its restart, a's ${aTasks.length} tasks untouched; ${describeSequences(countSequences(out))}`,
      );
    } finally {
      for (const p of [a, b]) p.child.kill('SIGTERM');
      for (const p of [a, b])
        assert.equal(await p.exited, 0, `a run did not stop cleanly:\n${p.lines.slice(-20).join('\n')}`);
    }
  });
});
