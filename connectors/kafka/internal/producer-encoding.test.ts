import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import './kafkajs.ts';
import { encodingInstalled } from './producer-encoding.ts';

const require = createRequire(import.meta.url);
type Encoder = {
  buffer: Buffer;
  buf: Buffer;
  writeUVarInt(v: number): Encoder;
  writeVarLong(v: unknown): Encoder;
};
const Encoder = require('kafkajs/src/protocol/encoder.js') as {
  new (size?: number): Encoder;
  sizeOfVarLong(v: unknown): number;
};
const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (o: {
  offsetDelta: number;
  timestampDelta: unknown;
  key: unknown;
  value: unknown;
  headers?: Record<string, unknown>;
}) => Encoder;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };

/** kafkajs 2.2.4's writeUVarInt and writeVarLong/sizeOfVarLong as they are (zigzag64 via BigInt). */
function upstreamUVarInt(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  while ((v & 0xffffff80) !== 0) {
    bytes.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  bytes.push(v & 0x7f);
  return Buffer.from(bytes);
}
function upstreamVarLong(value: number | bigint | string): Buffer {
  let v = BigInt.asUintN(64, (BigInt(value) << 1n) ^ (BigInt(value) >> 63n));
  const bytes: number[] = [];
  while ((v & 0xffffffffffffff80n) !== 0n) {
    bytes.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  bytes.push(Number(v));
  return Buffer.from(bytes);
}

const edges = [
  0,
  1,
  -1,
  63,
  64,
  -64,
  -65,
  127,
  128,
  8191,
  8192,
  2 ** 20,
  -(2 ** 20),
  2 ** 30 - 1,
  -(2 ** 30),
  2 ** 30,
  -(2 ** 30) - 1,
  2 ** 31 - 1,
  -(2 ** 31),
  2 ** 40,
  -(2 ** 40),
  Number.MAX_SAFE_INTEGER,
];

test('varints and varlongs: the same bytes and sizes as upstream, small numbers and the rest', () => {
  let seed = 11;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const values = [
    ...edges,
    ...Array.from({ length: 2000 }, () => Math.round((random() - 0.5) * 2 ** (1 + random() * 52))),
  ];
  for (const v of values) {
    const long = new Encoder().writeVarLong(v).buffer;
    assert.deepEqual(long, upstreamVarLong(v), `writeVarLong(${v})`);
    assert.equal(Encoder.sizeOfVarLong(v), long.length, `sizeOfVarLong(${v})`);
    assert.deepEqual(new Encoder().writeVarLong(Long.fromValue(String(v))).buffer, long, `a Long ${v}`);
    if (v >= 0 && v <= 0xffffffff) assert.deepEqual(new Encoder().writeUVarInt(v).buffer, upstreamUVarInt(v));
  }
});

test("a record's bytes are kafkajs's, and its encoder's buffer comes from the pool", () => {
  const r = Record({
    offsetDelta: 3,
    timestampDelta: 1234,
    key: 'k7',
    value: JSON.stringify({ k: 'k7', n: 1 }),
    headers: { h: 'v' },
  });
  // Attributes 0, timestamp delta 1234 (zigzag 2468), offset delta 3 (6), key, value, one header.
  const body = Buffer.concat([
    Buffer.from([0]),
    upstreamVarLong(1234),
    upstreamUVarInt(6),
    upstreamUVarInt(4),
    Buffer.from('k7'),
    upstreamUVarInt(2 * 16),
    Buffer.from('{"k":"k7","n":1}'),
    upstreamUVarInt(2),
    upstreamUVarInt(2),
    Buffer.from('h'),
    upstreamUVarInt(2),
    Buffer.from('v'),
  ]);
  assert.deepEqual(r.buffer, Buffer.concat([upstreamUVarInt(2 * body.length), body]));
  assert.ok(r.buf.buffer.byteLength > r.buf.length, "not a fresh ArrayBuffer per encoder (Node's pool)");
  assert.equal(encodingInstalled(), true);
});
