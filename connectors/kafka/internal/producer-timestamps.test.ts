import assert from 'node:assert/strict';
import { test } from 'node:test';
import './kafkajs.ts';
import { createRequire } from 'node:module';
import { batchTimes, timestampsInstalled, upstreamProduceRequestV3 } from './producer-timestamps.ts';

const require = createRequire(import.meta.url);
type Build = (a: Record<string, unknown>) => { encode(): Promise<{ buffer: Buffer }> };
/** What kafkajs's producer gets when it asks for the v3 request (and v4..v7, which wrap it). */
const installed = require('kafkajs/src/protocol/requests/produce/v3/request.js') as Build;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };

function request(topicData: unknown, transactionalId: string | null = 'tx-1') {
  return {
    acks: -1,
    timeout: 30_000,
    transactionalId,
    producerId: Long.fromValue(4711),
    producerEpoch: 3,
    topicData,
  };
}

async function bytes(build: Build, args: Record<string, unknown>): Promise<Buffer> {
  return (await build(args).encode()).buffer;
}

test("the Produce request is byte for byte kafkajs's where kafkajs is right: timestamps, keys, headers, several partitions and topics", async (t) => {
  t.mock.method(Date, 'now', () => 1_765_000_000_000);
  const ts = (n: number) => String(1_765_000_000_000 + n);
  const cases: [string, unknown][] = [
    [
      'every record with a timestamp, out of order, with repeats',
      [
        {
          topic: 'out',
          partitions: [
            {
              partition: 0,
              firstSequence: 7,
              messages: [
                { key: 'k1', value: '{"a":1}', timestamp: ts(5) },
                { key: 'k2', value: '{"a":2}', timestamp: ts(5) },
                { key: 'k3', value: '{"a":3}', timestamp: ts(-40) },
                {
                  key: null,
                  value: Buffer.from('raw'),
                  timestamp: ts(900),
                  headers: { h: 'v', m: ['a', 'b'] },
                },
              ],
            },
            { partition: 3, messages: [{ key: Buffer.from('k9'), value: null, timestamp: ts(1) }] },
          ],
        },
        {
          topic: 'other',
          partitions: [{ partition: 1, messages: [{ key: 'x', value: 'y', timestamp: ts(0) }] }],
        },
      ],
    ],
    [
      "no timestamps: the request's time",
      [
        {
          topic: 'out',
          partitions: [{ partition: 2, messages: [{ key: 'a', value: 'b' }, { value: 'c' }] }],
        },
      ],
    ],
    [
      'some with, some without',
      [
        {
          topic: 'out',
          partitions: [
            {
              partition: 0,
              messages: [{ value: 'a', timestamp: ts(-3) }, { value: 'b' }, { value: 'c', timestamp: ts(2) }],
            },
          ],
        },
      ],
    ],
  ];
  for (const [what, topicData] of cases) {
    for (const txn of ['tx-1', null]) {
      const args = request(topicData, txn);
      assert.deepEqual(
        await bytes(installed, args),
        await bytes(upstreamProduceRequestV3, args),
        `${what} (${txn})`,
      );
    }
  }
  assert.equal(timestampsInstalled(), true);
  assert.notEqual(installed, upstreamProduceRequestV3);
});

test('batch times: numeric first and largest (kafkajs compares strings), the request time for missing ones, bad timestamps refused', () => {
  // Different digit counts: upstream's string sort would take '1000' as the first and '999' as the largest.
  assert.deepEqual(batchTimes([{ timestamp: '1000' }, { timestamp: '999' }], 5), {
    first: 999,
    max: 1000,
    deltas: [1, 0],
  });
  assert.deepEqual(batchTimes([{ timestamp: 20 }, {}, { timestamp: null }, { timestamp: '' }], 50), {
    first: 20,
    max: 20,
    deltas: [0, 30, 30, 30],
  });
  assert.deepEqual(batchTimes([{}, {}], 77), { first: 77, max: 77, deltas: [0, 0] });
  // -1 is Kafka's "no timestamp" (old-format inputs carry it): passed on, as upstream does.
  assert.deepEqual(batchTimes([{ timestamp: '5' }, { timestamp: '-1' }], 9), {
    first: -1,
    max: 5,
    deltas: [6, 0],
  });
  assert.deepEqual(batchTimes([], 77), { first: 77, max: 77, deltas: [] });
  for (const bad of ['12abc', 'NaN', 1.5, Number.POSITIVE_INFINITY])
    assert.throws(
      () => batchTimes([{ timestamp: '1' }, { timestamp: bad }], 0),
      /timestamp must be milliseconds since the epoch.*got/,
    );
});
