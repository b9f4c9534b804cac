/**
 * Input written by transactional producers that abort, on the real broker: the job's committed
 * output (read with kcat, read_committed) holds the effects of committed records only, and per key
 * the counts run 1..n in offset order.
 *
 * The first case is the kafkajs 2.2.4 defect (issue 12): a fetch that starts inside an aborted
 * transaction while an earlier-starting aborted transaction of another producer is listed too. It is
 * made deterministic by waiting, between the two aborts, until the job's committed position has
 * reached the first offset of the still-open transaction (the end of what read_committed may read).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type KafkaJobOptions, type KafkaRunningJob, runKafkaJob } from '../../index.ts';
import type { Admin, Producer } from '../../internal/kafkajs.ts';
import { checkpointStorage, countJob, type Out } from '../jobs/count-job.ts';
import { kcatAll } from '../support/eos-helpers.ts';
import { brokersFromEnv, eventually, kafkaClient } from '../support/kafka.ts';
import { names, type TestNames } from '../support/names.ts';

/** Per key, the committed counts in offset order are 1..n and the sums those of the inputs, in order. */
function checkSequences(out: readonly Out[], committedInputs: readonly { k: string; n: number }[]): void {
  const expected = new Map<string, number[]>();
  for (const i of committedInputs) expected.set(i.k, [...(expected.get(i.k) ?? []), i.n]);
  const seen = new Map<string, Out[]>();
  for (const o of out) seen.set(o.k, [...(seen.get(o.k) ?? []), o]);
  assert.deepEqual([...seen.keys()].sort(), [...expected.keys()].sort(), 'keys with output');
  for (const [k, ns] of expected) {
    const outs = seen.get(k)!;
    assert.deepEqual(
      outs.map((o) => o.n),
      ns,
      `key ${k}: the inputs behind the committed outputs, in offset order`,
    );
    let sum = 0;
    outs.forEach((o, i) => {
      sum += ns[i]!;
      assert.equal(o.count, i + 1, `key ${k}: count at position ${i}`);
      assert.equal(o.sum, sum, `key ${k}: sum at position ${i}`);
    });
  }
}

