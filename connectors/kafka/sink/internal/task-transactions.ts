import type { CheckpointCommitter, CheckpointPointer, CommitRequest } from '../../../../framework/index.ts';
import { encodePointer, readCommittedPointer } from '../../admin/pointer.ts';
import { kafkaError } from '../../errors.ts';
import { kafkaEvents } from '../../events.ts';
import type { Kafka, Message, Producer, Transaction } from '../../internal/kafkajs.ts';
import { isKafkaPosition } from '../../source/partition-reader.ts';
import { TRANSACTION_SLOTS, transactionalId } from './transactional-id.ts';

export interface TaskTransactionsOptions {
  readonly kafka: Kafka;
  readonly jobId: string;
  readonly taskId: string;
  readonly partition: number;
  readonly mode: 'exactly-once' | 'at-least-once';
  readonly transactionTimeoutMs: number;
  /** Records per send call. */
  readonly batchRecords: number;
  /** Unsent or unacknowledged records before the task is held back. */
  readonly maxBufferedRecords: number;
}

/** Records of one checkpoint interval, on one producer slot. */
interface Interval {
  readonly slot: number;
  /** exactly-once: the slot's open transaction (begun when needed). */
  txn: Promise<Transaction> | undefined;
  buffer: Map<string, Message[]>;
  buffered: number;
  sends: Promise<void>[];
  failure: unknown;
}

/**
 * The Kafka side of one task's checkpoints: the task's producers, and the transaction that makes a
 * checkpoint. Shared by every KafkaSink writer of the task (one transaction per task).
 *
 * exactly-once: records between barriers n-1 and n go to one transaction on one of two producer
 * slots; at barrier n the writers switch to the other slot (processing does not wait for the commit);
 * `commitCheckpoint(n)` adds the consumer offsets with the pointer to the snapshot as metadata
 * (sendOffsets) and commits: that commit is checkpoint n. Two slots suffice because the runtime
 * triggers n+1 only after n completed (max one concurrent checkpoint; runKafkaJob enforces it).
 *
 * at-least-once: records go out through an idempotent producer; `flush` waits for their acks before
 * the checkpoint commits its offsets and pointer (in a transaction of its own).
 */
export class TaskTransactions implements CheckpointCommitter {
  readonly #o: TaskTransactionsOptions;
  readonly #producers: Producer[] = [];
  #data: Producer | undefined;
  readonly #ready: Promise<void>;
  #initFailure: unknown;
  #current: Interval;
  readonly #prepared = new Map<number, Interval>();
  readonly #slotFree: Promise<void>[] = [];
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #closed = false;
  #readyDone = false;
  refs = 0;

