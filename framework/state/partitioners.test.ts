import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32 as zlibCrc32 } from 'node:zlib';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import type { PartitionerName } from '../api/keys.ts';
import { keyBytes, keyGroupOf, keyId } from './keys.ts';
import {
  builtInPartitions,
  checkPartitioner,
  crc32,
  fnv1a,
  PARTITIONER_NAMES,
  partitionerFromName,
  partitionerFunction,
  partitionerName,
  toPositive,
  wrongPartitionError,
} from './partitioners.ts';

const bytes = fc.uint8Array({ maxLength: 64 });
const count = fc.integer({ min: 1, max: 10_000 });

describe('crc32', () => {
  test("is zlib's CRC-32 (librdkafka's rd_crc32, Go's crc32.ChecksumIEEE)", () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926); // the CRC-32 check value
    assert.equal(crc32(new Uint8Array(0)), 0);
    fc.assert(fc.property(bytes, (b) => crc32(b) === zlibCrc32(b)));
  });
});

describe('fnv1a', () => {
  test("matches Go's hash/fnv New32a (librdkafka's rdfnv1a.c unit test vectors)", () => {
    const short = '1234';
    const long = 'PreAmbleWillBeRemoved,ThePrePartThatIs';
    const cases: [string, number][] = [
      ['kafka', 0xd33c4e1],
      ['giberish123456789', 0x77a58295],
      [short, 0x23bdd03],
      [short.slice(1), 0x2dea3cd2],
      [short.slice(2), 0x740fa83e],
      [short.slice(3), 0x310ca263],
      [long, 0x65cbd69c],
      [long.slice(1), 0x6e49c79a],
      [long.slice(2), 0x69eed356],
      [long.slice(3), 0x6abcc023],
      ['', 0x7ee3623b],
    ];
    // librdkafka's vectors are its rd_fnv1a: the absolute value of Go's int32(Sum32()).
    for (const [key, expected] of cases) assert.equal(Math.abs(fnv1a(Buffer.from(key))), expected, key);
  });

  test("the partition is Sarama's NewHashPartitioner and kafka-go's Hash: int32(h) % n, negated when negative", () => {
    const sarama = (b: Uint8Array, n: number) => {
      const p = fnv1a(b) % n; // JS % truncates like Go's
      return p < 0 ? -p : p;
    };
    const f = partitionerFunction('fnv1a');
    fc.assert(fc.property(bytes, count, (b, n) => f(b, n) === sarama(b, n)));
  });
});

describe('built-in partitioners', () => {
  test('murmur2 is the default and Kafka Java partition (toPositive(murmur2) % n)', () => {
    assert.equal(keyGroupOf('foobar', 1000), toPositive(-790332482) % 1000);
    assert.equal(keyGroupOf('foobar', 1000, 'murmur2'), toPositive(-790332482) % 1000);
  });

  test('every built-in gives an integer in [0, n), a pure function of the key bytes', () => {
    fc.assert(
      fc.property(fc.string(), count, (key, n) => {
        const at = builtInPartitions(keyBytes(keyId(key)), n);
        return PARTITIONER_NAMES.every((name) => {
          const g = keyGroupOf(keyId(key), n, name);
          return g === at[name] && Number.isInteger(g) && g >= 0 && g < n;
        });
      }),
    );
  });

  test('crc32 hashes the key the way kcat -K hashes the record key: UTF-8 of a string key', () => {
    const k = 'k\u00e4se-42';
    assert.equal(keyGroupOf(keyId(k), 7, 'crc32'), zlibCrc32(Buffer.from(k, 'utf8')) % 7);
    // A number key hashes its JSON, so it sits where a producer's record key "42" does.
    assert.equal(keyGroupOf(keyId(42), 7, 'crc32'), zlibCrc32(Buffer.from('42')) % 7);
  });

  test('a partitioner function is checked: its result must be an integer in [0, n)', () => {
    assert.equal(
      keyGroupOf('a', 4, (_k, n) => n - 1),
      3,
    );
    const bad = (_k: Uint8Array, n: number) => n;
    assert.throws(
      () => keyGroupOf('a', 4, bad),
      (e: unknown) =>
        isStreamError(e, 'CONFIG_INVALID') && /partitioner custom:bad returned 4 for 4/.test(e.message),
    );
  });

  test('options are checked, and names recorded in snapshots resolve back to built-ins only', () => {
    assert.throws(
      () => checkPartitioner('consistent_random', "KafkaSource 'in'"),
      (e: unknown) =>
        isStreamError(e, 'CONFIG_INVALID') &&
        e.message.includes(
          `KafkaSource 'in': partitioner is "consistent_random"; allowed: 'murmur2', 'crc32', 'fnv1a'`,
        ),
    );
    for (const name of PARTITIONER_NAMES) assert.equal(partitionerFromName(partitionerName(name)), name);
    assert.equal(partitionerFromName(undefined), 'murmur2'); // snapshots from before it was recorded
    function sarama(_k: Uint8Array, _n: number) {
      return 0;
    }
    assert.equal(partitionerName(sarama), 'custom:sarama');
    assert.equal(partitionerFromName('custom:sarama'), undefined);
  });
});

describe('wrong-partition diagnosis', () => {
  /** A key whose partitions among 8 under the built-ins are pairwise different. */
  function distinctKey(): { key: string; at: Record<PartitionerName, number> } {
    for (let i = 0; ; i++) {
      const key = `user-${i}`;
      const at = builtInPartitions(Buffer.from(key), 8);
      if (new Set(Object.values(at)).size === 3) return { key, at };
    }
  }

  test('names the partitioner that puts the key where the record is, and the source to set it on', () => {
    const { key, at } = distinctKey();
    const e = wrongPartitionError({
      operator: 'count',
      source: 'kafka-clicks',
      key,
      keyBytes: Buffer.from(key),
      partition: at.crc32,
      partitions: 8,
      partitioner: 'murmur2',
      keyGroup: at.murmur2,
    });
    assert.equal(e.code, 'KEY_GROUP_MISMATCH');
    assert.equal(e.permanent, true);
    assert.ok(
      e.message.startsWith(
        `operator 'count': key "${key}" came in partition ${at.crc32} of 8 of source 'kafka-clicks', but the stage's partitioner (murmur2) puts it in partition ${at.murmur2}. Partition ${at.crc32} is where crc32 (librdkafka's default: kcat,`,
      ),
      e.message,
    );
    assert.match(e.message, /set partitioner: 'crc32' on source 'kafka-clicks'\./);
    assert.match(e.message, /keyBy\(selector, \{ repartition: true \}\)/);
  });

  test('says so when no built-in puts the key there (explicit partition, another partitioner, another key)', () => {
    const { key, at } = distinctKey();
    const elsewhere = [...Array(8).keys()].find((p) => !Object.values(at).includes(p))!;
    const e = wrongPartitionError({
      operator: 'count',
      source: undefined,
      key,
      keyBytes: Buffer.from(key),
      partition: elsewhere,
      partitions: 8,
      partitioner: 'crc32',
      keyGroup: at.crc32,
    });
    assert.match(
      e.message,
      new RegExp(
        `No built-in partitioner puts it there \\(murmur2: ${at.murmur2}, crc32: ${at.crc32}, fnv1a: ${at.fnv1a}\\): the record was written into an explicit partition or by another partitioner \\(give the source a partitioner function\\)`,
      ),
    );
  });
});
