/**
 * Cheaper record encoding for kafkajs 2.2.4's producer, byte for byte the same output. Its
 * `src/protocol/encoder.js` costs the job's send path, per record (issue 15, the exactly-once job's
 * CPU profile after the grouping fix: `Buffer` allocations under the encoder 6 %, varints 5 %):
 *
 * - `new Encoder()` (one per record, in `recordBatch/record/v0/index.js`) zero-fills a fresh 512-byte
 *   `Buffer.alloc`, and every growth allocates again: a new ArrayBuffer each, about 1 µs. Here they
 *   come from Node's pool (`Buffer.allocUnsafe`). Safe because an encoder's bytes are only ever read
 *   up to what it wrote (`buffer` is `buf.slice(0, offset)`, and nothing else in kafkajs reads `buf`).
 * - `writeUVarInt` builds an array and a `Buffer.from` of it for every varint (about five per record);
 *   here the bytes go straight into the buffer.
 * - `writeVarLong` and `sizeOfVarLong` go through kafkajs's BigInt-backed `Long` for every record's
 *   timestamp delta; a number within ±2^30 (always, for deltas within one send) takes the 32-bit path,
 *   whose zigzag and varint bytes are the same. Anything else goes the upstream way.
 *
 * The constructor is replaced in the require cache (the other modules take it with `require` when
 * they load), so this module must run before kafkajs is loaded: ./kafkajs.ts imports it first. The
 * methods are patched on the class, which works at any time. Import it for its effect.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const encoderPath = require.resolve('kafkajs/src/protocol/encoder.js');

interface KafkajsEncoder {
  buf: Buffer;
  offset: number;
  ensureAvailable(length: number): void;
  writeUVarInt(value: number): KafkajsEncoder;
  writeVarLong(value: unknown): KafkajsEncoder;
}

interface EncoderClass {
  new (initialSize?: number): KafkajsEncoder;
  prototype: KafkajsEncoder;
  nextPowerOfTwo(value: number): number;
  sizeOfVarLong(value: unknown): number;
}

/** A number whose zigzag-encoded 64-bit varint equals its 32-bit one (and fits an unsigned 32-bit). */
function small(value: unknown): value is number {
  return typeof value === 'number' && value >= -0x40000000 && value <= 0x3fffffff && Number.isInteger(value);
}

function writeUVarInt(this: KafkajsEncoder, value: number): KafkajsEncoder {
  this.ensureAvailable(5);
  const buf = this.buf;
  let o = this.offset;
  let v = value;
  while ((v & 0xffffff80) !== 0) {
    buf[o++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[o++] = v & 0x7f;
  this.offset = o;
  return this;
}

function ensureAvailable(this: KafkajsEncoder, length: number): void {
  if (this.offset + length <= this.buf.length) return;
  const grown = Buffer.allocUnsafe(Encoder.nextPowerOfTwo(this.offset + length));
  this.buf.copy(grown, 0, 0, this.offset);
  this.buf = grown;
}

/** kafkajs's modules that loaded before this one took the upstream constructor. */
const preloaded = (require.cache as Record<string, unknown>)[encoderPath] !== undefined;
const Encoder = require(encoderPath) as EncoderClass;
const upstreamVarLong = Encoder.prototype.writeVarLong;
const upstreamSizeOfVarLong = Encoder.sizeOfVarLong;

/** Whether the patches are in place: the methods, and the constructor every kafkajs module gets. */
export function encodingInstalled(): boolean {
  const cache = require.cache as Record<string, { exports: unknown } | undefined>;
  return (
    !preloaded &&
    Encoder.prototype.writeUVarInt === writeUVarInt &&
    cache[encoderPath]?.exports === PooledEncoder
  );
}

Encoder.prototype.writeUVarInt = writeUVarInt;
Encoder.prototype.ensureAvailable = ensureAvailable;
Encoder.prototype.writeVarLong = function writeVarLong(this: KafkajsEncoder, value: unknown) {
  if (small(value)) return this.writeUVarInt(((value << 1) ^ (value >> 31)) >>> 0);
  return upstreamVarLong.call(this, value);
};
Encoder.sizeOfVarLong = function sizeOfVarLong(this: EncoderClass, value: unknown): number {
  if (!small(value)) return upstreamSizeOfVarLong.call(this, value);
  let v = ((value << 1) ^ (value >> 31)) >>> 0;
  let bytes = 1;
  while ((v & 0xffffff80) !== 0) {
    bytes++;
    v >>>= 7;
  }
  return bytes;
};

/**
 * kafkajs's `Encoder` with a pooled initial buffer: a plain constructor function over the same
 * prototype and statics (`new` gives an object whose class is Encoder in every respect but the
 * constructor that made it).
 */
function PooledEncoder(this: KafkajsEncoder, initialSize = 511): void {
  this.buf = Buffer.allocUnsafe(Encoder.nextPowerOfTwo(initialSize));
  this.offset = 0;
}
PooledEncoder.prototype = Encoder.prototype;
Object.setPrototypeOf(PooledEncoder, Encoder);

const cache = require.cache as Record<string, { exports: unknown } | undefined>;
const entry = cache[encoderPath];
if (entry !== undefined) entry.exports = PooledEncoder;
