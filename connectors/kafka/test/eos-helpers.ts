import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { brokersFromEnv, kafkaClient } from './kafka.ts';

const run = promisify(execFile);

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
 * The committed records of `topic`, read with kcat (not kafkajs, so a client bug cannot hide itself)
 * in read_committed mode, polling until at least `expected` arrived or `ms` passed.
 */
export async function readCommitted<T>(topic: string, expected: number, ms: number): Promise<T[]> {
  const deadline = Date.now() + ms;
  let values: T[] = [];
  for (;;) {
    values = await kcatAll<T>(topic);
    if (values.length >= expected || Date.now() > deadline) return values;
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function kcatAll<T>(topic: string): Promise<T[]> {
  const { stdout } = await run(
    'kcat',
    [
      '-C',
      '-b',
      brokersFromEnv().join(','),
      '-t',
      topic,
      '-X',
      'isolation.level=read_committed',
      '-e',
      '-q',
      '-f',
      '%s\n',
    ],
    { maxBuffer: 512 * 1024 * 1024 },
  );
  return stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as T);
}

/**
 * Every input n in [0, total) has exactly one output, and per key the counts run 1..c and the sums
 * equal the sums of the inputs in order: the state was neither lost nor applied twice.
 */
export function verifyCounts(
  out: readonly { k: string; n: number; count: number; sum: number }[],
  total: number,
): void {
  const byN = new Map<number, { k: string; count: number; sum: number }>();
  for (const o of out) {
    assert.ok(!byN.has(o.n), `input ${o.n} has more than one committed output`);
    byN.set(o.n, o);
  }
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