  constructor(o: TaskTransactionsOptions) {
    this.#o = o;
    for (let slot = 0; slot < TRANSACTION_SLOTS; slot++) {
      this.#producers.push(
        o.kafka.producer({
          transactionalId: transactionalId(o.jobId, o.taskId, slot),
          transactionTimeout: o.transactionTimeoutMs,
          maxInFlightRequests: 1,
          idempotent: true,
        }),
      );
      this.#slotFree.push(Promise.resolve());
    }
    this.#current = this.#interval(0);
    this.#ready = this.#init();
    this.#ready.then(
      () => {
        this.#readyDone = true;
      },
      (e: unknown) => {
        this.#initFailure = e;
      },
    );
  }

  /** Connect, and fence every slot: InitProducerId aborts what a previous owner left open. */
  async #init(): Promise<void> {
    try {
      for (const p of this.#producers) {
        await p.connect();
        const t = await p.transaction();
        await t.abort();
      }
      if (this.#o.mode === 'at-least-once') {
        this.#data = this.#o.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
        await this.#data.connect();
      }
    } catch (e) {
      throw kafkaError(`task ${this.#o.taskId}: starting its transactional producers`, e);
    }
  }

  #interval(slot: number): Interval {
    return { slot, txn: undefined, buffer: new Map(), buffered: 0, sends: [], failure: undefined };
  }

  /** Backpressure: a promise while starting, or while too much is unsent. */
  ready(): Promise<void> | undefined {
    if (this.#initFailure !== undefined) return Promise.reject(this.#initFailure);
    if (!this.#readyDone) return this.#ready.then(() => undefined);
    if (this.#inFlight >= this.#o.maxBufferedRecords) {
      return new Promise<void>((r) => {
        this.#drained = r;
      });
    }
    return undefined;
  }

  send(topic: string, message: Message): void {
    const i = this.#current;
    if (i.failure !== undefined) throw i.failure;
    let list = i.buffer.get(topic);
    if (!list) {
      list = [];
      i.buffer.set(topic, list);
    }
    list.push(message);
    i.buffered++;
    this.#inFlight++;
    if (i.buffered >= this.#o.batchRecords) this.#flushBuffer(i);
  }

  #flushBuffer(i: Interval): void {
    if (i.buffered === 0) return;
    const topicMessages = [...i.buffer.entries()].map(([topic, messages]) => ({ topic, messages }));
    const count = i.buffered;
    i.buffer = new Map();
    i.buffered = 0;
    const sent = (async () => {
      await this.#ready;
      if (this.#o.mode === 'exactly-once') {
        const txn = await this.#transactionOf(i);
        await txn.sendBatch({ topicMessages });
      } else {
        await this.#data!.sendBatch({ topicMessages });
      }
    })()
      .catch((e) => {
        i.failure ??= kafkaError(`task ${this.#o.taskId}: sending records`, e);
      })
      .finally(() => {
        this.#inFlight -= count;
        if (this.#inFlight < this.#o.maxBufferedRecords / 2 && this.#drained) {
          const d = this.#drained;
          this.#drained = undefined;
          d();
        }
      });
    i.sends.push(sent);
  }

  #transactionOf(i: Interval): Promise<Transaction> {
    i.txn ??= (async () => {
      await this.#slotFree[i.slot];
      return this.#producers[i.slot]!.transaction();
    })();
    return i.txn;
  }

  /** Barrier n: close the interval; later records go to the other slot. Idempotent per checkpoint. */
  prepare(checkpointId: number): void {
    if (this.#prepared.has(checkpointId)) return;
    const i = this.#current;
    this.#flushBuffer(i);
    this.#prepared.set(checkpointId, i);
    this.#current = this.#interval((i.slot + 1) % TRANSACTION_SLOTS);
  }

  /** Everything of checkpoint n was sent (exactly-once) or acknowledged (at-least-once). */
  async flush(checkpointId: number): Promise<void> {
    const i = this.#prepared.get(checkpointId);
    if (!i) return;
    await Promise.all(i.sends);
    if (i.failure !== undefined) throw i.failure;
  }

  async commitCheckpoint(req: CommitRequest): Promise<void> {
    const i = this.#prepared.get(req.checkpointId);
    if (!i)
      throw new Error(
        `task ${this.#o.taskId}: checkpoint ${req.checkpointId} was not prepared by its Kafka sinks`,
      );
    // The transaction of this interval (begun now if nothing was written in it), taken before the
    // slot is marked busy: beginning it waits for the slot's previous commit.
    const txnPromise =
      this.#o.mode === 'exactly-once'
        ? this.#transactionOf(i)
        : this.#slotFree[i.slot]!.then(() => this.#producers[i.slot]!.transaction());
    let release!: () => void;
    this.#slotFree[i.slot] = new Promise((r) => {
      release = r;
    });
    try {
      await this.flush(req.checkpointId);
      const metadata = encodePointer(req.pointer);
      const byTopic = new Map<string, { partition: number; offset: string; metadata: string }[]>();
      for (const p of req.positions) {
        if (!isKafkaPosition(p.position)) continue;
        const list = byTopic.get(p.position.topic) ?? [];
        list.push({ partition: p.partition, offset: p.position.offset, metadata });
        byTopic.set(p.position.topic, list);
      }
      if (byTopic.size === 0) {
        throw new Error(
          `task ${this.#o.taskId}: checkpoint ${req.checkpointId} has no Kafka source position to commit`,
        );
      }
      const txn = await txnPromise;
      try {
        await txn.sendOffsets({
          consumerGroupId: this.#o.jobId,
          topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
        });
        await txn.commit();
        kafkaEvents.emit('transaction', {
          jobId: this.#o.jobId,
          taskId: this.#o.taskId,
          outcome: 'committed',
        });
      } catch (e) {
        await txn.abort().catch(() => {});
        kafkaEvents.emit('transaction', { jobId: this.#o.jobId, taskId: this.#o.taskId, outcome: 'aborted' });
        throw e;
      }
      this.#prepared.delete(req.checkpointId);
    } catch (e) {
      throw kafkaError(`task ${this.#o.taskId}: committing checkpoint ${req.checkpointId}`, e);
    } finally {
      release();
    }
  }

  async latestCheckpoint(
    inputs: readonly { readonly source: { readonly uid: string }; readonly partition: number }[],
  ): Promise<CheckpointPointer | undefined> {
    const topics = inputs.flatMap((i) => {
      const t = (i.source as { topic?: unknown }).topic;
      return typeof t === 'string' ? [t] : [];
    });
    const admin = this.#o.kafka.admin();
    await admin.connect();
    try {
      return await readCommittedPointer(admin, this.#o.jobId, topics, this.#o.partition);
    } finally {
      await admin.disconnect();
    }
  }

  /** Drop everything not committed and disconnect. Never throws. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#ready.catch(() => {});
    const open = [this.#current, ...this.#prepared.values()];
    await Promise.allSettled(open.flatMap((i) => i.sends));
    for (const i of open) {
      if (!i.txn) continue;
      const aborted = await i.txn
        .then(
          (t) => t.abort().then(() => true),
          () => false,
        )
        .catch(() => false);
      if (aborted)
        kafkaEvents.emit('transaction', { jobId: this.#o.jobId, taskId: this.#o.taskId, outcome: 'aborted' });
    }
    await Promise.allSettled(
      [...this.#producers, ...(this.#data ? [this.#data] : [])].map((p) => p.disconnect()),
    );
  }
}
