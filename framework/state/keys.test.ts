import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import type { Key } from '../api/keys.ts';
import { keyBytes, keyFromId, keyGroupOf, keyId, murmur2, toPositive } from './keys.ts';

describe('murmur2', () => {
  test("matches Kafka's Utils.murmur2 (UtilsTest.testMurmur2 vectors)", () => {
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [input, expected] of cases) {
      assert.equal(murmur2(Buffer.from(input, 'utf8')), expected, input);
    }
  });

  test('matches kafka-clients 4.2.0 for every tail length and non-ASCII input', () => {
    // Computed with org.apache.kafka.common.utils.Utils.murmur2 and
    // BuiltInPartitioner.partitionForKey(bytes, 12 | 1000) from kafka-clients 4.2.0.
    const cases: [string, number, number, number][] = [
      ['', 275646681, 9, 681],
      ['a', -1563381124, 4, 524],
      ['ab', 316155434, 2, 434],
      ['abc', 479470107, 3, 107],
      ['abcd', -1323649548, 8, 100],
      ['abcde', 461995741, 1, 741],
      ['abcdef', 1870650108, 0, 108],
      ['abcdefg', -346467175, 1, 473],
      ['abcdefgh', -955427363, 9, 285],
      ['order-42', 501153024, 0, 24],
      ['k\u00e4se', -1070276755, 1, 893],
      ['\u65e5\u672c', -700811021, 3, 627],
      ['\u0000x', 254478165, 9, 165],
    ];
    for (const [key, hash, p12, p1000] of cases) {
      assert.equal(murmur2(Buffer.from(key, 'utf8')), hash, JSON.stringify(key));
      assert.equal(keyGroupOf(keyId(key), 12), p12, JSON.stringify(key));
      assert.equal(keyGroupOf(keyId(key), 1000), p1000, JSON.stringify(key));
    }
    // A non-string key hashes its canonical JSON: {"a":1}
    assert.equal(keyGroupOf(keyId({ a: 1 }), 12), 5);
    assert.equal(keyGroupOf(keyId({ a: 1 }), 1000), 353);
  });

  test('toPositive clears the sign bit, as Kafka does (not Math.abs)', () => {
    assert.equal(toPositive(-2147483648), 0);
    assert.equal(toPositive(-1), 0x7fffffff);
    assert.equal(toPositive(5), 5);
  });
});

describe('keyGroupOf', () => {
  test("is Kafka's default partition of a string key", () => {
    // partition = toPositive(murmur2(utf8(key))) % numPartitions (BuiltInPartitioner.partitionForKey)
    assert.equal(keyGroupOf('foobar', 1000), toPositive(-790332482) % 1000);
    assert.equal(keyGroupOf('21', 7), toPositive(-973932308) % 7);
  });

  test('is always within [0, numKeyGroups)', () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 10_000 }), (key, n) => {
        const g = keyGroupOf(keyId(key), n);
        return Number.isInteger(g) && g >= 0 && g < n;
      }),
    );
  });

  test('a string key starting with NUL still hashes its own UTF-8', () => {
    const key = '\u0000x';
    assert.deepEqual([...keyBytes(keyId(key))], [0, 0x78]);
  });
});

const jsonKey: fc.Arbitrary<Key> = fc.letrec<{ key: Key }>((tie) => ({
  key: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.string({ unit: 'binary' }),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => (Object.is(n, -0) ? 0 : n)),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('key'), { maxLength: 4 }),
    fc.dictionary(fc.string(), tie('key'), { maxKeys: 4, noNullPrototype: true }),
  ),
})).key;

describe('keyId', () => {
  test('string keys are their own id', () => {
    assert.equal(keyId('user-1'), 'user-1');
    assert.equal(keyId(''), '');
  });

  test('is reversible: keyFromId(keyId(k)) deep-equals k', () => {
    fc.assert(
      fc.property(jsonKey, (key) => {
        assert.deepEqual(keyFromId(keyId(key)), key);
      }),
      { numRuns: 500 },
    );
  });

  test('is injective and canonical (object field order does not matter)', () => {
    assert.notEqual(keyId(42), keyId('42'));
    assert.notEqual(keyId(true), keyId('true'));
    assert.notEqual(keyId(null), keyId('null'));
    assert.notEqual(keyId('\u000042'), keyId(42));
    assert.equal(keyId({ a: 1, b: [2, { d: 4, c: 3 }] }), keyId({ b: [2, { c: 3, d: 4 }], a: 1 }));
    assert.equal(keyId(-0), keyId(0));
    fc.assert(
      fc.property(jsonKey, jsonKey, (a, b) => {
        const same = keyId(a) === keyId(b);
        assert.equal(same, isDeepStrictEqual(a, b));
      }),
      { numRuns: 300 },
    );
  });

  test('rejects values that are not keys with USER_FUNCTION_FAILED naming the value and where', () => {
    const bad: [unknown, RegExp][] = [
      [Number.NaN, /returned NaN/],
      [Number.POSITIVE_INFINITY, /returned Infinity/],
      [undefined, /returned undefined/],
      [() => 1, /returned a function/],
      [10n, /returned the bigint 10n/],
      [{ a: { b: undefined } }, /returned undefined at \$\.a\.b/],
      [[1, new Date(0)], /returned an instance of Date at \$\[1\]/],
      [new Map(), /returned an instance of Map/],
    ];
    for (const [value, message] of bad) {
      assert.throws(
        () => keyId(value as Key),
        (e: unknown) => isStreamError(e, 'USER_FUNCTION_FAILED') && message.test(e.message),
        String(value),
      );
    }
  });
});

function isDeepStrictEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}
