/**
 * The transactional round trip the placeholder demo runs: one aborted and one committed transaction
 * into a fresh topic, then a read_committed consumer that must see exactly the committed records.
 */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, Partitioners } from '../../connectors/kafka/internal/kafkajs.ts';

export interface RoundTripResult {
  readonly topic: string;
  readonly committed: readonly string[];
  readonly aborted: readonly string[];
  readonly readCommitted: readonly string[];
  readonly ms: number;
}

export async function transactionalRoundTrip(
  brokers: string,
  say: (line: string) => void,
  timeoutMs = 30_000,
): Promise<RoundTripResult> {
  const started = performance.now();
  const suffix = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const topic = `kstate-demo-${suffix}`;
  const kafka = new Kafka({
    clientId: 'kstate-demo',
    brokers: brokers.split(','),
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  const producer = kafka.producer({
    transactionalId: `kstate-demo-${suffix}`,
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  const consumer = kafka.consumer({
    groupId: `kstate-demo-${suffix}`,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
  });
  const aborted = ['draft-1', 'draft-2'];
  const committed = ['hello', 'exactly', 'once'];
  let timer: NodeJS.Timeout | undefined;
  try {
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    say(`created topic ${topic}`);

    await producer.connect();
    let txn = await producer.transaction();
    await txn.send({ topic, messages: aborted.map((value) => ({ key: 'demo', value })) });
    await txn.abort();
    say(`aborted a transaction of ${aborted.length} records: ${aborted.join(', ')}`);
    txn = await producer.transaction();
    await txn.send({ topic, messages: committed.map((value) => ({ key: 'demo', value })) });
    await txn.commit();
    say(`committed a transaction of ${committed.length} records: ${committed.join(', ')}`);

    // The aborted records come first in the log, so reaching the last committed one means they were skipped.
    const readCommitted: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`read_committed consumer got ${readCommitted.length} records in ${timeoutMs} ms`)),
        timeoutMs,
      );
      void consumer
        .connect()
        .then(() => consumer.subscribe({ topic, fromBeginning: true }))
        .then(() =>
          consumer.run({
            eachMessage: async ({ message }) => {
              readCommitted.push(message.value?.toString() ?? '');
              if (readCommitted.length >= committed.length) resolve();
            },
          }),
        )
        .catch(reject);
    });
    await done;
    say(`a read_committed consumer read: ${readCommitted.join(', ')}`);
    if (JSON.stringify(readCommitted) !== JSON.stringify(committed)) {
      throw new Error(
        `read_committed saw ${JSON.stringify(readCommitted)}, expected ${JSON.stringify(committed)}`,
      );
    }
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    return { topic, committed, aborted, readCommitted, ms: Math.round(performance.now() - started) };
  } finally {
    clearTimeout(timer);
    await Promise.allSettled([consumer.disconnect(), producer.disconnect()]);
    await admin.disconnect();
  }
}
