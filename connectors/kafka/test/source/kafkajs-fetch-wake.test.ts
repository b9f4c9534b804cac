/**
 * A partition resumed while kafkajs's consumer sleeps (every partition it fetches was paused: the
 * hub pauses a partition whose task's channel is full) is fetched at once, not after the rest of the
 * consumer's idle sleep of `maxWaitTimeInMs` (connectors/kafka/internal/install-fetch-wake.ts). With
 * a 20 s wait, upstream's sleep would hold the second record for about 20 s.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fetchWakeInstalled, idleFetchSleeps } from '../../internal/install-fetch-wake.ts';
import { eventually, kafkaClient, quickConsumer, withTimeout } from '../support/kafka.ts';
import { uniqueName } from '../support/names.ts';

const IDLE_WAIT_MS = 20_000;

test('a partition resumed during the consumer idle sleep is fetched without waiting for the sleep to end', async () => {
  assert.ok(fetchWakeInstalled(), 'kafkajs was loaded before the fetch wake-up was installed');
  const kafka = kafkaClient('fetch-wake');
  const topic = uniqueName('fetch-wake');
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const consumer = kafka.consumer(
    quickConsumer(uniqueName('fetch-wake-group'), { maxWaitTimeInMs: IDLE_WAIT_MS }),
  );
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await producer.connect();
    await producer.send({ topic, messages: [{ value: 'first' }] });
    const seen: { value: string; at: number }[] = [];
    let firstArrived!: () => void;
    const first = new Promise<void>((r) => (firstArrived = r));
    let secondArrived!: () => void;
    const second = new Promise<void>((r) => (secondArrived = r));
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) seen.push({ value: String(m.value), at: performance.now() });
        if (seen.length === 1) {
          // Paused as the hub pauses a partition whose channel is full.
          consumer.pause([{ topic, partitions: [0] }]);
          firstArrived();
        }
        if (seen.length >= 2) secondArrived();
      },
    });
    await withTimeout(first, 60_000, () => 'the first record did not arrive');
    // The fetch loop, with its only partition paused, goes to its idle sleep.
    await eventually(
      async () => (idleFetchSleeps() > 0 ? true : undefined),
      30_000,
      () => 'no idle fetch sleep began',
    );
    await producer.send({ topic, messages: [{ value: 'second' }] });
    const resumedAt = performance.now();
    consumer.resume([{ topic, partitions: [0] }]);
    await withTimeout(second, 2 * IDLE_WAIT_MS, () => `records seen: ${seen.map((s) => s.value).join(', ')}`);
    assert.deepEqual(
      seen.map((s) => s.value),
      ['first', 'second'],
    );
    const waited = seen[1]!.at - resumedAt;
    assert.ok(
      waited < IDLE_WAIT_MS / 2,
      `the second record came ${Math.round(waited)} ms after the resume: the consumer slept on`,
    );
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
  }
});
