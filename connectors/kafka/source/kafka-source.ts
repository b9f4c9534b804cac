import { type Source, type SourceReader, StreamError } from '../../../framework/index.ts';
import { kafkaError } from '../errors.ts';
import { kafkaEvents } from '../events.ts';
import type { Admin } from '../internal/kafkajs.ts';
import type { Serde } from '../serde/serde.ts';
import type { BroadcastHub } from './broadcast-hub.ts';
import type { ConsumerHub } from './hub.ts';
import {
  type DecodeErrorPolicy,
  isKafkaPosition,
  type KafkaRecordIn,
  type PartitionReader,
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
   * `skip` counts and logs them; `dead-letter` emits them on the side output `deadLetters()` (sink it
   * into a KafkaSink: same task, same transaction, so each lands there exactly once).
   */
  readonly onDecodeError?: DecodeErrorPolicy;
  /** Records buffered per partition before the partition is paused (plus at most one fetch). Default 5000. */
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
  readonly #o: KafkaSourceOptions<T>;
  #hub: ConsumerHub | BroadcastHub | undefined;
  #partitions: number | undefined;
  /** Decode failures skipped or dead-lettered, over all readers of this process. */
  skipped = 0;

  constructor(o: KafkaSourceOptions<T>) {
    this.#o = o;
    this.topic = o.topic;
    this.uid = o.uid ?? `kafka-${o.topic}`;
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
    const decode =
      this.#o.decode ??
      (serde
        ? (r: KafkaRecordIn) => serde.deserialize(r.value, r.topic) as T | Promise<T>
        : (r: KafkaRecordIn) => JSON.parse(r.value?.toString('utf8') ?? 'null') as T);
    const reader = hub.register<T>({
      topic: this.topic,
      partition,
      startOffset: start,
      capacity: this.#o.bufferRecords ?? 5000,
      idleWaitMs: 50,
      decode,
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
