import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Kafka } from '../internal/kafkajs.ts';
import { FakeKafka } from './internal/fake-kafka.ts';
import { KafkaSink } from './kafka-sink.ts';

test('a record timestamp that Kafka cannot carry is refused as a record error, naming the sink and the value', async () => {
  const sink = new KafkaSink<{ ts: number }>({
    topic: 'out',
    encode: (v) => ({ value: 'x', timestamp: v.ts }),
  });
  sink.bind(new FakeKafka() as unknown as Kafka);
  const w = sink.createWriter({ jobId: 'j', partition: 0, partitions: 1, taskId: 's0-0', attempt: 'a1' });
  for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60])
    assert.throws(
      () => w.write({ ts: bad }, 7),
      (e: unknown) =>
        e instanceof Error &&
        e.constructor === Error &&
        /Kafka sink 'kafka-sink-out': a record's timestamp must be integer milliseconds since the epoch; got/.test(
          e.message,
        ),
      String(bad),
    );
  // Taken: an ordinary timestamp, and -1 (Kafka's "no timestamp", as old-format inputs carry).
  w.write({ ts: 1_765_000_000_000 }, 7);
  w.write({ ts: -1 }, 7);
  await w.abort();
});
