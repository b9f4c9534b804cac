import { randomUUID } from 'node:crypto';
import type { StreamError } from '../../../framework/index.ts';
import { kafkaError } from '../errors.ts';
import type { Admin, Consumer, EachBatchPayload, Kafka } from '../internal/kafkajs.ts';
import { onConsumerStopped } from './consumer-stopped.ts';
import { PartitionReader, type ReaderOptions } from './partition-reader.ts';

export interface BroadcastHubOptions {
  readonly jobId: string;
  readonly topics: readonly string[];
  readonly maxBytesPerPartition?: number;
  readonly maxWaitTimeMs?: number;
}

/**
 * Reads the job's broadcast topics (patterns, rules, models: every task needs every record) for all
 * tasks of this instance. It is the only member of a consumer group of its own
 * (`<jobId>.broadcast.<uuid>`), so it is assigned every partition, and it never commits offsets:
 * each task's position in each broadcast partition is part of the task's snapshot, restored with
 * it (and not committed to the job's group, whose offsets carry the task's own partitions).
 *
 * Several readers (one per task) may read one partition from different positions: the partition is
 * fetched from the earliest position any of them needs (a registration behind the others seeks it
 * back) and every batch is offered to all of them; a reader drops what it has already seen. The
 * partition pauses while any of its readers holds records its channel could not take yet, so the
 * slowest task sets the pace.
 *
 * Should kafkajs stop the consumer for good (`onConsumerStopped`), every reader fails with the error,
 * and so does every reader registered later: the tasks fail rather than wait for broadcast records.
 */
export class BroadcastHub {
  readonly #kafka: Kafka;
  readonly #o: BroadcastHubOptions;
  readonly #consumer: Consumer;
  readonly #groupId: string;
  readonly #readers = new Map<string, Set<PartitionReader<unknown>>>();
  /** The next offset each partition's fetch returns (after a seek, the sought offset). */
  readonly #fetchAt = new Map<string, bigint>();
  #admin: Admin | undefined;
  #stopped: StreamError | undefined;

  constructor(kafka: Kafka, o: BroadcastHubOptions) {
    this.#kafka = kafka;
    this.#o = o;
    this.#groupId = `${o.jobId}.broadcast.${randomUUID()}`;
    this.#consumer = kafka.consumer({
      groupId: this.#groupId,
      readUncommitted: false,
      maxBytesPerPartition: o.maxBytesPerPartition ?? 1_048_576,
      maxWaitTimeInMs: o.maxWaitTimeMs ?? 100,
      retry: { retries: 1_000_000, initialRetryTime: 200, maxRetryTime: 5_000 },
    });
  }

  get admin(): Admin {
    if (!this.#admin) throw new Error('the broadcast hub is not started');
    return this.#admin;
  }

  /**
   * Join the private group and wait until every partition is assigned (readers may then seek).
   * Rejects if kafkajs stops the consumer for good before; after, `onStopped` gets the error.
   */
  async start(onStopped?: (error: StreamError) => void): Promise<void> {
    this.#admin = this.#kafka.admin();
    let joined!: () => void;
    let failed!: (e: unknown) => void;
    const assigned = new Promise<void>((resolve, reject) => {
      joined = resolve;
      failed = reject;
    });
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, () => joined());
    onConsumerStopped(
      this.#consumer,
      `the consumer of broadcast topic(s) ${this.#o.topics.join(', ')} (group ${this.#groupId}) stopped`,
      (error) => {
        this.#stopped = error;
        failed(error); // a consumer stopped before it joined never will
        for (const set of this.#readers.values()) for (const r of set) r.fail(error);
        onStopped?.(error);
      },
    );
    try {
      await this.#admin.connect();
      await this.#consumer.connect();
      await this.#consumer.subscribe({ topics: [...this.#o.topics], fromBeginning: true });
      await this.#consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 16,
        eachBatch: (p) => this.#onBatch(p),
      });
      await assigned;
    } catch (e) {
      await this.stop();
      throw kafkaError(`reading broadcast topic(s) ${this.#o.topics.join(', ')}`, e);
    }
  }

  /** A reader for one task and one partition, from `startOffset`. */
  register<T>(o: Omit<ReaderOptions<T>, 'onRoom'>): PartitionReader<T> {
    const key = `${o.topic}:${o.partition}`;
    const reader = new PartitionReader<T>({ ...o, onRoom: () => this.#resumeIfRoom(o.topic, o.partition) });
    const set = this.#readers.get(key) ?? new Set();
    set.add(reader as PartitionReader<unknown>);
    this.#readers.set(key, set);
    if (this.#stopped !== undefined) {
      reader.fail(this.#stopped);
      return reader;
    }
    const at = this.#fetchAt.get(key);
    if (at === undefined || o.startOffset < at) {
      this.#consumer.seek({ topic: o.topic, partition: o.partition, offset: o.startOffset.toString() });
      this.#fetchAt.set(key, o.startOffset);
    }
    this.#resumeIfRoom(o.topic, o.partition);
    return reader;
  }

  unregister(reader: PartitionReader<unknown>): void {
    const key = `${reader.topic}:${reader.partition}`;
    const set = this.#readers.get(key);
    if (!set?.delete(reader)) return;
    if (set.size === 0) {
      this.#readers.delete(key);
      this.#pause(reader.topic, reader.partition);
    } else this.#resumeIfRoom(reader.topic, reader.partition);
  }

  async stop(): Promise<void> {
    await this.#consumer.disconnect().catch(() => {});
    await this.#admin?.disconnect().catch(() => {});
    // The private group has no offsets and no member now; remove it rather than wait for expiry.
    const admin = this.#kafka.admin();
    await admin
      .connect()
      .then(() => admin.deleteGroups([this.#groupId]))
      .catch(() => {})
      .finally(() => admin.disconnect().catch(() => {}));
  }

  #pause(topic: string, partition: number): void {
    try {
      this.#consumer.pause([{ topic, partitions: [partition] }]);
    } catch {
      // not assigned
    }
  }

  #resumeIfRoom(topic: string, partition: number): void {
    const set = this.#readers.get(`${topic}:${partition}`);
    if (!set || [...set].some((r) => r.isFull)) return;
    try {
      this.#consumer.resume([{ topic, partitions: [partition] }]);
    } catch {
      // not assigned
    }
  }

  async #onBatch({ batch, resolveOffset, pause, isStale }: EachBatchPayload): Promise<void> {
    if (isStale()) return;
    const key = `${batch.topic}:${batch.partition}`;
    const set = this.#readers.get(key);
    if (!set || set.size === 0) {
      pause();
      return;
    }
    if (batch.messages.length === 0) {
      resolveOffset(batch.lastOffset());
      return;
    }
    let full = false;
    for (const r of set) full = r.offer(batch.messages).full || full;
    const last = batch.messages[batch.messages.length - 1]!.offset;
    this.#fetchAt.set(key, BigInt(last) + 1n);
    resolveOffset(last);
    if (full) pause();
  }
}
