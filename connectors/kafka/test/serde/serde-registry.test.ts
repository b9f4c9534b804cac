/**
 * Serdes end to end against the real broker (KAFKA_BROKERS) and a real schema registry (Apicurio
 * Registry's Confluent-compatible API, started for this file by scripts/registry unless
 * SCHEMA_REGISTRY_URL names one): every format is produced with kafkajs, consumed as raw bytes, and
 * deserialized; schema registration and id caching; poison records of every kind.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { registryForTests, type TestRegistry } from '../../../../scripts/registry/fixture.ts';
import { type Admin, type Kafka, Partitioners } from '../../internal/kafkajs.ts';
import {
  avroSerde,
  bytesSerde,
  DeserializationError,
  type DeserializationReason,
  isPromise,
  jsonSchemaSerde,
  jsonSerde,
  protobufSerde,
  SchemaRegistryClient,
  type Serde,
  SerializationError,
  stringSerde,
} from '../../serde/index.ts';
import { kafkaClient, quickConsumer, withTimeout } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const TEST_TIMEOUT_MS = 90_000;
const WAIT_MS = 30_000;

let registry: TestRegistry;
let kafka: Kafka;
let admin: Admin;
const lines: string[] = [];

function client(): SchemaRegistryClient {
  return new SchemaRegistryClient({ url: registry.url, log: (line) => lines.push(line) });
}

interface RawRecord {
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

async function createTopic(topic: string): Promise<void> {
  assert.equal(
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true }),
    true,
  );
}

async function produce(topic: string, records: ReadonlyArray<{ key: Buffer | null; value: Buffer | null }>) {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    await producer.send({ topic, messages: records.map((r) => ({ key: r.key, value: r.value })) });
  } finally {
    await producer.disconnect();
  }
}

/** Reads `count` records of `topic` from the beginning as raw bytes. */
async function consumeRaw(topic: string, count: number): Promise<RawRecord[]> {
  const consumer = kafka.consumer(quickConsumer(names('serde').group()));
  const received: RawRecord[] = [];
  let done: () => void = () => undefined;
  const enough = new Promise<void>((resolve) => {
    done = resolve;
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        received.push({ partition, offset: message.offset, key: message.key, value: message.value });
        if (received.length >= count) done();
      },
    });
    await withTimeout(enough, WAIT_MS, () => `${count} records from ${topic}, got ${received.length}`);
  } finally {
    await consumer.disconnect();
  }
  return received;
}

async function value<T>(result: T | Promise<T>): Promise<T> {
  return isPromise(result) ? await result : result;
}

/** Serializes, produces, consumes and deserializes `values`; returns what came back. */
async function roundTrip<T>(serde: Serde<T>, reader: Serde<T>, values: readonly T[]): Promise<(T | null)[]> {
  const topic = names(`serde ${serde.format}`).topic();
  await createTopic(topic);
  const records = [];
  for (const v of values) records.push({ key: null, value: await value(serde.serialize(v, topic)) });
  await produce(topic, records);
  const raw = await consumeRaw(topic, values.length);
  const out: (T | null)[] = [];
  for (const r of raw) out.push(await value(reader.deserialize(r.value, topic)));
  return out;
}

/** A plain copy, so avsc record instances compare with object literals. */
const plain = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

const USER = {
  type: 'record',
  name: 'User',
  namespace: 'kstate.test',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'name', type: 'string' },
    { name: 'email', type: ['null', 'string'], default: null },
  ],
};

const ORDER_JSON_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  type: 'object',
  properties: {
    orderId: { type: 'string' },
    amount: { type: 'number' },
    tags: { type: 'array', items: { type: 'string' } },
  },
  required: ['orderId', 'amount'],
  additionalProperties: false,
};

const PROTO = `syntax = "proto3";
package kstate.test;

message Point {
  int32 x = 1;
  int32 y = 2;
}

enum Color {
  RED = 0;
  GREEN = 1;
}

message Shape {
  string name = 1;
  repeated Point points = 2;
  Color color = 3;
  int64 area = 4;
  message Label {
    string text = 1;
  }
  Label label = 5;
}
`;

before(async () => {
  registry = await registryForTests();
  kafka = kafkaClient('serde-registry-test');
  admin = kafka.admin();
  await admin.connect();
});

