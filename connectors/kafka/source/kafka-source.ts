import {
  checkPartitioner,
  type Partitioner,
  type RecordRejection,
  type RecordVerdict,
  type Source,
  type SourceReader,
  StreamError,
} from '../../../framework/index.ts';
import { kafkaError } from '../errors.ts';
import { kafkaEvents } from '../events.ts';
import type { Admin } from '../internal/kafkajs.ts';
import type { Serde } from '../serde/serde.ts';
import type { BroadcastHub } from './broadcast-hub.ts';
import type { ConsumerHub } from './hub.ts';
import {
  DEAD_LETTER_TAG,
  type DeadLetter,
  type DecodeErrorPolicy,
  isKafkaPosition,
  type KafkaRecordIn,
  type PartitionReader,
  type RecordErrorPolicy,
  recordIn,
} from './partition-reader.ts';

export interface KafkaSourceOptions<T> {
  readonly topic: string;
  /** Default `kafka-<topic>`. */
  readonly uid?: string;
  /** Record -> element. Default: `serde` applied to the value, or the value parsed as UTF-8 JSON. */
  readonly decode?: (record: KafkaRecordIn) => T | Promise<T>;
  /** Deserializer of the record value (string, JSON, bytes, Avro/JSON Schema/Protobuf via a registry). */
  readonly serde?: Serde<T>;
  /** Where a partition starts when the job has no checkpoint for it. Default `earliest`. */
  readonly startFrom?: 'earliest' | 'latest';
  /**
   * Records that fail to decode: `fail` (default) stops the task naming topic, partition and offset;
   * `skip` counts and logs them; `dead-letter` emits them as DeadLetters on the side output
   * DEAD_LETTER_TAG (`stream.getSideOutput(outputTag(DEAD_LETTER_TAG))`; sink it into a KafkaSink:
   * same task, same transaction, so each lands there exactly once).
   */
  readonly onDecodeError?: DecodeErrorPolicy;
  /**
   * The partitioner the topic's producers used (docs/kafka.md "Partitioners"): a keyed stream read
   * from this source without repartitioning finds each key in the partition this function gives it.
   * `'murmur2'` (default: the Java client, kafkajs, librdkafka's murmur2_random), `'crc32'`
   * (librdkafka's default consistent_random: kcat, confluent-kafka-python/-go/-dotnet, node-rdkafka),
   * `'fnv1a'` (librdkafka's fnv1a_random, Sarama's and kafka-go's hash partitioner), or a function
   * `(keyBytes, partitions) => partition` for any other.
   */
  readonly partitioner?: Partitioner;
  /**
   * Records a keyed operator finds in the wrong partition (their key's partition under `partitioner`
   * is not the one they are in: produced into an explicit partition, or by another partitioner):
   * `fail` (default: the job fails once with KEY_GROUP_MISMATCH naming topic, partition, offset, key,
   * and which partitioner would have put the record there; a restart would fail the same way, so
   * there is none), `skip` (counted in `wrongPartition` and warned about), `dead-letter` (emitted
   * as a DeadLetter with `code: 'KEY_GROUP_MISMATCH'` on the side output DEAD_LETTER_TAG, with the
   * records that fail to decode: same task, same transaction, so each lands there once).
   */
  readonly onWrongPartition?: RecordErrorPolicy;
  /**
   * Records the task's input channel of a partition holds (decoded) before the partition is paused;
   * the rest of the fetch that filled it waits, undecoded, until the task drained it to half.
   * Memory per partition is thus bounded by this many records plus one fetch
   * (`maxBytesPerPartition`). Default 5000.
   */
  readonly bufferRecords?: number;
}

/**
 * A Kafka topic as a source. Task p reads partition p; the position (next offset) is part of every
 * checkpoint, and committed to the job's consumer group with it. Runs inside `runKafkaJob`, which
 * binds it to the instance's consumer.
 */