describe('input from transactional producers that abort', () => {
  let admin: Admin;
  let dir: string;
  const producers: Producer[] = [];
  before(async () => {
    admin = kafkaClient('aborted-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'aborted-'));
  });
  after(async () => {
    await Promise.allSettled(producers.map((p) => p.disconnect()));
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  async function topics(n: TestNames): Promise<{ input: string; output: string }> {
    const input = n.topic('in');
    const output = n.topic('out');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 1 },
        { topic: output, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    return { input, output };
  }

  async function transactional(n: TestNames, label: string): Promise<Producer> {
    const p = kafkaClient(`aborted-${label}`).producer({
      transactionalId: n.transactionalId(label),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    producers.push(p);
    await p.connect();
    return p;
  }

  /** Writes `values` in one transaction of `p`, left open; returns it and the first offset. */
  async function openTxn(p: Producer, topic: string, values: readonly { k: string; n: number }[]) {
    const txn = await p.transaction();
    const meta = await txn.send({
      topic,
      messages: values.map((v) => ({ key: v.k, value: JSON.stringify(v), partition: 0 })),
    });
    return { txn, firstOffset: BigInt(meta[0]!.baseOffset!) };
  }

  function inputs(from: number, count: number, keys: number) {
    return Array.from({ length: count }, (_, i) => ({ k: `k${(from + i) % keys}`, n: from + i }));
  }

  async function startJob(
    n: TestNames,
    t: { input: string; output: string },
    extra: Partial<KafkaJobOptions> = {},
  ): Promise<KafkaRunningJob> {
    return runKafkaJob(countJob({ jobId: n.group('job'), ...t }), {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, n.stem)),
      checkpoints: { intervalMs: 100 },
      ...extra,
    });
  }

  async function committedPosition(groupId: string, topic: string): Promise<bigint> {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const o = t?.partitions.find((p) => p.partition === 0)?.offset ?? '-1';
    return BigInt(o);
  }

  /** Waits until the job committed a position at or past `offset`. */
  async function positionReaches(groupId: string, topic: string, offset: bigint): Promise<void> {
    await eventually(
      async () => ((await committedPosition(groupId, topic)) >= offset ? true : undefined),
      90_000,
      () => `the job's committed position on ${topic} to reach ${offset}`,
    );
  }

  async function logEnd(topic: string): Promise<bigint> {
    const [o] = await admin.fetchTopicOffsets(topic);
    return BigInt(o!.high);
  }

  /** The committed output once the job's committed position reached the end of the input. */
  async function outputWhenDone(groupId: string, t: { input: string; output: string }): Promise<Out[]> {
    await positionReaches(groupId, t.input, await logEnd(t.input));
    return kcatAll<Out>(t.output);
  }

  test('a fetch starting inside an aborted transaction, with an earlier aborted one of another producer: only committed records count', async () => {
    const n = names('aborted interleaved');
    const t = await topics(n);
    const [p1, p2, p3] = [
      await transactional(n, 'p1'),
      await transactional(n, 'p2'),
      await transactional(n, 'p3'),
    ];
    const job = await startJob(n, t);
    try {
      const groupId = n.group('job');
      const a = await openTxn(p1, t.input, inputs(0, 5, 3));
      const b = await openTxn(p2, t.input, inputs(100, 5, 3));
      await a.txn.abort();
      // The job reads up to the last stable offset (b's first offset) and commits that position, so
      // its next fetch starts inside b, with a (begun earlier, its marker later) listed as aborted.
      await positionReaches(groupId, t.input, b.firstOffset);
      await b.txn.abort();
      const committed = inputs(200, 9, 3);
      const c = await openTxn(p3, t.input, committed);
      await c.txn.commit();
      const out = await outputWhenDone(groupId, t);
      checkSequences(out, committed);
    } finally {
      await job.stop();
    }
  });

  test('two aborted transactions of one producer, and committed ones between them, in one fetch', async () => {
    const n = names('aborted twice');
    const t = await topics(n);
    const [p1, p2] = [await transactional(n, 'p1'), await transactional(n, 'p2')];
    const committed: { k: string; n: number }[] = [];
    const a1 = await openTxn(p1, t.input, inputs(0, 4, 2));
    const c1 = await openTxn(p2, t.input, inputs(10, 4, 2));
    await a1.txn.abort();
    await c1.txn.commit();
    committed.push(...inputs(10, 4, 2));
    const a2 = await openTxn(p1, t.input, inputs(20, 4, 2));
    await a2.txn.abort();
    const c2 = await openTxn(p2, t.input, inputs(30, 4, 2));
    await c2.txn.commit();
    committed.push(...inputs(30, 4, 2));
    const job = await startJob(n, t);
    try {
      checkSequences(await outputWhenDone(n.group('job'), t), committed);
    } finally {
      await job.stop();
    }
  });

  test('an aborted transaction split across fetches (16 KiB per partition per fetch)', async () => {
    const n = names('aborted split');
    const t = await topics(n);
    const [p1, p2] = [await transactional(n, 'p1'), await transactional(n, 'p2')];
    const pad = 'x'.repeat(900);
    const big = (v: { k: string; n: number }) => ({ ...v, pad });
    // p1's transaction spans about 200 KiB in 20 produce calls, with p2's committed records between.
    const committed: { k: string; n: number }[] = [];
    const txn1 = await p1.transaction();
    const txn2 = await p2.transaction();
    for (let i = 0; i < 20; i++) {
      await txn1.send({
        topic: t.input,
        messages: inputs(1000 + i * 10, 10, 4).map((v) => ({
          key: v.k,
          value: JSON.stringify(big(v)),
          partition: 0,
        })),
      });
      const c = inputs(5000 + i * 2, 2, 4);
      await txn2.send({
        topic: t.input,
        messages: c.map((v) => ({ key: v.k, value: JSON.stringify(v), partition: 0 })),
      });
      committed.push(...c);
    }
    await txn2.commit();
    await txn1.abort();
    const after = inputs(9000, 6, 4);
    const c = await openTxn(p2, t.input, after);
    await c.txn.commit();
    committed.push(...after);
    const job = await startJob(n, t, { consumer: { maxBytesPerPartition: 16 * 1024 } });
    try {
      checkSequences(await outputWhenDone(n.group('job'), t), committed);
    } finally {
      await job.stop();
    }
  });
});
