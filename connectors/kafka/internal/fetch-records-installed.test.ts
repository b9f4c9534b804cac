/**
 * The wiring: importing the project's kafkajs module (and nothing of fetch-records.ts directly, in a
 * process of its own) puts the record decoder in place before kafkajs's record batch decoder loads.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Decoder, decodeBatch, Long, Record, RecordBatch } from './fetch-records-testing.ts';

test("kafkajs's record batch decoder uses the project's record decoder once ./kafkajs.ts is imported", async () => {
  const batch = await RecordBatch({
    compression: 0,
    firstOffset: Long.fromValue('4000'),
    firstTimestamp: 1765000000000,
    maxTimestamp: 1765000000000,
    records: [
      Record({
        offsetDelta: 0,
        timestampDelta: 0,
        key: null,
        value: Buffer.from('a'),
        headers: { constructor: Buffer.from('x') },
      }),
      Record({ offsetDelta: 1, timestampDelta: 5, key: null, value: Buffer.from('b') }),
    ],
  });
  const decoded = await decodeBatch(new Decoder(batch.buffer));
  assert.deepEqual(
    decoded.records.map((r) => [r.offset, r.timestamp]),
    [
      ['4000', '1765000000000'],
      ['4001', '1765000000005'],
    ],
  );
  // Only the project's decoder gives a header named "constructor" its value (kafkajs: [Object, value]).
  assert.deepEqual(decoded.records[0]!.headers, { constructor: Buffer.from('x') });
});
