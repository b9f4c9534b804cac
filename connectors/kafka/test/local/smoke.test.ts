/**
 * Smoke tests of the broker the connectors stand on, with kafkajs 2.2.4 against KAFKA_BROKERS:
 * topics, produce/consume, a two-member consumer group, and the transactional round trip the
 * exactly-once design relies on (records + consumer offsets committed atomically, aborts invisible to
 * read_committed readers), cross-checked with kcat (librdkafka) so a kafkajs bug cannot hide itself.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  type Admin,
  type Consumer,
  type Kafka,
  Partitioners,
  type Producer,
} from '../../internal/kafkajs.ts';
import {
  brokersFromEnv,
  consumeAtLeast,
  eventually,
  kafkaClient,
  quickConsumer,
  type Received,
  withTimeout,
} from '../support/kafka.ts';
import { names } from '../support/names.ts';

const TEST_TIMEOUT_MS = 90_000;
const WAIT_MS = 30_000;
const run = promisify(execFile);

let kafka: Kafka;
let admin: Admin;
/** Everything a test connects is disconnected after it, pass or fail. */
const open: Array<{ disconnect(): Promise<void> }> = [];

function track<T extends { disconnect(): Promise<void> }>(client: T): T {
  open.push(client);
  return client;
}

async function disconnectAll(): Promise<void> {
  const clients = open.splice(0);
  await Promise.allSettled(clients.map((c) => withTimeout(c.disconnect(), 15_000, () => 'disconnect')));
}

function producer(options: Parameters<Kafka['producer']>[0] = {}): Producer {
  return track(kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, ...options }));
}

function consumer(groupId: string, readUncommitted = false): Consumer {
  return track(kafka.consumer(quickConsumer(groupId, { readUncommitted })));
}

async function createTopic(topic: string, numPartitions: number): Promise<void> {
  const created = await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
  assert.equal(created, true, `topic ${topic} was created`);
}

const line = (r: Received) => `${r.offset} ${r.key} ${r.value}`;

/** Reads a topic to its end with kcat (librdkafka, not kafkajs); one `offset key value` line per record. */
async function kcat(topic: string, isolation: 'read_committed' | 'read_uncommitted'): Promise<string[]> {
  const args = ['-C', '-b', brokersFromEnv().join(','), '-t', topic, '-o', 'beginning', '-e', '-q'];
  args.push('-X', `isolation.level=${isolation}`, '-f', '%o %k %s\\n');
  try {
    const { stdout } = await run('kcat', args, { timeout: WAIT_MS });
    return stdout.split('\n').filter((l) => l !== '');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        'kcat is not installed: install it (Debian: apt-get install kcat; macOS: brew install kcat); the smoke test reads committed records with it to check kafkajs',
      );
    }
    throw error;
  }
}

