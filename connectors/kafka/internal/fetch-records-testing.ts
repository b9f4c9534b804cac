/**
 * kafkajs's record and record batch codecs, typed, for the tests of ./fetch-records.ts. Loads
 * ./kafkajs.ts first (so its patches are in place), and nothing of fetch-records.ts itself: the
 * wiring test relies on that.
 */
import { createRequire } from 'node:module';
import './kafkajs.ts';

const require = createRequire(import.meta.url);

/** One record as the producer encodes it (length-prefixed). */
export const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: {
  offsetDelta?: number;
  timestampDelta?: unknown;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, unknown>;
}) => { buffer: Buffer };
export const Decoder = require('kafkajs/src/protocol/decoder.js') as new (
  b: Buffer,
) => {
  offset: number;
  readVarIntBytes(): Buffer;
};
export const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: string): unknown };
export const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as {
  RecordBatch(o: Record<string, unknown>): Promise<{ buffer: Buffer }>;
};
/** kafkajs's record batch decoder: the one a fetch response goes through. */
export const decodeBatch = require('kafkajs/src/protocol/recordBatch/v0/decoder.js') as (
  d: unknown,
) => Promise<{ records: { offset: string; timestamp: string; headers: Record<string, unknown> }[] }>;