export class KafkaSource<T> implements Source<T> {
  readonly uid: string;
  readonly topic: string;
  readonly partitioner: Partitioner;
  readonly #o: KafkaSourceOptions<T>;
  readonly #onWrongPartition: RecordErrorPolicy;
  #hub: ConsumerHub | BroadcastHub | undefined;
  #partitions: number | undefined;
  /** Decode failures skipped or dead-lettered, over all readers of this process. */
  skipped = 0;
  /** Records in the wrong partition skipped or dead-lettered, over all readers of this process. */
  wrongPartition = 0;

  constructor(o: KafkaSourceOptions<T>) {
    this.#o = o;
    this.topic = o.topic;
    this.uid = o.uid ?? `kafka-${o.topic}`;
    this.partitioner = checkPartitioner(o.partitioner ?? 'murmur2', `KafkaSource '${this.uid}'`);
    this.#onWrongPartition = policy(o.onWrongPartition, `KafkaSource '${this.uid}': onWrongPartition`);
    policy(o.onDecodeError, `KafkaSource '${this.uid}': onDecodeError`);
  }

  /**
   * A record a keyed operator found in the wrong partition (see `onWrongPartition`). The error names
   * the record (topic, partition, offset) and, when the record's own Kafka key is not the key the
   * operator selected, says so: then the topic is not keyed by that key, and no partitioner setting
   * can help.
   */
  rejected(r: RecordRejection): RecordVerdict {
    const origin = isOrigin(r.origin) ? recordIn(this.topic, r.partition, r.origin) : undefined;
    const where = origin
      ? `record ${origin.topic}/${origin.partition}@${origin.offset}`
      : `a record of ${this.topic}/${r.partition} (replayed from an unaligned checkpoint: offset unknown)`;
    // A user function threw on the record (r.policy: the operator's; the runtime reports those), or
    // its key is in the wrong partition (this source's onWrongPartition).
    const user = r.policy !== undefined;
    const message = `${where}: ${r.error.message}${user ? '' : keyNote(origin, r.keyBytes)}`;
    const policy = r.policy ?? this.#onWrongPartition;
    if (policy === 'fail')
      return { kind: 'fail', error: new StreamError(r.error.code, message, { cause: r.error }) };
    if (!user) {
      this.wrongPartition++;
      kafkaEvents.emit('wrong-partition', {
        source: this.uid,
        topic: this.topic,
        partition: r.partition,
        policy,
      });
      process.emitWarning(`Kafka source '${this.uid}' (${policy}): ${message}`, 'RecordPartitionWarning');
    }
    if (policy === 'skip') return { kind: 'skip' };
    const dl: DeadLetter = {
      ...(origin ?? { topic: this.topic, partition: r.partition, offset: '-1', key: null, value: null }),
      error: message,
      code: r.error.code,
    };
    return { kind: 'emit', tag: DEAD_LETTER_TAG, value: dl };
  }

  /**
   * @internal called by runKafkaJob once the topic's metadata is known: the group's consumer for the
   * task's own partitions, the broadcast hub for a broadcast source (every task reads every partition).
   */
  bind(hub: ConsumerHub | BroadcastHub, partitions: number): void {
    this.#hub = hub;
    this.#partitions = partitions;
  }

  partitions(): number {
    if (this.#partitions === undefined) {
      throw new StreamError(
        'CONFIG_INVALID',
        `Kafka source '${this.uid}' is not bound to a cluster: run the job with runKafkaJob(...)`,
      );
    }
    return this.#partitions;
  }

