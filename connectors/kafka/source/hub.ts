import type { StreamError } from '../../../framework/index.ts';
import { kafkaError } from '../errors.ts';
import type { Admin, Consumer, EachBatchPayload, Kafka } from '../internal/kafkajs.ts';
import { setGroupInstanceId } from '../internal/static-membership.ts';
import { coPartitionedAssigner } from './assigner.ts';
import { onConsumerStopped } from './consumer-stopped.ts';
import { PartitionReader, type ReaderOptions } from './partition-reader.ts';

export interface PartitionLag {
  readonly topic: string;
  readonly partition: number;
  /** Next offset the task takes. */
  readonly position: string;
  /** End of the committed records (last stable offset). */
  readonly end: string;
  /** Records (and transaction markers) between them. */
  readonly lag: number;
}

export interface HubOptions {
  readonly groupId: string;
  readonly topics: readonly string[];
  readonly sessionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  readonly rebalanceTimeoutMs?: number;
  readonly maxBytesPerPartition?: number;
  /** Longest a fetch waits for data. Default 100 ms (latency over request count). */
  readonly maxWaitTimeMs?: number;
  /** host:port where this instance answers state queries; advertised in the group's metadata. */
  readonly queryEndpoint?: string;
  /**
   * Join as a static member with this `group.instance.id` (KIP-345; ../internal/static-membership.ts):
   * a restart with the same id after a crash takes over the old membership at once. One id per live
   * member of the group.
   */
  readonly groupInstanceId?: string;
}

/** This member's view of the group, for query routing (connectors/kafka/query-routing.ts). */
export interface MembershipView {
  /** Set after the first join. */
  readonly memberId: string | undefined;
  /** Partitions assigned to this member by the last join. */
  readonly owned: readonly number[];
  /** Between a rebalance starting (as this member learns it) and the next join. */
  readonly rebalancing: boolean;
}

/**
 * The instance's one consumer-group member: it subscribes to every Kafka source topic of the job,
 * reports the group's assignment, and feeds the partition readers of the tasks running here: each
 * fetched batch is offered to its partition's reader, which signals its task's input channel, so the
 * records go into the channel during eachBatch; a reader left holding part of a fetch (the channel is
 * full) pauses the partition until its channel took the rest (`onRoom`).
 * A partition without a reader (its task is still restoring, or was revoked) is paused, from the
 * join on (before its first fetch); a reader's registration seeks the partition to the reader's
 * start offset and resumes it. Offsets are never committed by this consumer: the tasks'
 * transactions commit them with their checkpoints.
 */
export class ConsumerHub {
  readonly #kafka: Kafka;
  readonly #o: HubOptions;
  readonly #consumer: Consumer;
  readonly #readers = new Map<string, PartitionReader<unknown>>();
  #admin: Admin | undefined;
  #running = false;
  /** Set once kafkajs stopped the consumer for good (a non-retriable error): what tasks fail with. */
  #stopped: StreamError | undefined;
  #owned: number[] = [];
  #memberId: string | undefined;
  #rebalancing = true;

  constructor(kafka: Kafka, o: HubOptions) {
    this.#kafka = kafka;
    this.#o = o;
    this.#consumer = kafka.consumer({
      groupId: o.groupId,
      partitionAssigners: [coPartitionedAssigner(() => this.#owned, o.queryEndpoint)],
      sessionTimeout: o.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: o.heartbeatIntervalMs ?? 1_000,
      rebalanceTimeout: o.rebalanceTimeoutMs ?? 20_000,
      maxBytesPerPartition: o.maxBytesPerPartition ?? 1_048_576,
      readUncommitted: false,
      maxWaitTimeInMs: o.maxWaitTimeMs ?? 100,
      retry: { retries: 1_000_000, initialRetryTime: 200, maxRetryTime: 5_000 },
    });
  }

