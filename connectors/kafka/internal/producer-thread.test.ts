import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { isStreamError } from '../../../framework/index.ts';
import { createKafka } from '../client.ts';
import { classifyKafkaError } from '../errors.ts';
import { brokersFromEnv } from '../test/support/kafka.ts';
import { uniqueName } from '../test/support/names.ts';
import { kcatRecords } from '../test/support/sequence-check.ts';
import type { Message } from './kafkajs.ts';
import { startProducerThread } from './producer-thread.ts';
import {
  packSend,
  plainError,
  reviveError,
  transferList,
  unpackCloned,
  unpackSend,
} from './producer-thread-protocol.ts';

const require = createRequire(import.meta.url);
/** kafkajs's error classes (kafkajs/src/errors.js). */
type ErrorClass = new (e: unknown, o?: unknown) => Error;
const errors = require('kafkajs/src/errors') as Record<string, ErrorClass>;

/** A message as kafkajs writes it: key and value as bytes (a string is written as its UTF-8). */
const written = (m: Message) => ({
  ...m,
  key: m.key === null || m.key === undefined ? null : Buffer.from(m.key),
  value: m.value === null ? null : Buffer.from(m.value),
});

test('a packed send crosses the thread as it was: text and byte keys and values, nulls, timestamps, topics, order', () => {
  // Byte fields as the repartition sink makes them, and views into a larger (pooled) buffer.
  const pooled = Buffer.from('xxkey-bytesyy');
  const ascii: Message[] = [
    { key: 'k1', value: '{"n":1}', timestamp: '1765000000000' },
    { key: null, value: 'no key', timestamp: '1765000000000' },
    { key: 'k2', value: null, timestamp: '1765000000001' },
    { key: '', value: '' },
    { key: Buffer.from([0, 255, 7]), value: Buffer.from('{"v":1}'), timestamp: '1765000000002' },
    { key: pooled.subarray(2, 11), value: 'text after bytes' },
    { key: Buffer.alloc(0), value: Buffer.from([1]) },
  ];
  // Text beyond ASCII crosses as strings; ASCII text as views of its bytes: the same bytes written.
  const other: Message[] = [...ascii, { key: 'ключ 🎉', value: 'значение 🎉 \u0000 end', timestamp: '-1' }];
  for (const a of [ascii, other]) {
    const b: Message[] = [{ key: 'x', value: pooled.subarray(0, 2), timestamp: '1765000000001' }];
    const packed = packSend([
      { topic: 'a', messages: a },
      { topic: 'b', messages: b },
    ]);
    assert.ok(packed);
    // What moves to the thread is the packing's own memory, never a pooled buffer others share.
    assert.ok(packed.bytes && packed.bytes.byteLength === 3 + 7 + 9 + 0 + 1 + 2);
    assert.equal(packed.bytes.buffer.byteLength, packed.bytes.byteLength);
    const got = unpackSend(structuredClone(packed, { transfer: transferList(packed) }));
    assert.deepEqual(
      got.map((t) => ({ topic: t.topic, messages: t.messages.map(written) })),
      [
        { topic: 'a', messages: a.map(written) },
        { topic: 'b', messages: b.map(written) },
      ],
    );
    assert.equal(typeof got[0]!.messages[0]!.key, a === ascii ? 'object' : 'string');
  }
  // What kafkajs's producer takes: a message without a key has key null.
  assert.deepEqual(unpackSend(packSend([{ topic: 't', messages: [{ value: 'v' }] }])!)[0]!.messages, [
    { key: null, value: Buffer.from('v') },
  ]);
});

test('a send with headers or an explicit partition is cloned, and its Buffers arrive as Buffers', () => {
  const cases: Message[] = [
    { key: 'k', value: 'v', headers: { h: 'x' } },
    { key: 'k', value: 'v', partition: 0 },
  ];
  for (const m of cases)
    assert.equal(
      packSend([{ topic: 't', messages: [{ key: 'a', value: 'b' }, m] }]),
      undefined,
      JSON.stringify(m),
    );
  // A structured clone makes a Buffer a plain Uint8Array, which kafkajs would encode as "107,101,121".
  const sent: Message[] = [
    {
      key: Buffer.from('key'),
      value: Buffer.from([0, 1, 255]),
      // A header named `__proto__` (as JSON.parse makes one) stays a header.
      headers: Object.assign(JSON.parse('{"x-code":"E","__proto__":"named so"}'), {
        'x-raw': Buffer.from('raw'),
        many: ['a', Buffer.from('b')],
      }),
      partition: 2,
      timestamp: '5',
    },
    { key: 'k', value: null },
  ];
  const [got] = unpackCloned(structuredClone([{ topic: 't', messages: sent }]));
  assert.equal(got!.topic, 't');
  const [m0, m1] = got!.messages;
  assert.ok(Buffer.isBuffer(m0!.key) && Buffer.isBuffer(m0!.value));
  assert.ok(Buffer.isBuffer(m0!.headers!['x-raw']));
  assert.ok(Buffer.isBuffer((m0!.headers!.many as unknown[])[1]));
  assert.deepEqual(Object.keys(m0!.headers!), ['x-code', '__proto__', 'x-raw', 'many']);
  assert.deepEqual(m0, sent[0]);
  assert.deepEqual(m1, sent[1]);
});

