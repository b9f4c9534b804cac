import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BatchContext, decodeRecord, upstreamDecodeRecord } from './fetch-records.ts';
import { Decoder, Long, Record } from './fetch-records-testing.ts';

/** Both decoders over the same encoded record: their results and how far each read. */
function both(record: Parameters<typeof Record>[0], context: BatchContext) {
  const bytes = Record(record).buffer;
  const run = (decode: typeof decodeRecord) => {
    const outer = new Decoder(bytes);
    const d = new Decoder(outer.readVarIntBytes());
    return { out: decode(d as never, context), read: d.offset };
  };
  return { ours: run(decodeRecord), theirs: run(upstreamDecodeRecord) };
}

const context = (o: Partial<BatchContext> = {}): BatchContext => ({
  firstOffset: '4711',
  firstTimestamp: '1765000000000',
  magicByte: 2,
  isControlBatch: false,
  timestampType: 0,
  maxTimestamp: '1765000000500',
  ...o,
});

const headerOf = (entries: [string, unknown][]) => {
  const h: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(h, k, { value: v, enumerable: true });
  return h;
};

describe("the fetched-record decoder gives kafkajs's records, with numbers", () => {
  const records: [string, Parameters<typeof Record>[0]][] = [
    ['plain', { offsetDelta: 3, timestampDelta: 17, key: Buffer.from('k1'), value: Buffer.from('{"n":1}') }],
    ['null key and value', { offsetDelta: 0, timestampDelta: 0, key: null, value: null }],
    [
      'a negative timestamp delta',
      { offsetDelta: 9, timestampDelta: -250, key: null, value: Buffer.from('v') },
    ],
    [
      'a large safe delta',
      { offsetDelta: 2 ** 30, timestampDelta: 2 ** 45, key: null, value: Buffer.from('v') },
    ],
    [
      'a timestamp delta past 2^53 (kafkajs Long path)',
      { timestampDelta: Long.fromValue('9007199254740993'), key: null, value: Buffer.from('v') },
    ],
    [
      'a negative timestamp delta past -2^53',
      { timestampDelta: Long.fromValue('-9007199254740995'), key: null, value: Buffer.from('v') },
    ],
    [
      'headers: one, repeated',
      {
        key: Buffer.from('k'),
        value: Buffer.from('v'),
        headers: headerOf([
          ['a', Buffer.from('1')],
          ['b', [Buffer.from('2'), Buffer.from('3'), Buffer.from('4')]],
          ['c', [Buffer.from('5'), Buffer.from('6')]],
        ]),
      },
    ],
  ];
  const contexts: [string, BatchContext][] = [
    ['create time', context()],
    ['an offset past 2^53 (kafkajs Long path)', context({ firstOffset: '9007199254740990' })],
    ['a large int64 offset', context({ firstOffset: '9223372036854775000' })],
    ['no timestamp (-1)', context({ firstTimestamp: '-1' })],
    ['log append time', context({ timestampType: 1 })],
    ['a control batch', context({ isControlBatch: true })],
  ];
  for (const [what, record] of records) {
    for (const [where, ctx] of contexts) {
      test(`${what}, ${where}`, () => {
        const { ours, theirs } = both(record, ctx);
        assert.deepStrictEqual(ours.out, theirs.out);
        assert.equal(ours.read, theirs.read, 'the same bytes read');
      });
    }
  }

  test("records of two batches in turn each take their own batch's first offset", () => {
    const a = context({ firstOffset: '100' });
    const b = context({ firstOffset: '9007199254740990' });
    for (const ctx of [a, b, a, b]) {
      const { ours, theirs } = both({ offsetDelta: 7, timestampDelta: 1, key: null, value: null }, ctx);
      assert.equal(ours.out.offset, theirs.out.offset);
    }
  });

  test('a header named like an Object.prototype member gets its value (kafkajs made it [inherited member, value])', () => {
    for (const name of ['constructor', 'toString', '__proto__']) {
      const { ours, theirs } = both(
        { key: null, value: null, headers: headerOf([[name, Buffer.from('c')]]) },
        context(),
      );
      assert.deepEqual(Object.entries(ours.out.headers), [[name, Buffer.from('c')]], name);
      assert.equal(Object.getPrototypeOf(ours.out.headers), Object.prototype, name);
      const theirValue = Object.getOwnPropertyDescriptor(theirs.out.headers, name)?.value;
      assert.ok(Array.isArray(theirValue) && theirValue.length === 2, `the defect this fixes (${name})`);
    }
  });
});
