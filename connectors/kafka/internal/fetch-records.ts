/**
 * kafkajs 2.2.4's decoder of one fetched record (`src/protocol/recordBatch/record/v0/decoder.js`)
 * does 64-bit arithmetic on Long objects for every record: the batch's first offset and first
 * timestamp, which kafkajs keeps as decimal strings, are parsed into Longs (`Long.fromString`), the
 * record's deltas added, and the sums printed again (`toString`); its varlong timestamp delta is read
 * byte by byte into Longs; its headers are folded with an object spread per header. In a profile of
 * the count job that is the largest part of fetch decoding after the bytes themselves.
 *
 * `decodeRecord` makes the same object (the same fields, in the same order, with the same values)
 * with plain numbers: a batch's first offset and timestamp are parsed once, a record's offset and
 * timestamp printed from their sums while those are safe integers (offsets below 2^53, timestamps in
 * milliseconds: always, in practice), its timestamp delta read as a number while it fits 53 bits.
 * Anything beyond that takes kafkajs's own Long path, so the result does not differ
 * (fetch-records.test.ts compares the two over encoded records, including the fallbacks), with one
 * exception, a fix: a header named like a member of `Object.prototype` (`constructor`, `toString`,
 * `__proto__`) gets its value, where kafkajs, looking the key up through the prototype, made it an
 * array of the inherited member and the value.
 *
 * Installed by ./kafkajs.ts before kafkajs loads (the record batch decoder takes the record decoder
 * with `require` when it is first loaded), as ./install-read-committed.ts installs the filter.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface KafkaDecoder {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarInt(): number;
  readVarLong(): LongValue;
  readVarIntBytes(): Buffer | null;
  readVarIntString(): string | null;
}
interface LongValue {
  add(other: LongValue | number): LongValue;
  toString(): string;
}
interface LongClass {
  fromValue(v: string | number | LongValue): LongValue;
}

/** What kafkajs's record batch decoder hands each record (`recordContext` plus `magicByte`). */
export interface BatchContext {
  readonly firstOffset: string;
  readonly firstTimestamp: string;
  readonly magicByte: number;
  readonly isControlBatch?: boolean;
  readonly timestampType: number;
  readonly maxTimestamp: string;
}

const Long = require('kafkajs/src/utils/long.js') as LongClass;
const { LOG_APPEND_TIME } = require('kafkajs/src/protocol/timestampTypes.js') as { LOG_APPEND_TIME: number };

/** A batch's first offset and timestamp as numbers (undefined: not a safe integer), for its records. */
let lastContext: BatchContext | undefined;
let baseOffset: number | undefined;
let baseTimestamp: number | undefined;

function safe(decimal: string): number | undefined {
  const n = Number(decimal);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** `base + delta` as kafkajs prints it: from numbers while exact, else with its Longs. */
function sum(base: number | undefined, decimal: string, delta: number | LongValue): string {
  if (base !== undefined && typeof delta === 'number') {
    const s = base + delta;
    if (Number.isSafeInteger(s)) return String(s);
  }
  return Long.fromValue(decimal).add(delta).toString();
}

/**
 * A zigzag varlong as a number, or undefined when it does not fit 53 bits (the decoder's offset is
 * then where it was, for kafkajs's own `readVarLong`).
 */
function readVarLongNumber(d: KafkaDecoder): number | undefined {
  const buf = d.buffer;
  const start = d.offset;
  let at = start;
  let result = 0;
  let scale = 1;
  let byte: number;
  do {
    byte = buf[at++]!;
    result += (byte & 0x7f) * scale;
    scale *= 128;
  } while (byte >= 0x80 && at - start < 8);
  // Eight bytes hold 56 bits: a longer varlong, or a value past 2^53, goes to kafkajs.
  if (byte >= 0x80 || result > Number.MAX_SAFE_INTEGER) return undefined;
  d.offset = at;
  return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
}

/** kafkajs's record decoder, with numbers (see above). */
export function decodeRecord(decoder: KafkaDecoder, batchContext: BatchContext = {} as BatchContext) {
  const {
    firstOffset,
    firstTimestamp,
    magicByte,
    isControlBatch = false,
    timestampType,
    maxTimestamp,
  } = batchContext;
  if (batchContext !== lastContext) {
    lastContext = batchContext;
    baseOffset = safe(firstOffset);
    baseTimestamp = safe(firstTimestamp);
  }
  const attributes = decoder.readInt8();
  const timestampDelta = readVarLongNumber(decoder) ?? decoder.readVarLong();
  const timestamp =
    timestampType === LOG_APPEND_TIME && maxTimestamp
      ? maxTimestamp
      : sum(baseTimestamp, firstTimestamp, timestampDelta);
  const offset = sum(baseOffset, firstOffset, decoder.readVarInt());
  const key = decoder.readVarIntBytes();
  const value = decoder.readVarIntBytes();
  const count = decoder.readVarInt();
  const headers: Record<string, Buffer | null | (Buffer | null)[]> = {};
  for (let i = 0; i < count; i++) {
    const k = String(decoder.readVarIntString());
    const v = decoder.readVarIntBytes();
    const had = Object.hasOwn(headers, k) ? headers[k] : undefined;
    const next = had === undefined ? v : Array.isArray(had) ? had.concat([v]) : [had, v];
    // An own property, as kafkajs's spread makes it, also for the key "__proto__".
    if (k === '__proto__') {
      Object.defineProperty(headers, k, {
        value: next,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else headers[k] = next;
  }
  return {
    magicByte,
    attributes,
    timestamp,
    offset,
    key,
    value,
    headers,
    isControlRecord: isControlBatch,
    batchContext,
  };
}

const recordPath = require.resolve('kafkajs/src/protocol/recordBatch/record/v0/decoder.js');
const batchPath = require.resolve('kafkajs/src/protocol/recordBatch/v0/decoder.js');
const cache = require.cache as Record<string, { exports: unknown } | undefined>;

/** kafkajs's own record decoder (for the comparison test). */
export const upstreamDecodeRecord = require(recordPath) as typeof decodeRecord;

// Only before kafkajs's record batch decoder took the record decoder (fetch-records-installed.test.ts).
if (cache[batchPath] === undefined) cache[recordPath]!.exports = decodeRecord;
