/**
 * What the Kafka benchmarks share around their loops: the input records (keys `k<i>`, JSON values
 * `{k, n, pad}` of about `valueBytes` bytes), topics created and led before use, and the CPU time of a
 * process from /proc. Used by scripts/bench/kafka-throughput.ts and scripts/bench/kafka-peers.ts.
 */
import { readFileSync } from 'node:fs';
import type { createKafka } from '../../connectors/kafka/index.ts';

type Kafka = ReturnType<typeof createKafka>;
type Admin = ReturnType<Kafka['admin']>;

/** Input record n's value: `{k, n, pad}` padded with 'x' to about `valueBytes` bytes of JSON. */
export function inputValue(k: string, n: number, valueBytes: number): string {
  const base = JSON.stringify({ k, n, pad: '' });
  return JSON.stringify({ k, n, pad: 'x'.repeat(Math.max(0, valueBytes - base.length)) });
}

/** Create topics and wait until every partition has a leader (retrying what a busy broker says meanwhile). */
export async function createTopics(
  admin: Admin,
  topics: readonly string[],
  partitions: number,
): Promise<void> {
  await admin.createTopics({
    topics: topics.map((topic) => ({ topic, numPartitions: partitions })),
    waitForLeaders: false,
  });
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      const meta = await admin.fetchTopicMetadata({ topics: [...topics] });
      if (
        meta.topics.every(
          (t) => t.partitions.length === partitions && t.partitions.every((p) => p.leader >= 0),
        )
      )
        return;
    } catch (e) {
      if (performance.now() > deadline) throw e;
    }
    if (performance.now() > deadline)
      throw new Error(`topics ${topics.join(', ')} have no leaders after 30 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * `records` records n = 0..records-1, key `k<n % keys>` (partitioned by key, murmur2), in chunks of
 * 2000 sent one after the other (concurrent sends on one idempotent kafkajs producer are not safe to
 * rely on).
 */
export async function produceInput(
  kafka: Kafka,
  topic: string,
  o: { readonly records: number; readonly keys: number; readonly valueBytes: number },
): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const chunk = 2000;
    for (let i = 0; i < o.records; i += chunk) {
      const messages = [];
      for (let n = i; n < Math.min(o.records, i + chunk); n++) {
        const k = `k${n % o.keys}`;
        messages.push({ key: k, value: inputValue(k, n, o.valueBytes) });
      }
      await producer.send({ topic, messages });
    }
  } finally {
    await producer.disconnect();
  }
}

const TICKS_PER_SECOND = 100;

/** CPU time (user + system, all threads) of process `pid` in ms, from /proc; undefined when it is gone. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the command).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}