after(async () => {
  await admin?.disconnect();
  await registry?.release();
});

describe('serdes through the broker', { timeout: TEST_TIMEOUT_MS }, () => {
  test('string keys, JSON values and raw bytes round trip; tombstones stay null', async () => {
    const topic = names('serde simple').topic();
    await createTopic(topic);
    const keys = stringSerde();
    const json = jsonSerde<{ n: number; s: string } | null>();
    const values = [{ n: 1, s: 'ä' }, null, { n: 3, s: '✓' }];
    await produce(
      topic,
      values.map((v, i) => ({
        key: keys.serialize(`k${i}`, topic) as Buffer,
        value: json.serialize(v, topic) as Buffer | null,
      })),
    );
    const raw = await consumeRaw(topic, 3);
    assert.deepEqual(
      raw.map((r) => [keys.deserialize(r.key, topic), json.deserialize(r.value, topic)]),
      values.map((v, i) => [`k${i}`, v]),
    );

    const bytes = bytesSerde();
    const blobs = [Buffer.from([0, 1, 2, 254, 255]), Buffer.alloc(0), Buffer.from('x')];
    assert.deepEqual(await roundTrip(bytes, bytes, blobs), blobs);
  });

  test('Avro: registered once under <topic>-value, ids cached, steady state synchronous', async () => {
    const writer = client();
    const reader = client();
    const serde = avroSerde<{ id: number; name: string; email: string | null }>({
      registry: writer,
      schema: USER,
    });
    const readSerde = avroSerde<{ id: number; name: string; email: string | null }>({ registry: reader });
    const topic = names('serde avro').topic();
    await createTopic(topic);
    const users = Array.from({ length: 50 }, (_, i) => ({
      id: i,
      name: `user ${i}`,
      email: i % 2 === 0 ? null : `u${i}@x`,
    }));

    const first = serde.serialize(users[0] ?? null, topic);
    assert.ok(isPromise(first), 'the first write asks the registry');
    const encoded = [await first];
    for (const u of users.slice(1)) {
      const bytes = serde.serialize(u, topic);
      assert.ok(!isPromise(bytes), 'later writes are synchronous');
      encoded.push(bytes);
    }
    assert.deepEqual(writer.stats, { schemaFetches: 1, registrations: 1, subjectLookups: 0 });

    // The id in the header is the one the registry holds for the subject.
    const latest = await fetch(`${registry.url}/subjects/${topic}-value/versions/latest`);
    const { id } = (await latest.json()) as { id: number };
    const header = encoded[0] as Buffer;
    assert.equal(header.readUInt8(0), 0);
    assert.equal(header.readInt32BE(1), id);

    await produce(
      topic,
      encoded.map((v) => ({ key: null, value: v })),
    );
    const raw = await consumeRaw(topic, users.length);
    const firstRead = readSerde.deserialize(raw[0]?.value ?? null, topic);
    assert.ok(isPromise(firstRead), 'the first read of a schema id asks the registry');
    const decoded = [await firstRead];
    for (const r of raw.slice(1)) {
      const v = readSerde.deserialize(r.value, topic);
      assert.ok(!isPromise(v), 'later reads of the same id are synchronous');
      decoded.push(v);
    }
    assert.deepEqual(decoded.map(plain), users);
    assert.deepEqual(reader.stats, { schemaFetches: 1, registrations: 0, subjectLookups: 0 });

    // A second serde instance on the same client registers nothing new.
    const again = avroSerde({ registry: writer, schema: JSON.stringify(USER) });
    await value(again.serialize({ id: 1, name: 'a', email: null }, topic));
    assert.equal(writer.stats.registrations, 1);
  });

  test('Avro: records written by the @kafkajs client itself are read', async () => {
    const topic = names('serde avro interop').topic();
    const library = new SchemaRegistry({ host: registry.url });
    const { id } = await library.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(USER) },
      { subject: `${topic}-value` },
    );
    const bytes = await library.encode(id, { id: 7, name: 'seven', email: 'x@y' });
    const serde = avroSerde({ registry: client() });
    assert.deepEqual(plain(await value(serde.deserialize(bytes, topic))), {
      id: 7,
      name: 'seven',
      email: 'x@y',
    });
  });

  test('JSON Schema: round trip; values that break the schema are refused on write and on read', async () => {
    const registryClient = client();
    const serde = jsonSchemaSerde<Record<string, unknown>>({
      registry: registryClient,
      schema: ORDER_JSON_SCHEMA,
    });
    const orders = [
      { orderId: 'a1', amount: 10.5, tags: ['x'] },
      { orderId: 'a2', amount: 0 },
    ];
    assert.deepEqual(await roundTrip(serde, jsonSchemaSerde({ registry: client() }), orders), orders);

    const topic = names('serde json bad').topic();
    await assert.rejects(
      async () => value(serde.serialize({ orderId: 5 }, topic)),
      (e: unknown) => {
        assert.ok(e instanceof SerializationError);
        assert.match(e.message, /does not match schema id \d+/);
        return true;
      },
    );
    // A framed record that does not validate: a producer with another idea of the schema.
    const good = (await value(serde.serialize({ orderId: 'z', amount: 1 }, topic))) as Buffer;
    const bad = Buffer.concat([good.subarray(0, 5), Buffer.from('{"orderId":"z","amount":"lots"}')]);
    const error = await deserializeError(serde, bad, topic);
    assert.equal(error.reason, 'schema-mismatch');
    assert.ok(error.cause instanceof Error);
  });

  test('Protobuf: message indexes on the wire, nested and non-first messages, longs and enums as strings', async () => {
    const registryClient = client();
    const shapes = protobufSerde<Record<string, unknown>>({
      registry: registryClient,
      schema: PROTO,
      messageName: 'Shape',
    });
    const labels = protobufSerde<Record<string, unknown>>({
      registry: registryClient,
      schema: PROTO,
      messageName: 'Shape.Label',
      subject: 'kstate-test-labels',
    });
    const points = protobufSerde<Record<string, unknown>>({
      registry: registryClient,
      schema: PROTO,
      subject: 'kstate-test-points',
    });
    const reader = protobufSerde<Record<string, unknown>>({ registry: client() });
    const topic = names('serde protobuf').topic();
    await createTopic(topic);

    const shape = {
      name: 'triangle',
      points: [
        { x: 0, y: 0 },
        { x: 3, y: 0 },
        { x: 0, y: 4 },
      ],
      color: 'GREEN',
      area: '6',
      label: { text: 'right' },
    };
    const shapeBytes = (await value(shapes.serialize(shape, topic))) as Buffer;
    const labelBytes = (await value(labels.serialize({ text: 'hello' }, topic))) as Buffer;
    const pointBytes = (await value(points.serialize({ x: -1, y: 2 }, topic))) as Buffer;
    // Shape is message 1 of the file ([1] -> count 1, index 1, zigzag: 02 02); Shape.Label is [1, 0]; Point is [0].
    assert.deepEqual([...shapeBytes.subarray(5, 7)], [2, 2]);
    assert.deepEqual([...labelBytes.subarray(5, 8)], [4, 2, 0]);
    assert.equal(pointBytes[5], 0);

    await produce(
      topic,
      [shapeBytes, labelBytes, pointBytes].map((v) => ({ key: null, value: v })),
    );
    const raw = await consumeRaw(topic, 3);
    const decoded = [];
    for (const r of raw) decoded.push(await value(reader.deserialize(r.value, topic)));
    assert.deepEqual(decoded, [shape, { text: 'hello' }, { x: -1, y: 2 }]);

    await assert.rejects(
      async () => value(shapes.serialize({ name: 'x', points: 'not a list' }, topic)),
      SerializationError,
    );
  });

  test('autoRegister off: a registered schema is looked up, an unregistered one is a SerializationError', async () => {
    const topic = names('serde lookup').topic();
    const registryClient = client();
    const lookupOnly = avroSerde({ registry: registryClient, schema: USER, autoRegister: false });
    await assert.rejects(
      async () => value(lookupOnly.serialize({ id: 1, name: 'a', email: null }, topic)),
      (e: unknown) => {
        assert.ok(e instanceof SerializationError);
        assert.match(e.message, /not registered under subject .*-value, and autoRegister is off/);
        return true;
      },
    );
    await value(
      avroSerde({ registry: client(), schema: USER }).serialize({ id: 1, name: 'a', email: null }, topic),
    );
    const bytes = await value(lookupOnly.serialize({ id: 2, name: 'b', email: null }, topic));
    assert.ok(Buffer.isBuffer(bytes));
    assert.equal(registryClient.stats.registrations, 0);

    // Without a schema, the subject's latest version is used.
    const latest = avroSerde({ registry: client() });
    assert.ok(Buffer.isBuffer(await value(latest.serialize({ id: 3, name: 'c', email: null }, topic))));
  });

  test('concurrent reads of a new schema id share one request', async () => {
    const topic = names('serde concurrent').topic();
    const bytes = (await value(
      avroSerde({ registry: client(), schema: USER }).serialize({ id: 1, name: 'a', email: null }, topic),
    )) as Buffer;
    const reader = client();
    const serde = avroSerde({ registry: reader });
    const results = await Promise.all(
      Array.from({ length: 20 }, () => value(serde.deserialize(bytes, topic))),
    );
    assert.equal(results.length, 20);
    assert.equal(reader.stats.schemaFetches, 1);
  });
});