describe('kafka broker smoke (kafkajs 2.2.4)', { timeout: 5 * TEST_TIMEOUT_MS }, () => {
  before(async () => {
    kafka = kafkaClient('smoke');
    admin = kafka.admin();
    await admin.connect();
  });

  after(async () => {
    await disconnectAll();
    await admin?.disconnect();
  });

  test('creates topics explicitly; the broker creates none on demand', {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    t.after(disconnectAll);
    const n = names('smoke-topics');
    const three = n.topic('three');
    const one = n.topic('one');
    assert.equal(
      await admin.createTopics({
        topics: [
          { topic: three, numPartitions: 3 },
          { topic: one, numPartitions: 1 },
        ],
        waitForLeaders: true,
      }),
      true,
    );
    assert.equal(
      await admin.createTopics({ topics: [{ topic: one }] }),
      false,
      'creating it again is a no-op',
    );
    const listed = await admin.listTopics();
    assert.ok(listed.includes(three) && listed.includes(one), 'both topics are listed');
    const meta = await admin.fetchTopicMetadata({ topics: [three] });
    assert.equal(meta.topics[0]?.partitions.length, 3);

    // auto.create.topics.enable=false: a producer asking for an unknown topic gets an error, not a topic.
    const missing = n.topic('missing');
    const eager = producer({ allowAutoTopicCreation: true, retry: { retries: 1, initialRetryTime: 100 } });
    await eager.connect();
    await assert.rejects(eager.send({ topic: missing, messages: [{ value: 'x' }] }));
    assert.ok(!(await admin.listTopics()).includes(missing), `${missing} was not created`);
  });

  test('produces and consumes keyed records, keeping per-key order', {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    t.after(disconnectAll);
    const n = names('smoke-produce');
    const topic = n.topic();
    await createTopic(topic, 3);
    const sent = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 5}`, value: `v${i}` }));
    const p = producer();
    await p.connect();
    const acks = await p.send({ topic, acks: -1, messages: sent });
    assert.ok(acks.length > 0 && acks.every((a) => a.errorCode === 0));

    const got = await consumeAtLeast(consumer(n.group()), topic, sent.length, WAIT_MS);
    assert.deepEqual(got.map((r) => r.value).sort(), sent.map((m) => m.value).sort(), 'every record once');
    for (const key of ['k0', 'k1', 'k2', 'k3', 'k4']) {
      const ofKey = got.filter((r) => r.key === key);
      assert.equal(new Set(ofKey.map((r) => r.partition)).size, 1, `${key} lives in one partition`);
      assert.deepEqual(
        ofKey.map((r) => r.value),
        sent.filter((m) => m.key === key).map((m) => m.value),
        `${key} in send order`,
      );
    }
  });

  test('a consumer group of two members shares the partitions', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    t.after(disconnectAll);
    const n = names('smoke-group');
    const topic = n.topic();
    const partitions = 4;
    await createTopic(topic, partitions);
    const group = n.group();
    const members = [consumer(group), consumer(group)];
    const assigned: number[][] = [[], []];
    const received: Array<Received & { member: number }> = [];
    for (const [member, c] of members.entries()) {
      c.on(c.events.GROUP_JOIN, (event) => {
        assigned[member] = [...(event.payload.memberAssignment[topic] ?? [])].sort();
      });
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({
        eachMessage: async ({ partition, message }) => {
          received.push({
            member,
            partition,
            offset: message.offset,
            key: message.key?.toString() ?? null,
            value: message.value?.toString() ?? null,
          });
        },
      });
    }
    // Produce only once the group is stable with both members, so each record has one owner.
    await eventually(
      async () => {
        const [a = [], b = []] = assigned;
        const all = [...a, ...b].sort();
        const split =
          a.length > 0 && b.length > 0 && all.length === partitions && new Set(all).size === partitions;
        return split ? true : undefined;
      },
      WAIT_MS,
      () => `both members assigned, disjoint, covering ${partitions} partitions: ${JSON.stringify(assigned)}`,
    );

    const p = producer();
    await p.connect();
    const count = 40;
    await p.send({
      topic,
      acks: -1,
      messages: Array.from({ length: count }, (_, i) => ({
        partition: i % partitions,
        key: `k${i}`,
        value: `v${i}`,
      })),
    });
    await eventually(
      async () => (received.length >= count ? true : undefined),
      WAIT_MS,
      () => `${count} records across the group, got ${received.length}`,
    );

    const ids = received.map((r) => `${r.partition}/${r.offset}`);
    assert.equal(new Set(ids).size, count, 'each record consumed exactly once');
    assert.deepEqual(
      received.map((r) => r.value).sort(),
      Array.from({ length: count }, (_, i) => `v${i}`).sort(),
    );
    for (const r of received) {
      assert.ok(assigned[r.member]?.includes(r.partition), `partition ${r.partition} read by its owner`);
    }
    assert.ok(
      received.some((r) => r.member === 0) && received.some((r) => r.member === 1),
      'both members got records',
    );
  });

  test('transactions: records and consumer offsets commit atomically; aborted ones stay invisible to read_committed', {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    t.after(disconnectAll);
    const n = names('smoke-txn');
    const input = n.topic('in');
    const output = n.topic('out');
    const group = n.group('job');
    await createTopic(input, 1);
    await createTopic(output, 1);

    const committer = producer({
      transactionalId: n.transactionalId('commit'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    const aborter = producer({
      transactionalId: n.transactionalId('abort'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await committer.connect();
    await aborter.connect();

    const records = (tag: string, count: number) =>
      Array.from({ length: count }, (_, i) => ({ key: `${tag}${i}`, value: `${tag}-value-${i}` }));
    // TxnOffsetCommit carries a metadata string per partition; kafkajs passes it through (the design's
    // checkpoint pointer rides on it), although its typings only declare partition and offset.
    const offsets = (offset: number, metadata: string) => [
      { topic: input, partitions: [{ partition: 0, offset: String(offset), metadata }] },
    ];
    const committed = async () => {
      const [entry] = await admin.fetchOffsets({ groupId: group, topics: [input] });
      const partition = entry?.partitions.find((p) => p.partition === 0);
      return { offset: partition?.offset, metadata: partition?.metadata ?? null };
    };
    const expectOffset = (offset: string, metadata: string) =>
      eventually(
        async () => {
          const now = await committed();
          return now.offset === offset && now.metadata === metadata ? now : undefined;
        },
        WAIT_MS,
        () => `group ${group} committed offset ${offset} (${metadata}) on ${input}`,
      );

    // A: commit 5 records and input offset 5.
    const a = records('a', 5);
    let txn = await committer.transaction();
    await txn.send({ topic: output, messages: a });
    await txn.sendOffsets({ consumerGroupId: group, topics: offsets(5, 'checkpoint-a') });
    await txn.commit();
    await expectOffset('5', 'checkpoint-a');

    // B: abort 3 records and an input offset of 100; neither may become visible.
    const b = records('b', 3);
    txn = await aborter.transaction();
    await txn.send({ topic: output, messages: b });
    await txn.sendOffsets({ consumerGroupId: group, topics: offsets(100, 'checkpoint-b') });
    await txn.abort();
    assert.deepEqual(
      await committed(),
      { offset: '5', metadata: 'checkpoint-a' },
      'the aborted offset is not committed',
    );

    // C: commit 3 more and input offset 8, so the aborted records sit between committed ones.
    const c = records('c', 3);
    txn = await committer.transaction();
    await txn.send({ topic: output, messages: c });
    await txn.sendOffsets({ consumerGroupId: group, topics: offsets(8, 'checkpoint-c') });
    await txn.commit();
    await expectOffset('8', 'checkpoint-c');

    const values = (rs: readonly Received[]) => rs.map((r) => r.value);
    const expectedCommitted = [...a, ...c].map((m) => m.value);

    // read_committed: reaching C's last record means B's records were passed over, not pending.
    const readCommitted = await consumeAtLeast(
      consumer(n.group('read-committed')),
      output,
      expectedCommitted.length,
      WAIT_MS,
    );
    assert.deepEqual(values(readCommitted), expectedCommitted, 'read_committed sees exactly A and C');

    // read_uncommitted sees B too: the abort really happened, it was not a failed send.
    const everything = [...a, ...b, ...c].map((m) => m.value);
    const readUncommitted = await consumeAtLeast(
      consumer(n.group('read-uncommitted'), true),
      output,
      everything.length,
      WAIT_MS,
    );
    assert.deepEqual(values(readUncommitted), everything, 'read_uncommitted sees A, B and C');

    // A reader that is not kafkajs agrees, record for record (offsets included).
    assert.deepEqual(await kcat(output, 'read_committed'), readCommitted.map(line), 'kcat read_committed');
    assert.deepEqual(
      await kcat(output, 'read_uncommitted'),
      readUncommitted.map(line),
      'kcat read_uncommitted',
    );
  });
});
