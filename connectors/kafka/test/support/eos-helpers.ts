import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { Out } from '../jobs/count-job.ts';
import { brokersFromEnv, kafkaClient } from './kafka.ts';
import {
  assertSequences,
  type Committed,
  checkRunningTotals,
  describeSequences,
  kcatRecords,
  readCommittedRecords,
  type SequenceReport,
} from './sequence-check.ts';

/** Produce `count` records `{k, n}` (n = 0..count-1) over `keys` keys; returns the count. */
export async function produceInput(topic: string, count: number, keys: number, start = 0): Promise<number> {
  const producer = kafkaClient('eos-input').producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = start; i < start + count; i += 1000) {
      const messages: { key: string; value: string }[] = [];
      for (let j = i; j < Math.min(start + count, i + 1000); j++) {
        const k = `k${j % keys}`;
        messages.push({ key: k, value: JSON.stringify({ k, n: j }) });
      }
      await sendWhenReady(() => producer.send({ topic, messages }));
    }
  } finally {
    await producer.disconnect();
  }
  return count;
}

/**
 * The committed values of `topic`, read with kcat (not kafkajs, so a client bug cannot hide itself)
 * in read_committed mode, polling until at least `expected` arrived or `ms` passed. With offsets:
 * `readCommittedRecords` (sequence-check.ts).
 */
export async function readCommitted<T>(topic: string, expected: number, ms: number): Promise<T[]> {
  return (await readCommittedRecords<T>(topic, expected, ms)).map((r) => r.value);
}

/** Every committed value of `topic` now (kcat, read_committed), in offset order per partition. */
export async function kcatAll<T>(topic: string): Promise<T[]> {
  return (await kcatRecords<T>(topic)).map((r) => r.value);
}

/**
 * Every input n in [0, total) has exactly one output, and per key the counts run 1..c and the sums
 * equal the sums of the inputs in input order (n): the state was neither lost nor applied twice.
 * That is a check of the set; the order a reader sees (offsets) is `countSequences`.
 */
export function verifyCounts(
  out: readonly { k: string; n: number; count: number; sum: number }[],
  total: number,
): void {
  const byN = new Map<number, { k: string; count: number; sum: number }>();
  const duplicated: number[] = [];
  for (const o of out) {
    if (byN.has(o.n)) duplicated.push(o.n);
    else byN.set(o.n, o);
  }
  assert.deepEqual(
    duplicated.slice(0, 20),
    [],
    `${duplicated.length} committed outputs duplicate another one (${new Set(duplicated).size} inputs)`,
  );
  const missing = [];
  for (let n = 0; n < total; n++) if (!byN.has(n)) missing.push(n);
  assert.deepEqual(missing.slice(0, 20), [], `${missing.length} inputs have no committed output`);
  assert.equal(out.length, total, 'more outputs than inputs');
  const perKey = new Map<string, { count: number; sum: number }>();
  for (let n = 0; n < total; n++) {
    const o = byN.get(n)!;
    const s = perKey.get(o.k) ?? { count: 0, sum: 0 };
    s.count++;
    s.sum += n;
    perKey.set(o.k, s);
    assert.equal(o.count, s.count, `input ${n} (key ${o.k}): count ${o.count}, recomputed ${s.count}`);
    assert.equal(o.sum, s.sum, `input ${n} (key ${o.k}): sum ${o.sum}, recomputed ${s.sum}`);
  }
}

/**
 * The count job's per-key order: per key `k`, in offset order, counts run 1..c, each sum adds the
 * record's `n`, and `n` rises (a key's inputs come from one input partition, in `n` order).
 */
export function countSequences(out: readonly Committed<Out>[]): SequenceReport {
  return checkRunningTotals(out, {
    what: 'per key, counts 1..c in offset order, running sums, inputs in order',
    key: (v) => v.k,
    count: (v) => v.count,
    sum: (v) => v.sum,
    addend: (v) => v.n,
    order: (v) => v.n,
  });
}

/** `verifyCounts` (every effect exactly once) and `countSequences` (in order, per key). */
export function verifyCountsInOrder(out: readonly Committed<Out>[], total: number): void {
  const order = countSequences(out);
  try {
    verifyCounts(
      out.map((r) => r.value),
      total,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}; ${describeSequences(order)}`, { cause: e });
  }
  assertSequences(order);
}

/**
 * `send`, retried while a topic created a moment ago is not yet known to every part of the broker
 * (UNKNOWN_TOPIC_OR_PARTITION right after createTopics).
 */
export async function sendWhenReady(send: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await send();
      return;
    } catch (e) {
      if ((e as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION' || attempt >= 40) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * kcat (librdkafka) as a producer into `topic`: idempotent, each line `key<TAB>value`, partitioned by
 * librdkafka's default partitioner (CRC32 of the key, not murmur2) unless `args` say otherwise (e.g.
 * `-p 0`). `write` waits while kcat's input is full; `end` resolves once kcat delivered everything
 * and exited 0.
 */
export function kcatProducer(
  topic: string,
  args: readonly string[] = [],
): { write(lines: string): Promise<void>; end(): Promise<void> } {
  const child = spawn(
    'kcat',
    [
      '-P',
      '-b',
      brokersFromEnv().join(','),
      '-t',
      topic,
      '-K',
      '\t',
      '-X',
      'enable.idempotence=true',
      ...args,
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    async write(lines) {
      if (!child.stdin.write(lines)) await new Promise((r) => child.stdin.once('drain', r));
    },
    async end() {
      child.stdin.end();
      const code = await exited;
      if (code !== 0) throw new Error(`kcat -P into ${topic} exited with ${code}: ${stderr}`);
    },
  };
}