  async createReader(partition: number, position: unknown): Promise<SourceReader<T>> {
    const hub = this.#hub;
    if (!hub)
      throw new StreamError(
        'CONFIG_INVALID',
        `Kafka source '${this.uid}' is not bound to a cluster: run the job with runKafkaJob(...)`,
      );
    let start: bigint;
    if (position === undefined) start = await this.#initialOffset(hub.admin, partition);
    else if (isKafkaPosition(position) && position.topic === this.topic) start = BigInt(position.offset);
    else {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `Kafka source '${this.uid}' got position ${JSON.stringify(position)} for partition ${partition}; expected { topic: '${this.topic}', offset }`,
      );
    }
    const serde = this.#o.serde;
    // A serde or JSON needs the value only: no KafkaRecordIn is made per record for them.
    const decoding = this.#o.decode
      ? { decode: this.#o.decode }
      : {
          decodeValue: serde
            ? (value: Buffer | null, topic: string) => serde.deserialize(value, topic) as T | Promise<T>
            : (value: Buffer | null) => (value === null ? null : JSON.parse(value.toString('utf8'))) as T,
        };
    const reader = hub.register<T>({
      topic: this.topic,
      partition,
      startOffset: start,
      capacity: this.#o.bufferRecords ?? 5000,
      ...decoding,
      onDecodeError: this.#o.onDecodeError ?? 'fail',
      onSkip: (r, e) => {
        this.skipped++;
        kafkaEvents.emit('decode-error', {
          source: this.uid,
          topic: r.topic,
          partition: r.partition,
          policy: this.#o.onDecodeError ?? 'fail',
        });
        process.emitWarning(
          `Kafka source '${this.uid}': record ${r.topic}/${r.partition}@${r.offset} could not be decoded (${this.#o.onDecodeError}): ${e instanceof Error ? e.message : String(e)}`,
          'RecordDecodeWarning',
        );
      },
    });
    const close = reader.close.bind(reader);
    reader.close = async () => {
      hub.unregister(reader as PartitionReader<unknown>);
      await close();
    };
    return reader;
  }

  async #initialOffset(admin: Admin, partition: number): Promise<bigint> {
    try {
      const offsets = await admin.fetchTopicOffsets(this.topic);
      const p = offsets.find((o) => o.partition === partition);
      if (!p) throw new StreamError('CONFIG_INVALID', `topic ${this.topic} has no partition ${partition}`);
      return BigInt(this.#o.startFrom === 'latest' ? p.high : p.low);
    } catch (e) {
      throw kafkaError(`reading the offsets of ${this.topic}`, e);
    }
  }
}

const POLICIES: readonly RecordErrorPolicy[] = ['fail', 'skip', 'dead-letter'];

function policy(p: RecordErrorPolicy | undefined, where: string): RecordErrorPolicy {
  if (p === undefined) return 'fail';
  if (POLICIES.includes(p)) return p;
  throw new StreamError(
    'CONFIG_INVALID',
    `${where} is ${JSON.stringify(p)}; allowed: ${POLICIES.map((x) => `'${x}'`).join(', ')}`,
  );
}

/** A record's origin as the reader keeps it: the fetched kafkajs message (or, restored from an unaligned checkpoint, it or a KafkaRecordIn). */
function isOrigin(o: unknown): o is Parameters<typeof recordIn>[2] {
  return typeof o === 'object' && o !== null && typeof (o as KafkaRecordIn).offset === 'string';
}

/** What the record's own Kafka key says about a wrong partition, when it is not the selected key. */
function keyNote(origin: KafkaRecordIn | undefined, selected: Uint8Array): string {
  if (origin === undefined) return '';
  if (origin.key === null) {
    return ' The record has no Kafka key: producers spread keyless records over the partitions, so no partitioner setting can place them; repartition the input (keyBy(selector, { repartition: true })).';
  }
  if (Buffer.compare(origin.key, selected) === 0) return '';
  const shown = JSON.stringify(origin.key.toString('utf8'));
  return ` Its Kafka key is ${shown.length > 100 ? `${shown.slice(0, 100)}..."` : shown}, not the selected key: the topic is not keyed by this key, so no partitioner setting can help; repartition it (keyBy(selector, { repartition: true })).`;
}