test("kafkajs's errors keep what the error catalogue reads across the thread", () => {
  const {
    KafkaJSProtocolError,
    KafkaJSNonRetriableError,
    KafkaJSNumberOfRetriesExceeded,
    KafkaJSAggregateError,
  } = errors;
  const fenced = new KafkaJSProtocolError!({
    message: 'There is a newer producer with the same transactionalId which fences the current one',
    type: 'PRODUCER_FENCED',
    code: 90,
    retriable: false,
  });
  const busy = new KafkaJSProtocolError!({
    message: 'busy',
    type: 'CONCURRENT_TRANSACTIONS',
    code: 51,
    retriable: true,
  });
  const cases: Error[] = [
    fenced,
    busy,
    new KafkaJSNonRetriableError!(fenced),
    new KafkaJSNumberOfRetriesExceeded!(busy, { retryCount: 5, retryTime: 100 }),
    new KafkaJSAggregateError!('several', [busy, fenced] as never),
    new errors.KafkaJSConnectionError!('Connection error: ECONNREFUSED'),
    new TypeError('a bug'),
  ];
  for (const e of cases) {
    const crossed = reviveError(structuredClone(plainError(e)));
    assert.deepEqual(classifyKafkaError(crossed), classifyKafkaError(e), `${e.name}: ${e.message}`);
    assert.equal(crossed.name, e.name);
    assert.equal(crossed.message, e.message);
  }
  // Not every class agrees: the cases above are not all one code.
  assert.ok(new Set(cases.map((e) => classifyKafkaError(e).code)).size >= 3);
});

/**
 * A producer thread run by the stand-in (test/support/crashing-producer-worker.ts): no broker needed.
 * Its producers are not transactional (a transactional one fences through the caller's client).
 */
function standInThread() {
  return startProducerThread(
    createKafka({ brokers: ['127.0.0.1:9'] }),
    { brokers: ['127.0.0.1:9'] },
    '',
    new URL('../test/support/crashing-producer-worker.ts', import.meta.url),
  );
}

test('a thread that crashes fails the calls waiting on it and its producers later calls; new producers get a new thread', async () => {
  const thread = standInThread();
  try {
    assert.equal(thread.threaded, true);
    const p = thread.kafka.producer({ idempotent: true });
    await p.connect();
    const txn = await p.transaction();
    assert.equal(txn.isActive(), true);
    const exited = (e: unknown) =>
      isStreamError(e, 'KAFKA_PRODUCER_THREAD_EXITED') && /exited \(code 7\)/.test(e.message);
    await assert.rejects(
      txn.sendBatch({ topicMessages: [{ topic: 't', messages: [{ value: 'v' }] }] }),
      exited,
    );
    await assert.rejects(txn.commit(), exited);
    await assert.rejects(p.disconnect(), exited);
    // The task's restart makes new producers: on a new thread, which answers.
    const q = thread.kafka.producer({ idempotent: true });
    await q.connect();
    await assert.rejects(p.connect(), exited, 'a producer of the old thread stays gone');
  } finally {
    await thread.close();
  }
  await assert.rejects(
    thread.kafka.producer({}).connect(),
    (e: unknown) => isStreamError(e, 'KAFKA_PRODUCER_THREAD_EXITED') && /was closed/.test(e.message),
  );
});

test('a producer the thread could not make, or whose config cannot reach it, fails each call with why; the thread goes on', async () => {
  const thread = standInThread();
  try {
    const refused = thread.kafka.producer({ refuse: 'bad producer config' } as never);
    for (const call of [() => refused.connect(), () => refused.transaction(), () => refused.disconnect()])
      await assert.rejects(call(), (e: unknown) => e instanceof Error && e.message === 'bad producer config');
    // A function cannot be copied to another thread: refused at once, and nothing waits for an answer.
    const uncopyable = thread.kafka.producer({ createPartitioner: () => () => 0 } as never);
    await assert.rejects(
      uncopyable.connect(),
      (e: unknown) => e instanceof Error && e.name === 'DataCloneError',
    );
    const ok = thread.kafka.producer({ idempotent: true });
    await ok.connect();
    assert.equal((await ok.transaction()).isActive(), true);
  } finally {
    await thread.close();
  }
});

test("a connection that cannot be copied to a thread keeps the producers on the caller's thread", async () => {
  const kafka = createKafka({ brokers: ['127.0.0.1:9'] });
  const connection = {
    brokers: ['127.0.0.1:9'],
    sasl: { mechanism: 'oauthbearer' as const, oauthBearerProvider: async () => ({ value: 'token' }) },
  };
  const thread = startProducerThread(kafka, connection);
  assert.equal(thread.threaded, false);
  assert.equal(thread.kafka, kafka);
  await thread.close();
});