async function deserializeError(
  serde: Serde<unknown>,
  bytes: Buffer | null,
  topic: string,
): Promise<DeserializationError> {
  try {
    await value(serde.deserialize(bytes, topic));
  } catch (error) {
    assert.ok(error instanceof DeserializationError, `expected a DeserializationError, got ${String(error)}`);
    return error;
  }
  return assert.fail('expected a DeserializationError, got a value');
}

describe('poison records', { timeout: TEST_TIMEOUT_MS }, () => {
  test('each kind of bad payload, read from the broker, is a DeserializationError with its reason and place', async () => {
    const topic = names('serde poison').topic();
    await createTopic(topic);
    const writer = client();
    const avroBytes = (await value(
      avroSerde({ registry: writer, schema: USER }).serialize({ id: 1, name: 'ok', email: null }, topic),
    )) as Buffer;
    const jsonBytes = (await value(
      jsonSchemaSerde({
        registry: writer,
        schema: ORDER_JSON_SCHEMA,
        subject: 'kstate-test-orders',
      }).serialize({ orderId: 'o', amount: 1 }, topic),
    )) as Buffer;
    const unknownId = Buffer.from(avroBytes);
    unknownId.writeInt32BE(987_654_321, 1);

    const cases: Array<{ bytes: Buffer; reason: DeserializationReason; cause: boolean }> = [
      { bytes: Buffer.from('{"id":1,"name":"plain json"}'), reason: 'wrong-magic-byte', cause: false },
      { bytes: Buffer.from([0, 0, 0]), reason: 'truncated', cause: false },
      { bytes: unknownId, reason: 'unknown-schema-id', cause: false },
      // The Avro record cut short, and the same record with bytes left over.
      { bytes: avroBytes.subarray(0, avroBytes.length - 2), reason: 'schema-mismatch', cause: true },
      { bytes: Buffer.concat([avroBytes, Buffer.from([1, 2, 3])]), reason: 'schema-mismatch', cause: true },
      // A JSON Schema record read by the Avro serde.
      { bytes: jsonBytes, reason: 'schema-type-mismatch', cause: false },
      { bytes: avroBytes, reason: 'schema-type-mismatch', cause: false },
    ];
    await produce(
      topic,
      cases.map((c) => ({ key: null, value: c.bytes })),
    );
    const raw = await consumeRaw(topic, cases.length);
    const reader = client();
    const avro = avroSerde({ registry: reader });
    const json = jsonSchemaSerde({ registry: reader });
    for (const [i, c] of cases.entries()) {
      const r = raw[i] as RawRecord;
      const serde = i === cases.length - 1 ? json : avro;
      const error = await deserializeError(serde, r.value, topic);
      assert.equal(error.reason, c.reason, `case ${i}: ${error.message}`);
      assert.equal(error.code, 'RECORD_DESERIALIZATION_FAILED');
      assert.equal(error.cause !== undefined, c.cause, `case ${i} cause: ${String(error.cause)}`);
      const placed = error.at({ partition: r.partition, offset: r.offset, field: 'value' });
      assert.match(
        placed.message,
        new RegExp(`^cannot read the value at ${topic} partition 0 offset ${r.offset} as `),
      );
    }
    // 404 is an answer: asked once per record, never retried.
    assert.equal(lines.filter((l) => l.includes('987654321')).length, 0);
  });
});
