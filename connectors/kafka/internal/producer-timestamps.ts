/**
 * kafkajs 2.2.4's Produce request (v3, which v4..v7 wrap) with a cheaper per-partition encoder for
 * records that carry timestamps. Upstream, for every record batch, sorts the records' timestamp
 * strings (lexicographically), then builds each record from a spread copy of its message and a
 * string-minus-string delta: two string-to-number conversions and an object per record. The job's
 * sink sets every record's timestamp (the input record's, as Kafka Streams does), so it paid that on
 * every output record (issue 15: about 4 % of the count job's CPU; a loop without timestamps pays
 * none of it).
 *
 * Here each distinct timestamp string is converted once, the first and largest timestamps are found
 * by comparing numbers in one pass, and records are built without the spread. The bytes are the
 * same as upstream's whenever upstream is right: it orders timestamps as strings, so timestamps of
 * different digit counts (before 2001-09-09) gave it a wrong first and largest timestamp; here they
 * are the numeric smallest and largest. A record without a timestamp (null, undefined, '') takes the
 * request's time, as upstream. A timestamp that is not a number is refused with an error naming it,
 * where upstream wrote NaN into the batch.
 *
 * Installed by replacing the module in the require cache before kafkajs's producer first loads it
 * (it is required lazily, per request version): ./kafkajs.ts imports this module before kafkajs.
 * Import it for its effect.
 */
import { createRequire } from 'node:module';
import { StreamError } from '../../../framework/core.ts';

const require = createRequire(import.meta.url);

interface Encoder {
  writeInt16(v: number): Encoder;
  writeInt32(v: number): Encoder;
  writeString(s: string | null): Encoder;
  writeArray(a: unknown[]): Encoder;
  writeEncoder(e: Encoder): Encoder;
  size(): number;
}
type EncoderClass = new () => Encoder;
interface OutMessage {
  readonly key?: unknown;
  readonly value?: unknown;
  readonly headers?: unknown;
  readonly timestamp?: string | number | null;
}
interface PartitionData {
  readonly partition: number;
  readonly messages: readonly OutMessage[];
  readonly firstSequence?: number;
}
interface TopicData {
  readonly topic: string;
  readonly partitions: readonly PartitionData[];
}
interface RequestArgs {
  readonly acks: number;
  readonly timeout: number;
  readonly transactionalId?: string | null;
  readonly producerId?: unknown;
  readonly producerEpoch?: number;
  readonly compression?: number;
  readonly topicData: readonly TopicData[];
}

const requestPath = require.resolve('kafkajs/src/protocol/requests/produce/v3/request.js');
const preloaded = (require.cache as Record<string, unknown>)[requestPath] !== undefined;
const Encoder = require('kafkajs/src/protocol/encoder.js') as EncoderClass;
const Long = require('kafkajs/src/utils/long.js') as { fromInt(v: number): unknown };
const { Produce: apiKey } = require('kafkajs/src/protocol/requests/apiKeys.js') as { Produce: number };
const { Types } = require('kafkajs/src/protocol/message/compression/index.js') as {
  Types: { None: number };
};
const Record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: {
  offsetDelta: number;
  timestampDelta: number;
  key: unknown;
  value: unknown;
  headers: unknown;
}) => Encoder;
const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as {
  RecordBatch: (o: Record<string, unknown>) => Promise<Encoder>;
};

/** The first (smallest) and largest timestamp of a batch, and each record's delta from the first. */
export function batchTimes(
  messages: readonly OutMessage[],
  now: number,
): { first: number; max: number; deltas: number[] } {
  const n = messages.length;
  // Each record's time first (NaN: none, the request's time), then its delta from the first.
  const deltas: number[] = new Array(n);
  let first = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let lastText: unknown;
  let last = 0;
  for (let i = 0; i < n; i++) {
    const t = messages[i]!.timestamp;
    if (t === undefined || t === null || t === '') {
      deltas[i] = Number.NaN;
      continue;
    }
    if (t !== lastText) {
      last = typeof t === 'number' ? t : Number(t);
      if (!Number.isSafeInteger(last))
        throw new StreamError(
          'CONFIG_INVALID',
          `a Kafka record's timestamp must be milliseconds since the epoch (an integer); got ${JSON.stringify(t)}`,
        );
      lastText = t;
    }
    deltas[i] = last;
    if (last < first) first = last;
    if (last > max) max = last;
  }
  if (first === Number.POSITIVE_INFINITY) first = max = now;
  for (let i = 0; i < n; i++) {
    const t = deltas[i]!;
    deltas[i] = (Number.isNaN(t) ? now : t) - first;
  }
  return { first, max, deltas };
}

async function encodePartition(
  compression: number,
  data: PartitionData,
  transactionalId: string | null,
  producerId: unknown,
  producerEpoch: number,
): Promise<Encoder> {
  const messages = data.messages;
  const { first, max, deltas } = batchTimes(messages, Date.now());
  const records: Encoder[] = new Array(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    records[i] = Record({
      offsetDelta: i,
      timestampDelta: deltas[i]!,
      key: m.key,
      value: m.value,
      headers: m.headers,
    });
  }
  const recordBatch = await RecordBatch({
    compression,
    records,
    firstTimestamp: first,
    maxTimestamp: max,
    producerId,
    producerEpoch,
    firstSequence: data.firstSequence,
    transactional: !!transactionalId,
    lastOffsetDelta: records.length - 1,
  });
  return new Encoder().writeInt32(data.partition).writeInt32(recordBatch.size()).writeEncoder(recordBatch);
}

/** Produce Request (Version: 3) => transactional_id acks timeout [topic [partition record_set]], as upstream. */
function produceRequestV3({
  acks,
  timeout,
  transactionalId = null,
  producerId = Long.fromInt(-1),
  producerEpoch = 0,
  compression = Types.None,
  topicData,
}: RequestArgs) {
  return {
    apiKey,
    apiVersion: 3,
    apiName: 'Produce',
    expectResponse: () => acks !== 0,
    encode: async () => {
      const topics: Encoder[] = [];
      for (const t of topicData) {
        const partitions: Encoder[] = [];
        for (const p of t.partitions)
          partitions.push(await encodePartition(compression, p, transactionalId, producerId, producerEpoch));
        topics.push(new Encoder().writeString(t.topic).writeArray(partitions));
      }
      return new Encoder()
        .writeString(transactionalId)
        .writeInt16(acks)
        .writeInt32(timeout)
        .writeArray(topics);
    },
  };
}

const cache = require.cache as Record<string, { exports: unknown } | undefined>;
require(requestPath);
const entry = cache[requestPath]!;
const upstream = entry.exports;
entry.exports = produceRequestV3;

/** Whether every Produce request kafkajs builds goes through this module (it loaded no version first). */
export function timestampsInstalled(): boolean {
  return !preloaded && cache[requestPath]?.exports === produceRequestV3;
}

/** kafkajs's own v3 request builder, for tests that compare bytes. */
export const upstreamProduceRequestV3 = upstream as (a: unknown) => { encode(): Promise<{ buffer: Buffer }> };
