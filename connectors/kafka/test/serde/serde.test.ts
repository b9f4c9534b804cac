/**
 * Serde unit tests (no broker, no registry): string / JSON / bytes, the Confluent wire format and
 * Protobuf message indexes, the error classes, failure classification, and the retry loop on a manual
 * clock. The registry and broker round trips are in serde-registry.test.ts and registry-outage.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../../../framework/testing/index.ts';
import {
  backoffDelay,
  bytesSerde,
  classifyRegistryFailure,
  DEFAULT_RETRY_POLICY,
  DeserializationError,
  isPromise,
  isSerdeError,
  jsonSerde,
  RegistryUnavailableError,
  type RetryPolicy,
  SerializationError,
  stringSerde,
} from '../../serde/index.ts';
import { retrying } from '../../serde/retry.ts';
import { readHeader, readMessageIndexes, writeHeader, writeMessageIndexes } from '../../serde/wire.ts';

function deserializationError(fn: () => unknown): DeserializationError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof DeserializationError, `expected a DeserializationError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a DeserializationError, got a value');
}

describe('simple serdes', () => {
  test('string: UTF-8 round trip, synchronous, null for null', () => {
    const serde = stringSerde();
    const text = 'héllo wörld ✓ 𝄞';
    const bytes = serde.serialize(text, 't');
    assert.ok(Buffer.isBuffer(bytes));
    assert.equal(serde.deserialize(bytes, 't'), text);
    assert.equal(serde.serialize(null, 't'), null);
    assert.equal(serde.deserialize(null, 't'), null);
  });

  test('string: bytes that are not UTF-8 are a poison record, not replacement characters', () => {
    const error = deserializationError(() =>
      stringSerde().deserialize(Buffer.from([0x61, 0xff, 0xfe]), 'orders'),
    );
    assert.equal(error.code, 'RECORD_DESERIALIZATION_FAILED');
    assert.equal(error.reason, 'invalid-encoding');
    assert.equal(error.topic, 'orders');
    assert.equal(error.retryable, false);
    assert.ok(error.cause instanceof TypeError, 'the decoder error is the cause');
  });

  test('json: round trip; invalid JSON is a DeserializationError with the SyntaxError as cause', () => {
    const serde = jsonSerde<{ a: number; b: string[] }>();
    const value = { a: 1, b: ['x', 'ÿ'] };
    const bytes = serde.serialize(value, 't') as Buffer;
    assert.deepEqual(serde.deserialize(bytes, 't'), value);
    const error = deserializationError(() => serde.deserialize(Buffer.from('{"a":'), 't'));
    assert.equal(error.reason, 'invalid-encoding');
    assert.ok(error.cause instanceof SyntaxError);
  });

  test('json: values without a JSON form are a SerializationError', () => {
    const serde = jsonSerde<unknown>();
    assert.throws(() => serde.serialize(10n, 't'), SerializationError);
    assert.throws(
      () => serde.serialize(() => 1, 't'),
      (e: unknown) => {
        assert.ok(e instanceof SerializationError);
        assert.equal(e.code, 'RECORD_SERIALIZATION_FAILED');
        assert.match(e.message, /no JSON form/);
        return true;
      },
    );
  });

  test('bytes: as they are', () => {
    const serde = bytesSerde();
    const bytes = Buffer.from([0, 1, 2, 255]);
    assert.equal(serde.serialize(bytes, 't'), bytes);
    assert.equal(serde.deserialize(bytes, 't'), bytes);
    assert.equal(serde.deserialize(null, 't'), null);
  });

  test('isPromise tells values from Promises', () => {
    assert.equal(isPromise(stringSerde().deserialize(Buffer.from('x'), 't')), false);
    assert.equal(isPromise(Promise.resolve(1)), true);
    assert.equal(isPromise(null), false);
  });
});

describe('DeserializationError', () => {
  test('at() places the error at its record and keeps reason, schema id and cause', () => {
    const cause = new Error('boom');
    const error = new DeserializationError(
      {
        reason: 'unknown-schema-id',
        format: 'avro',
        topic: 'orders',
        detail: 'schema id 99 is not in the registry',
        schemaId: 99,
      },
      { cause },
    );
    assert.equal(error.partition, undefined);
    assert.match(error.message, /topic orders/);
    const placed = error.at({ partition: 3, offset: '42', field: 'value' });
    assert.equal(placed.partition, 3);
    assert.equal(placed.offset, '42');
    assert.equal(placed.field, 'value');
    assert.equal(placed.schemaId, 99);
    assert.equal(placed.reason, 'unknown-schema-id');
    assert.equal(placed.cause, cause);
    assert.equal(
      placed.message,
      'cannot read the value at orders partition 3 offset 42 as avro (unknown-schema-id): schema id 99 is not in the registry',
    );
    assert.ok(isSerdeError(placed, 'RECORD_DESERIALIZATION_FAILED'));
    assert.ok(!isSerdeError(placed, 'SCHEMA_REGISTRY_UNAVAILABLE'));
    assert.ok(!isSerdeError(new Error('x')));
  });
});

describe('Confluent wire format', () => {
  test('header: magic byte 0 and a big-endian schema id', () => {
    const bytes = writeHeader(258, Buffer.from([9, 9]));
    assert.deepEqual([...bytes], [0, 0, 0, 1, 2, 9, 9]);
    const read = readHeader(bytes);
    assert.ok(read.ok);
    assert.equal(read.schemaId, 258);
    assert.deepEqual([...read.body], [9, 9]);
  });

  test('header: wrong magic byte and short input are reported as values', () => {
    const wrong = readHeader(Buffer.from('{"not":"framed"}'));
    assert.equal(wrong.ok, false);
    assert.equal(!wrong.ok && wrong.reason, 'wrong-magic-byte');
    const short = readHeader(Buffer.from([0, 0, 1]));
    assert.equal(!short.ok && short.reason, 'truncated');
  });

  test('Protobuf message indexes: [0] is one zero byte, others are zigzag varints', () => {
    assert.deepEqual([...writeMessageIndexes([0])], [0]);
    assert.deepEqual([...writeMessageIndexes([1])], [2, 2]);
    assert.deepEqual([...writeMessageIndexes([0, 1])], [4, 0, 2]);
    assert.deepEqual([...writeMessageIndexes([300])], [2, 0xd8, 0x04]);
    for (const indexes of [[0], [1], [0, 1], [2, 0, 3], [300]]) {
      const read = readMessageIndexes(Buffer.concat([writeMessageIndexes(indexes), Buffer.from([8, 1])]));
      assert.ok(read.ok);
      assert.deepEqual(read.indexes, indexes);
      assert.deepEqual([...read.payload], [8, 1]);
    }
    const truncated = readMessageIndexes(Buffer.from([4, 0]));
    assert.equal(!truncated.ok && truncated.reason, 'truncated');
  });
});

describe('registry failure classification', () => {
  const responseError = (status: number, message: string) =>
    Object.assign(new Error(`Confluent_Schema_Registry - ${message}`), { name: 'ResponseError', status });

  test('no answer and 5xx/408/429 are transient; other answers are not', () => {
    const transient = [
      responseError(400, 'Error, status 400: connect ECONNREFUSED 127.0.0.1:1'),
      responseError(400, 'Error, status 400: Timeout (300ms)'),
      responseError(400, 'Error, status 400: socket hang up'),
      responseError(503, 'down'),
      responseError(500, 'oops'),
      responseError(429, 'slow down'),
      Object.assign(new TypeError('fetch failed'), { cause: new Error('connect ECONNREFUSED 127.0.0.1:1') }),
      Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' }),
    ];
    for (const error of transient)
      assert.equal(classifyRegistryFailure(error).transient, true, error.message);
    const final = [
      responseError(400, 'Either the input schema or one its references is invalid'),
      responseError(404, 'Schema not found'),
      responseError(401, 'Unauthorized'),
      responseError(409, 'incompatible'),
      new Error('invalid schema text'),
    ];
    for (const error of final) assert.equal(classifyRegistryFailure(error).transient, false, error.message);
  });
});

describe('retry with backoff (manual clock)', () => {
  const policy: RetryPolicy = {
    ...DEFAULT_RETRY_POLICY,
    initialDelayMs: 100,
    maxDelayMs: 1_000,
    maxElapsedMs: 3_000,
  };

  test('backoffDelay: exponential, capped, jitter within ±20%', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(policy, n, 0.5)),
      [100, 200, 400, 800, 1_000, 1_000],
    );
    assert.equal(backoffDelay(policy, 1, 0), 80);
    assert.equal(backoffDelay(policy, 1, 0.999_999), 120);
    assert.equal(backoffDelay(policy, 10, 0), 800);
  });

  /** Runs `run` to completion, advancing the clock whenever the retry loop sleeps. */
  async function drive<T>(clock: ManualClock, run: Promise<T>): Promise<T> {
    let settled = false;
    const result = run.finally(() => {
      settled = true;
    });
    result.catch(() => undefined);
    while (!settled) {
      await new Promise((resolve) => setImmediate(resolve));
      clock.advance(50);
    }
    return result;
  }

  const unavailable = () =>
    Object.assign(new TypeError('fetch failed'), { cause: new Error('connect ECONNREFUSED') });

  test('transient failures are retried and logged until the call succeeds', async () => {
    const clock = new ManualClock(0);
    const lines: string[] = [];
    const startedAt: number[] = [];
    let calls = 0;
    const value = await drive(
      clock,
      retrying(
        async () => {
          startedAt.push(clock.now());
          if (++calls < 4) throw unavailable();
          return 'schema';
        },
        {
          policy,
          clock,
          random: () => 0.5,
          log: (line) => lines.push(line),
          operation: 'GET /schemas/ids/1',
          classify: classifyRegistryFailure,
          giveUp: () => new Error('unexpected'),
        },
      ),
    );
    assert.equal(value, 'schema');
    assert.equal(calls, 4);
    assert.deepEqual(startedAt, [0, 100, 300, 700]);
    assert.equal(lines.length, 3);
    assert.match(
      lines[0] ?? '',
      /GET \/schemas\/ids\/1 failed \(connect ECONNREFUSED\), attempt 1; retrying in 100 ms/,
    );
  });

  test('when the budget is spent the caller gets the giveUp error, with the attempts and the cause', async () => {
    const clock = new ManualClock(0);
    const lines: string[] = [];
    let calls = 0;
    const run = retrying(
      async () => {
        calls++;
        throw unavailable();
      },
      {
        policy,
        clock,
        random: () => 0.5,
        log: (line) => lines.push(line),
        operation: 'GET /schemas/ids/1',
        classify: classifyRegistryFailure,
        giveUp: ({ attempts, elapsedMs, lastError, cause }) =>
          new RegistryUnavailableError(
            { url: 'http://r', operation: 'GET /schemas/ids/1', attempts, elapsedMs, lastError },
            { cause },
          ),
      },
    );
    await assert.rejects(drive(clock, run), (error: unknown) => {
      assert.ok(error instanceof RegistryUnavailableError);
      assert.equal(error.code, 'SCHEMA_REGISTRY_UNAVAILABLE');
      assert.equal(error.retryable, true);
      // 0, 100, 300, 700, 1500, 2500: the next (after 1000 more) would start past 3000.
      assert.equal(error.attempts, 6);
      assert.equal(error.elapsedMs, 2_500);
      assert.ok(error.cause instanceof TypeError);
      return true;
    });
    assert.equal(calls, 6);
    assert.match(lines.at(-1) ?? '', /giving up after 2500 ms/);
  });

  test('a failure that is not transient is thrown at once', async () => {
    const clock = new ManualClock(0);
    let calls = 0;
    const refused = Object.assign(new Error('Unauthorized'), { name: 'ResponseError', status: 401 });
    await assert.rejects(
      retrying(
        async () => {
          calls++;
          throw refused;
        },
        {
          policy,
          clock,
          random: () => 0.5,
          log: () => undefined,
          operation: 'x',
          classify: classifyRegistryFailure,
          giveUp: () => new Error('unexpected'),
        },
      ),
      (error) => error === refused,
    );
    assert.equal(calls, 1);
  });
});
