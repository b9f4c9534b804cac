import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError, StreamError } from '../../../framework/index.ts';
import { kafkaEvents } from '../events.ts';
import { KafkaSource } from './kafka-source.ts';
import { DEAD_LETTER_TAG, type DeadLetter, type KafkaRecordIn } from './partition-reader.ts';

const origin: KafkaRecordIn = {
  topic: 'clicks',
  partition: 3,
  offset: '1207',
  key: Buffer.from('user-17'),
  value: Buffer.from('{"user":"user-17"}'),
  headers: {},
  timestamp: 1,
};
const error = new StreamError('KEY_GROUP_MISMATCH', 'operator \'count\': key "user-17" came in partition 3');
const rejection = (o: Partial<KafkaRecordIn> | undefined, key = 'user-17') => ({
  error,
  keyBytes: Buffer.from(key),
  origin: o === undefined ? undefined : { ...origin, ...o },
  partition: 3,
});

describe('KafkaSource options', () => {
  test('partitioner and the record-error policies are checked when the source is made', () => {
    assert.equal(new KafkaSource({ topic: 't' }).partitioner, 'murmur2');
    assert.equal(new KafkaSource({ topic: 't', partitioner: 'crc32' }).partitioner, 'crc32');
    assert.throws(
      () => new KafkaSource({ topic: 't', partitioner: 'consistent_random' as 'crc32' }),
      (e: unknown) =>
        isStreamError(e, 'CONFIG_INVALID') &&
        /KafkaSource 'kafka-t': partitioner is "consistent_random"/.test(e.message),
    );
    assert.throws(
      () => new KafkaSource({ topic: 't', onWrongPartition: 'ignore' as 'skip' }),
      (e: unknown) =>
        isStreamError(e, 'CONFIG_INVALID') &&
        e.message ===
          `KafkaSource 'kafka-t': onWrongPartition is "ignore"; allowed: 'fail', 'skip', 'dead-letter'`,
    );
  });
});

describe('a record a keyed operator found in the wrong partition', () => {
  test("'fail' (default): the error names the record", () => {
    const v = new KafkaSource({ topic: 'clicks' }).rejected(rejection({}));
    assert.equal(v.kind, 'fail');
    assert.ok(v.kind === 'fail' && isStreamError(v.error, 'KEY_GROUP_MISMATCH'));
    assert.equal(v.kind === 'fail' && v.error.message, `record clicks/3@1207: ${error.message}`);
  });

  test('the origin as the reader hands it out (the fetched kafkajs message) is named the same way', async () => {
    const message = {
      offset: '1207',
      key: Buffer.from('user-17'),
      value: Buffer.from('{"user":"user-17"}'),
      timestamp: '1',
      headers: {},
      attributes: 0,
    };
    const s = new KafkaSource({ topic: 'clicks', onWrongPartition: 'dead-letter' });
    const warned = new Promise<Error>((r) => process.once('warning', r));
    const v = s.rejected({ error, keyBytes: Buffer.from('user-17'), origin: message, partition: 3 });
    assert.match((await warned).message, /record clicks\/3@1207: /);
    assert.equal(v.kind, 'emit');
    const d = (v.kind === 'emit' ? v.value : undefined) as DeadLetter;
    assert.deepEqual(
      [d.topic, d.partition, d.offset, String(d.key), String(d.value)],
      ['clicks', 3, '1207', 'user-17', '{"user":"user-17"}'],
    );
    assert.equal(d.error, `record clicks/3@1207: ${error.message}`);
  });

  test('says when the Kafka key is not the selected key, or there is none: no partitioner setting can help', () => {
    const s = new KafkaSource({ topic: 'clicks' });
    const other = s.rejected(rejection({ key: Buffer.from('session-9') }));
    assert.match(
      other.kind === 'fail' ? other.error.message : '',
      /Its Kafka key is "session-9", not the selected key: the topic is not keyed by this key, so no partitioner setting can help; repartition it/,
    );
    const none = s.rejected(rejection({ key: null }));
    assert.match(
      none.kind === 'fail' ? none.error.message : '',
      /The record has no Kafka key: producers spread keyless records/,
    );
  });

  test("'skip': counted, warned about and reported as an event", async () => {
    const s = new KafkaSource({ topic: 'clicks', uid: 'c', onWrongPartition: 'skip' });
    const events: unknown[] = [];
    const on = (e: unknown) => events.push(e);
    kafkaEvents.on('wrong-partition', on);
    const warned = new Promise<Error>((r) => process.once('warning', r));
    try {
      assert.deepEqual(s.rejected(rejection({})), { kind: 'skip' });
    } finally {
      kafkaEvents.off('wrong-partition', on);
    }
    assert.equal(s.wrongPartition, 1);
    assert.deepEqual(events, [{ source: 'c', topic: 'clicks', partition: 3, policy: 'skip' }]);
    const w = await warned;
    assert.equal(w.name, 'RecordPartitionWarning');
    assert.match(w.message, /^Kafka source 'c' \(skip\): record clicks\/3@1207: /);
  });

  test("'dead-letter': the record as read, with code KEY_GROUP_MISMATCH, on DEAD_LETTER_TAG", () => {
    const s = new KafkaSource({ topic: 'clicks', onWrongPartition: 'dead-letter' });
    process.once('warning', () => {});
    const v = s.rejected(rejection({}));
    assert.equal(v.kind, 'emit');
    if (v.kind !== 'emit') return;
    assert.equal(v.tag, DEAD_LETTER_TAG);
    const d = v.value as DeadLetter;
    assert.deepEqual(
      [d.topic, d.partition, d.offset, String(d.key), String(d.value), d.code],
      ['clicks', 3, '1207', 'user-17', '{"user":"user-17"}', 'KEY_GROUP_MISMATCH'],
    );
    assert.equal(d.error, `record clicks/3@1207: ${error.message}`);
  });
});
