/**
 * Done-when (c) of issue 8: a job rescaled 4 -> 8 -> 3 partitions through savepoints ends with the
 * state and output of an unscaled run; a savepoint moves heap -> level -> heap unchanged.
 *
 * Kafka only adds partitions. So 4 -> 8 is the real thing (the input topic gets 8 partitions, the
 * savepoint is re-sharded, new records of a key may now land in another partition, and the state
 * followed the key there), and 8 -> 3 moves the job to a new topic of 3 partitions that holds the
 * rest of the input (`--topic old=new`). Each phase's input is consumed completely before its
 * savepoint (the documented precondition: otherwise a record of a moved key still waiting in its
 * old partition would reach a task that no longer owns the key).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/savepoint-job.ts';
import { readCommitted } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { cli, expectedState, produce, savepointState, startJob } from '../support/savepoint-helpers.ts';

const PHASE = [3000, 3000, 3000];
const TOTAL = PHASE.reduce((a, b) => a + b, 0);

describe('savepoint rescale (real broker)', () => {
  let dir: string;
  let admin: Admin;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sp-rescale-'));
    admin = kafkaClient('sp-admin').admin();
    await admin.connect();
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  const envOf = (jobId: string, input: string, output: string, backend = 'level') => ({
    SP_JOB_ID: jobId,
    SP_INPUT: input,
    SP_OUTPUT: output,
    KSTATE_BROKERS: brokersFromEnv().join(','),
    KSTATE_BACKEND: backend,
    KSTATE_STATE_DIR: join(dir, 'state', jobId, backend),
    KSTATE_CHECKPOINT_DIR: join(dir, 'checkpoints'),
    KSTATE_CHECKPOINT_INTERVAL_MS: '500',
    KSTATE_HTTP_PORT: '0',
    KSTATE_SHUTDOWN_TIMEOUT_MS: '20000',
  });

  /** Run until `outputs` committed records are on `output`, then stop with a savepoint. */
  async function phase(env: Record<string, string>, outputs: number, savepoint: string, from?: string) {
    const job = startJob(env, [
      '--savepoint-on-stop',
      savepoint,
      ...(from ? ['--from-savepoint', from] : []),
    ]);
    try {
      const got = await readCommitted<Out>(env.SP_OUTPUT!, outputs, 90_000);
      assert.equal(
        got.length,
        outputs,
        `committed output after ${savepoint}\n${job.out.slice(-20).join('\n')}`,
      );
    } finally {
      assert.equal(await job.stop(), 0, job.out.slice(-20).join('\n'));
    }
    assert.ok(
      job.out.some((l) => l.includes('"msg":"savepoint taken"')),
      job.out.join('\n'),
    );
  }

  test('(c) 4 -> 8 -> 3 through savepoints equals an unscaled run; heap -> level -> heap unchanged', async () => {
    const n = names('sp rescale');
    const [in4, in3, outRef, out] = [n.topic('in4'), n.topic('in3'), n.topic('out-ref'), n.topic('out')];
    const ref4 = n.topic('ref4');
    await admin.createTopics({
      topics: [
        { topic: in4, numPartitions: 4 },
        { topic: ref4, numPartitions: 4 },
        { topic: in3, numPartitions: 3 },
        { topic: outRef, numPartitions: 2 },
        { topic: out, numPartitions: 2 },
      ],
      waitForLeaders: true,
    });
    const job = n.group('job');
    const refJob = n.group('ref');

    // The unscaled run: 4 partitions throughout, all input.
    await produce(ref4, 0, TOTAL);
    const t0 = Date.now();
    await phase(envOf(refJob, ref4, outRef), TOTAL, 'final');
    const refMs = Date.now() - t0;

    // Phase 1 on 4 partitions.
    const env = envOf(job, in4, out);
    await produce(in4, 0, PHASE[0]!);
    await phase(env, PHASE[0]!, 'p1');

    // The brokers are checked: 8 does not match the topic's 4 partitions yet.
    const early = await cli(['savepoint', 'rescale', job, 'p1', '--to', '8', '--as', 'p1-8'], env);
    assert.equal(early.code, 65, early.stderr);
    assert.match(early.stderr, new RegExp(`topic ${in4} has 4 partitions, but stage input would have 8`));
    await admin.createPartitions({ topicPartitions: [{ topic: in4, count: 8 }] });
    const wrong = await cli(['savepoint', 'rescale', job, 'p1', '--to', '5', '--as', 'p1-5'], env);
    assert.equal(wrong.code, 65);
    assert.match(wrong.stderr, /has 8 partitions, but stage input would have 5/);
    const missing = await cli(['savepoint', 'rescale', job, 'nope', '--to', '8', '--as', 'x'], env);
    assert.equal(missing.code, 69);
    assert.match(missing.stderr, /has no savepoint 'nope'/);
    const to8 = await cli(['savepoint', 'rescale', job, 'p1', '--to', '8', '--as', 'p1-8'], env);
    assert.equal(to8.code, 0, to8.stderr);
    const r8 = JSON.parse(to8.stdout) as {
      stages: { from: number; to: number }[];
      tasks: string[];
      checked: boolean;
    };
    assert.deepEqual([r8.stages[0]!.from, r8.stages[0]!.to, r8.tasks.length, r8.checked], [4, 8, 8, true]);

    // Phase 2 on 8 partitions: new records of a key may land in a partition other than before.
    await produce(in4, PHASE[0]!, PHASE[1]!);
    await phase(env, PHASE[0]! + PHASE[1]!, 'p2', 'p1-8');
    const p2 = await savepointState(join(dir, 'checkpoints'), job, 'p2');
    assert.equal(p2.partitions, 8);

    // 8 -> 3: Kafka cannot take partitions away, so the job moves to a topic of 3 partitions.
    await produce(in3, PHASE[0]! + PHASE[1]!, PHASE[2]!);
    const to3 = await cli(
      ['savepoint', 'rescale', job, 'p2', '--to', '3', '--as', 'p2-3', '--topic', `${in4}=${in3}`],
      env,
    );
    assert.equal(to3.code, 0, to3.stderr);
    await phase(envOf(job, in3, out), TOTAL, 'final', 'p2-3');

    // Final state: equal to the unscaled run's, key by key, and to a recomputation from the input.
    const ref = await savepointState(join(dir, 'checkpoints'), refJob, 'final');
    const fin = await savepointState(join(dir, 'checkpoints'), job, 'final');
    const expected = expectedState(TOTAL);
    assert.equal(fin.partitions, 3);
    assert.equal(fin.state.size, expected.size);
    for (const [k, e] of expected) {
      assert.deepEqual(fin.state.get(k), e, k);
      assert.deepEqual(ref.state.get(k), e, k);
    }
    // Committed output: the same records as the unscaled run (one per input record, none repeated).
    const outScaled = (await readCommitted<Out>(out, TOTAL, 10_000)).map((o) => JSON.stringify(o)).sort();
    const outRefAll = (await readCommitted<Out>(outRef, TOTAL, 10_000)).map((o) => JSON.stringify(o)).sort();
    assert.equal(outScaled.length, TOTAL);
    assert.deepEqual(outScaled, outRefAll);
    console.log(
      `# rescale 4 -> 8 -> 3: ${TOTAL} records, ${expected.size} keys, reference run ${refMs} ms; final state and ${outScaled.length} committed outputs equal the unscaled run`,
    );

    // heap -> level -> heap: restore the final (level) savepoint into heap, that into level, and back.
    const hops: [string, string, string][] = [
      ['heap', 'final', 'h1'],
      ['level', 'h1', 'l1'],
      ['heap', 'l1', 'h2'],
    ];
    for (const [backend, from, as] of hops) {
      const j = startJob(envOf(job, in3, out, backend), [
        '--from-savepoint',
        from,
        '--savepoint-on-stop',
        as,
      ]);
      await j.lines(/"msg":"task restored"/, 3);
      assert.equal(await j.stop(), 0, j.out.join('\n'));
    }
    const states = await Promise.all(
      ['h1', 'l1', 'h2'].map((s) => savepointState(join(dir, 'checkpoints'), job, s)),
    );
    for (const s of states) {
      assert.deepEqual(s.state, fin.state);
      assert.deepEqual(s.bytes, fin.bytes, 'every entry byte for byte');
      assert.equal(s.seenElements, fin.seenElements);
    }
    assert.ok(fin.bytes.size >= 3 * expected.size);
    console.log(`# heap -> level -> heap: ${fin.bytes.size} keyed entries unchanged`);
  });
});