/** The broker's client and a new topic of one partition named after `prefix`. */
async function oneTopic(prefix: string) {
  const brokers = brokersFromEnv();
  const topic = uniqueName(prefix);
  const kafka = createKafka({ brokers });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();
  return { brokers, kafka, topic };
}

test('through the thread on a real broker: committed sends are read, aborted ones are not, and a fenced producer fails as KAFKA_TRANSACTION_LOST', async () => {
  const { brokers, kafka, topic } = await oneTopic('producer-thread');
  const thread = startProducerThread(kafka, { brokers });
  const config = { transactionalId: uniqueName('tid'), idempotent: true, maxInFlightRequests: 1 };
  const first = thread.kafka.producer(config);
  const second = thread.kafka.producer(config);
  try {
    await first.connect();
    const send = (
      t: { sendBatch: (b: { topicMessages: { topic: string; messages: Message[] }[] }) => Promise<unknown> },
      from: number,
      n: number,
    ) =>
      t.sendBatch({
        topicMessages: [
          {
            topic,
            messages: Array.from({ length: n }, (_, i) => ({
              key: `k${(from + i) % 3}`,
              value: String(from + i),
              timestamp: String(1_765_000_000_000 + from + i),
            })),
          },
        ],
      });
    let txn = await first.transaction();
    await send(txn, 0, 500);
    await send(txn, 500, 500);
    await txn.commit();
    assert.equal(txn.isActive(), false);
    txn = await first.transaction();
    await send(txn, 1000, 100);
    await txn.abort();
    txn = await first.transaction();
    await send(txn, 1100, 10);
    // A newer owner of the transactional id fences the first producer, whose transaction is lost.
    await second.connect();
    const fencing = await second.transaction();
    await fencing.abort();
    await assert.rejects(
      send(txn, 1110, 1).then(() => txn.commit()),
      (e: unknown) => classifyKafkaError(e).code === 'KAFKA_TRANSACTION_LOST',
    );
    const read = await kcatRecords(topic, (s) => s);
    assert.deepEqual(
      read.map((r) => [r.key, r.value]),
      Array.from({ length: 1000 }, (_, i) => [`k${i % 3}`, String(i)]),
    );
  } finally {
    await Promise.allSettled([first.disconnect(), second.disconnect()]);
    await thread.close();
  }
});

/** A transactional producer on `thread` fenced as the sink does: connect, a transaction, its abort. */
async function fencedProducer(thread: { kafka: ReturnType<typeof createKafka> }, transactionalId: string) {
  const p = thread.kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 });
  await p.connect();
  await (await p.transaction()).abort();
  return p;
}

test("a transactional producer fences on the caller's thread: done while the thread does not answer, its next call waits for the thread", {
  timeout: 60_000,
}, async () => {
  const brokers = brokersFromEnv();
  const thread = startProducerThread(
    createKafka({ brokers }),
    { brokers },
    '',
    new URL('../test/support/silent-producer-worker.ts', import.meta.url),
  );
  try {
    // Before: the fence waited for the thread's answers, which never come (the test timed out).
    const p = await fencedProducer(thread, uniqueName('tid'));
    const next = p.transaction();
    next.catch(() => {});
    const outcome = await Promise.race([
      next.then(
        () => 'settled',
        () => 'settled',
      ),
      new Promise((r) => setTimeout(r, 500, 'waiting')),
    ]);
    assert.equal(outcome, 'waiting');
    await thread.close();
    await assert.rejects(next, (e: unknown) => isStreamError(e, 'KAFKA_PRODUCER_THREAD_EXITED'));
  } finally {
    await thread.close();
  }
});

test("the thread's producer takes the fence's epoch over: an owner that fences it after the fence and commits makes its commit fail, and only that owner's records are read", async () => {
  const { brokers, kafka, topic } = await oneTopic('producer-handover');
  const transactionalId = uniqueName('tid');
  const thread = startProducerThread(kafka, { brokers });
  // Another owner of the id, on a client of its own (an instance that still believes it owns it).
  const other = createKafka({ brokers }).producer({
    transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  try {
    const p = await fencedProducer(thread, transactionalId);
    // The task would read its committed position now. The other owner fences and commits meanwhile.
    await other.connect();
    const o = await other.transaction();
    await o.sendBatch({ topicMessages: [{ topic, messages: [{ key: 'k', value: 'other' }] }] });
    await o.commit();
    // Had the thread asked for an epoch of its own, it would fence the other owner and commit
    // records from the position read before that owner's commit: that commit's effects twice.
    const txn = await p.transaction();
    await assert.rejects(
      txn
        .sendBatch({ topicMessages: [{ topic, messages: [{ key: 'k', value: 'task' }] }] })
        .then(() => txn.commit()),
      (e: unknown) => classifyKafkaError(e).code === 'KAFKA_TRANSACTION_LOST',
    );
    const read = await kcatRecords(topic, (s) => s);
    assert.deepEqual(
      read.map((r) => [r.key, r.value]),
      [['k', 'other']],
    );
    await p.disconnect().catch(() => {});
  } finally {
    await other.disconnect();
    await thread.close();
  }
});