  /** This member's id, assignment and whether a rebalance is under way. */
  membership(): MembershipView {
    return { memberId: this.#memberId, owned: this.#owned, rebalancing: this.#rebalancing };
  }

  get groupId(): string {
    return this.#o.groupId;
  }

  get admin(): Admin {
    if (!this.#admin) throw new Error('the consumer hub is not started');
    return this.#admin;
  }

  /**
   * Join the group; `onAssignment` gets topic -> partitions after every rebalance. Should kafkajs stop
   * the consumer for good, every reader fails with the error, and so does `onStopped` (before the
   * first assignment, nothing else would).
   */
  async start(
    onAssignment: (assigned: ReadonlyMap<string, readonly number[]>) => void,
    onStopped?: (error: StreamError) => void,
  ): Promise<void> {
    setGroupInstanceId(this.#o.groupId, this.#o.groupInstanceId);
    this.#admin = this.#kafka.admin();
    try {
      await this.#admin.connect();
      await this.#consumer.connect();
      await this.#consumer.subscribe({ topics: [...this.#o.topics], fromBeginning: true });
    } catch (e) {
      await this.stop();
      throw kafkaError(`joining consumer group ${this.#o.groupId}`, e);
    }
    const id = this.#o.groupInstanceId;
    onConsumerStopped(
      this.#consumer,
      `the consumer of group ${this.#o.groupId}${id === undefined ? '' : ` (group.instance.id '${id}')`} stopped`,
      (error) => {
        this.#stopped = error;
        for (const r of this.#readers.values()) r.fail(error);
        onStopped?.(error);
      },
    );
    this.#consumer.on(this.#consumer.events.REBALANCING, () => {
      this.#rebalancing = true;
    });
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, (e) => {
      this.#memberId = e.payload.memberId;
      this.#rebalancing = false;
      const assigned = new Map<string, number[]>();
      for (const [topic, parts] of Object.entries(e.payload.memberAssignment))
        assigned.set(topic, parts as number[]);
      this.#owned = [...new Set([...assigned.values()].flat())];
      // Before the first fetch of this generation (kafkajs emits GROUP_JOIN, then fetches): a partition
      // whose task has no reader yet is paused now, not after a fetch whose records would be thrown
      // away (up to maxBytesPerPartition each, fetched and decoded again once the reader seeks).
      const idle = [...assigned]
        .map(([topic, parts]) => ({
          topic,
          partitions: parts.filter((p) => !this.#readers.has(`${topic}:${p}`)),
        }))
        .filter((t) => t.partitions.length > 0);
      if (idle.length > 0) this.#consumer.pause(idle);
      onAssignment(assigned);
    });
    // A fetch whose records were all filtered out (transaction markers, aborted transactions) never
    // reaches eachBatch: kafkajs moves its own fetch offset on. The reader's position follows.
    this.#consumer.on(this.#consumer.events.END_BATCH_PROCESS, (e) => {
      const { topic, partition, batchSize, firstOffset, lastOffset } = e.payload;
      if (batchSize !== 0 || (firstOffset as string | null) === null) return;
      this.#readers.get(`${topic}:${partition}`)?.offer([], { first: firstOffset, last: lastOffset });
    });
    this.#running = true;
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 64,
      eachBatch: (p) => this.#onBatch(p),
    });
  }

  /** A reader for one partition, positioned at `startOffset`; the consumer is sought there. */
  register<T>(o: Omit<ReaderOptions<T>, 'onRoom'>): PartitionReader<T> {
    const key = `${o.topic}:${o.partition}`;
    const reader = new PartitionReader<T>({ ...o, onRoom: () => this.#resume(o.topic, o.partition) });
    this.#readers.set(key, reader as PartitionReader<unknown>);
    if (this.#stopped !== undefined) reader.fail(this.#stopped);
    else if (this.#running) {
      this.#consumer.seek({ topic: o.topic, partition: o.partition, offset: o.startOffset.toString() });
      this.#resume(o.topic, o.partition);
    }
    return reader;
  }

  /** Where each partition read here stands: the next offset its task takes. */
  positions(): { topic: string; partition: number; offset: bigint }[] {
    return [...this.#readers.values()].map((r) => ({
      topic: r.topic,
      partition: r.partition,
      offset: BigInt(r.position().offset),
    }));
  }

  /** Consumer lag per partition read here: committed end offset (read_committed) minus position. */
  async lag(): Promise<PartitionLag[]> {
    const positions = this.positions();
    const topics = [...new Set(positions.map((p) => p.topic))];
    const ends = new Map<string, bigint>();
    for (const t of topics) {
      for (const o of await this.admin.fetchTopicOffsets(t)) ends.set(`${t}:${o.partition}`, BigInt(o.high));
    }
    return positions.map((p) => {
      const end = ends.get(`${p.topic}:${p.partition}`) ?? p.offset;
      return {
        topic: p.topic,
        partition: p.partition,
        position: p.offset.toString(),
        end: end.toString(),
        lag: Number(end > p.offset ? end - p.offset : 0n),
      };
    });
  }

  unregister(reader: PartitionReader<unknown>): void {
    const key = `${reader.topic}:${reader.partition}`;
    if (this.#readers.get(key) === reader) {
      this.#readers.delete(key);
      try {
        this.#consumer.pause([{ topic: reader.topic, partitions: [reader.partition] }]);
      } catch {
        // not assigned any more
      }
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#rebalancing = true;
    await this.#consumer.disconnect().catch(() => {});
    await this.#admin?.disconnect().catch(() => {});
  }

  #resume(topic: string, partition: number): void {
    try {
      this.#consumer.resume([{ topic, partitions: [partition] }]);
    } catch {
      // not assigned (any more): nothing to resume
    }
  }

  async #onBatch({ batch, resolveOffset, pause, isStale }: EachBatchPayload): Promise<void> {
    if (isStale()) return;
    const reader = this.#readers.get(`${batch.topic}:${batch.partition}`);
    if (!reader) {
      pause();
      return;
    }
    const first = batch.firstOffset();
    const fetched = first === null ? undefined : { first, last: batch.lastOffset() };
    const { lastTaken, full } = reader.offer(batch.messages, fetched);
    if (lastTaken !== undefined) resolveOffset(lastTaken);
    if (full) pause();
  }
}
