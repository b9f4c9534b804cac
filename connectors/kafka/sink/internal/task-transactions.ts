import {
  type CheckpointCommitter,
  type CheckpointPointer,
  type CommitRequest,
  StreamError,
} from '../../../../framework/index.ts';
import { encodePointer, readCommittedPointer } from '../../admin/pointer.ts';
import { type AdminLease, leaseAdmin } from '../../admin/shared-admin.ts';
import { kafkaError } from '../../errors.ts';
import { kafkaEvents } from '../../events.ts';
// kafkajs 2.2.4 sends EndTxn once; this makes it retry the coordinator's retriable answers.
import '../../internal/install-end-txn-retry.ts';
import type { Kafka, Message, Producer, Transaction } from '../../internal/kafkajs.ts';
import { isKafkaPosition } from '../../source/partition-reader.ts';
import {
  type CoordinatorRetryOptions,
  type RetryClock,
  systemRetryClock,
  withCoordinatorRetry,
} from './coordinator-retry.ts';
import { SendQueue, type TopicMessages } from './send-queue.ts';
import { SlotMachine } from './slot-state.ts';
import { TRANSACTION_SLOTS, transactionalId } from './transactional-id.ts';

export interface TaskTransactionsOptions {
  readonly kafka: Kafka;
  readonly jobId: string;
  readonly taskId: string;
  readonly partition: number;
  readonly mode: 'exactly-once' | 'at-least-once';
  readonly transactionTimeoutMs: number;
  /** Most records per send call. */
  readonly batchRecords: number;
  /** Most bytes per send call (keys, values, headers). Default 512 KiB. */
  readonly batchBytes?: number;
  /** Unsent or unacknowledged records before the task is held back. */
  readonly maxBufferedRecords: number;
  /** Time for the coordinator retries; tests inject one that does not sleep. */
  readonly retryClock?: RetryClock;
}

/** A checkpoint interval: the records between two barriers, and their transaction. */
interface Interval {
  /** 0, 1, 2 ... in the order of the barriers. */
  readonly seq: number;
  /** The producer slot its transaction uses: slots alternate, so the next interval never waits for a commit. */
  readonly slot: number;
  /** Its barrier passed (prepare): no record joins it any more. */
  closed: boolean;
  /** Its commit was asked for. */
  committing: boolean;
  /** Its transaction, begun by its first send (or its commit, if it has no record). */
  txn: Promise<Transaction> | undefined;
}

/** One transactional producer and the transaction it has open, if any. */
interface Slot {
  readonly producer: Producer;
  readonly machine: SlotMachine;
  /** The interval whose transaction is open on the slot (from begin to committed/aborted). */
  interval: Interval | undefined;
  txn: Transaction | undefined;
}

const DEFAULT_BATCH_BYTES = 512 * 1024;

/**
 * The Kafka side of one task's checkpoints: the task's producers, and the transaction that makes a
 * checkpoint. Shared by every KafkaSink writer of the task (one transaction per task).
 *
 * exactly-once: records between barriers n-1 and n go into one transaction on one of two producer
 * slots, the next interval's into the other slot's, so that processing does not wait for a commit.
 * `commitCheckpoint(n)` adds the consumer offsets with the pointer to the snapshot as metadata
 * (sendOffsets) and commits: that commit is checkpoint n. Two slots suffice because the runtime
 * triggers n+1 only after n completed (max one concurrent checkpoint; runKafkaJob enforces it); should
 * an interval's slot still be busy with an older interval, its transaction waits for that one's end.
 *
 * Order (DESIGN.md): records reach each partition in the order they were written, within an interval
 * and across intervals. One SendQueue per task sends them with at most one send call in flight; the
 * records of interval n+1 are buffered until every record of interval n is acknowledged (not
 * committed), and only then go out in the other slot's transaction. So a partition never has two
 * sends of one task in flight, and never records of two slots interleaved.
 *
 * Each slot's lifecycle is the explicit state machine of ./slot-state.ts; a wrong transition fails
 * the task with KAFKA_TRANSACTION_STATE_INVALID. Retriable coordinator errors in beginning,
 * sendOffsets, commit and abort are retried with backoff within the transaction timeout
 * (./coordinator-retry.ts; kafkajs ends a transaction whose EndTxn failed, so for commit and abort
 * the retry happens inside kafkajs: internal/end-txn-retry.ts); any other failure fails the
 * checkpoint and the task, which restarts from its last committed checkpoint (its fencing aborts
 * what this incarnation left open).
 *
 * at-least-once: records go out through an idempotent producer, in the same order and with the same
 * queue; `flush` waits for their acks before the checkpoint commits its offsets and pointer (in a
 * transaction of its own).
 */
export class TaskTransactions implements CheckpointCommitter {
  readonly #o: TaskTransactionsOptions;
  readonly #slots: Slot[] = [];
  #data: Producer | undefined;
  readonly #queue: SendQueue;
  readonly #clock: RetryClock;
  readonly #ready: Promise<void>;
  #readyDone = false;
  #initFailure: unknown;
  /** Open intervals by seq: the current one and the prepared ones not committed yet. */
  readonly #intervals = new Map<number, Interval>();
  #current: Interval;
  readonly #prepared = new Map<number, Interval>();
  readonly #commits = new Set<Promise<void>>();
  #admin: Promise<AdminLease> | undefined;
  #closed = false;
  /** Rejects when close() starts: ends waits for a slot that no commit will free any more. */
  readonly #closing: Promise<never>;
  #cancel!: (reason: unknown) => void;
  refs = 0;

  constructor(o: TaskTransactionsOptions) {
    this.#o = o;
    this.#clock = o.retryClock ?? systemRetryClock;
    for (let slot = 0; slot < TRANSACTION_SLOTS; slot++) {
      const id = transactionalId(o.jobId, o.taskId, slot);
      this.#slots.push({
        producer: o.kafka.producer({
          transactionalId: id,
          transactionTimeout: o.transactionTimeoutMs,
          maxInFlightRequests: 1,
          idempotent: true,
        }),
        machine: new SlotMachine(`task ${o.taskId} transaction slot ${slot} (${id})`),
        interval: undefined,
        txn: undefined,
      });
    }
    this.#queue = new SendQueue({
      maxBatchRecords: o.batchRecords,
      maxBatchBytes: o.batchBytes ?? DEFAULT_BATCH_BYTES,
      maxBufferedRecords: o.maxBufferedRecords,
      send: (seq, records) => this.#sendChunk(seq, records),
    });
    this.#current = this.#open(0);
    this.#closing = new Promise<never>((_, reject) => {
      this.#cancel = reject;
    });
    this.#closing.catch(() => {});
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
      await Promise.all(
        this.#slots.map(async (s) => {
          await s.producer.connect();
          const t = await withCoordinatorRetry(
            `${s.machine.where}: fencing`,
            () => s.producer.transaction(),
            this.#retry(),
          );
          await t.abort();
          s.machine.apply('fenced');
        }),
      );
      if (this.#o.mode === 'at-least-once') {
        this.#data = this.#o.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
        await this.#data.connect();
      }
    } catch (e) {
      const err = kafkaError(`task ${this.#o.taskId}: starting its transactional producers`, e);
      for (const s of this.#slots) if (s.machine.state === 'fencing') s.machine.apply('fail', err);
      throw err;
    }
  }

  #open(seq: number): Interval {
    const i: Interval = {
      seq,
      slot: seq % TRANSACTION_SLOTS,
      closed: false,
      committing: false,
      txn: undefined,
    };
    this.#intervals.set(seq, i);
    return i;
  }

  /**
   * Retry options for coordinator calls: until `deadline` (default: the transaction timeout from now),
   * while `canRetry` holds and the task is not closing.
   */
  #retry(deadline?: number, canRetry?: () => boolean): CoordinatorRetryOptions {
    return {
      clock: this.#clock,
      deadline: deadline ?? this.#clock.now() + this.#o.transactionTimeoutMs,
      canRetry: () => !this.#closed && (canRetry?.() ?? true),
    };
  }

  /** Backpressure: a promise while starting, or while too much is unsent or unacknowledged. */
  ready(): Promise<void> | undefined {
    if (this.#initFailure !== undefined) return Promise.reject(this.#initFailure);
    if (!this.#readyDone) return this.#ready.then(() => undefined);
    return this.#queue.ready();
  }

  /** Queue a record of the current interval. Throws the failure of an earlier send or commit. */
  send(topic: string, message: Message): void {
    if (this.#closed) {
      throw new StreamError(
        'KAFKA_TRANSACTION_STATE_INVALID',
        `task ${this.#o.taskId}: a record was written to its Kafka sink after close`,
      );
    }
    this.#queue.push(this.#current.seq, topic, message);
  }

  /** One send call of the queue: records of interval `seq`, into its transaction. */
  async #sendChunk(seq: number, topicMessages: TopicMessages): Promise<void> {
    await this.#ready;
    if (this.#o.mode === 'at-least-once') {
      try {
        await this.#data!.sendBatch({ topicMessages });
      } catch (e) {
        throw kafkaError(`task ${this.#o.taskId}: sending records`, e);
      }
      return;
    }
    const i = this.#intervals.get(seq)!;
    const s = this.#slots[i.slot]!;
    const txn = await this.#transactionOf(i);
    s.machine.apply('send');
    try {
      await txn.sendBatch({ topicMessages });
    } catch (e) {
      const err = kafkaError(`task ${this.#o.taskId}: sending records of checkpoint interval ${seq}`, e);
      s.machine.apply('fail', err);
      throw err;
    }
  }

  #transactionOf(i: Interval): Promise<Transaction> {
    i.txn ??= this.#begin(i);
    return i.txn;
  }

  /** Begin interval i's transaction once its slot is idle (an older interval may still hold it). */
  async #begin(i: Interval): Promise<Transaction> {
    await this.#ready;
    const s = this.#slots[i.slot]!;
    while (s.machine.state !== 'idle') await Promise.race([s.machine.untilIdle(), this.#closing]);
    s.machine.apply('begin');
    s.interval = i;
    if (i.closed) s.machine.apply('close');
    try {
      s.txn = await withCoordinatorRetry(
        `${s.machine.where}: beginning a transaction`,
        () => s.producer.transaction(),
        this.#retry(),
      );
    } catch (e) {
      s.machine.apply('fail', e);
      throw e;
    }
    return s.txn;
  }

  /** Barrier n: close the interval; later records go to the next one. Idempotent per checkpoint. */
  prepare(checkpointId: number): void {
    if (this.#prepared.has(checkpointId)) return;
    if (this.#closed) {
      throw new StreamError(
        'KAFKA_TRANSACTION_STATE_INVALID',
        `task ${this.#o.taskId}: checkpoint ${checkpointId} was prepared after its Kafka sink closed`,
      );
    }
    const i = this.#current;
    i.closed = true;
    this.#prepared.set(checkpointId, i);
    const s = this.#slots[i.slot]!;
    if (s.interval === i && s.machine.state === 'open') s.machine.apply('close');
    this.#current = this.#open(i.seq + 1);
  }

  /** Every record of checkpoint n (and before) was acknowledged by the broker. */
  async flush(checkpointId: number): Promise<void> {
    const i = this.#prepared.get(checkpointId);
    if (!i) return;
    await this.#queue.acknowledged(i.seq);
  }

  commitCheckpoint(req: CommitRequest): Promise<void> {
    const done = this.#commit(req);
    this.#commits.add(done);
    const forget = () => this.#commits.delete(done);
    done.then(forget, forget);
    return done;
  }

  async #commit(req: CommitRequest): Promise<void> {
    const where = `task ${this.#o.taskId}: committing checkpoint ${req.checkpointId}`;
    const i = this.#prepared.get(req.checkpointId);
    if (!i || i.committing) {
      throw new StreamError(
        'KAFKA_TRANSACTION_STATE_INVALID',
        `${where}: ${i ? 'its commit was already asked for' : 'it was not prepared by the task’s Kafka sinks'}`,
      );
    }
    i.committing = true;
    // Bounded by the transaction timeout: past it the coordinator aborts the transaction anyway.
    const deadline = this.#clock.now() + this.#o.transactionTimeoutMs;
    const s = this.#slots[i.slot]!;
    try {
      const topics = offsetsOf(req);
      if (topics.length === 0) {
        throw new StreamError(
          'GRAPH_INVALID',
          `${where}: it has no Kafka source position to commit (a transactional Kafka sink needs a Kafka source in its task)`,
        );
      }
      await this.#queue.acknowledged(i.seq);
      const txn = await this.#transactionOf(i);
      s.machine.apply('commit');
      const active = () => txn.isActive();
      await withCoordinatorRetry(
        `${where}: sending its offsets`,
        () => txn.sendOffsets({ consumerGroupId: this.#o.jobId, topics }),
        this.#retry(deadline, active),
      );
      await withCoordinatorRetry(where, () => txn.commit(), this.#retry(deadline, active));
      s.machine.apply('committed');
      s.interval = undefined;
      s.txn = undefined;
      this.#prepared.delete(req.checkpointId);
      this.#intervals.delete(i.seq);
      kafkaEvents.emit('transaction', { jobId: this.#o.jobId, taskId: this.#o.taskId, outcome: 'committed' });
    } catch (e) {
      const err = kafkaError(where, e);
      // The checkpoint fails and the task with it: nothing after this interval may be committed.
      this.#queue.fail(err);
      await this.#abandon(s, i, err);
      throw err;
    }
  }

  /** Interval i cannot commit: abort its transaction if the slot still can; the slot is failed. */
  async #abandon(s: Slot, i: Interval, err: unknown): Promise<void> {
    const state = s.machine.state;
    if (s.interval === i && s.txn && (state === 'open' || state === 'prepared' || state === 'committing')) {
      s.machine.apply('abort');
      const txn = s.txn;
      try {
        await withCoordinatorRetry(
          `${s.machine.where}: aborting`,
          () => txn.abort(),
          this.#retry(undefined, () => txn.isActive()),
        );
        s.machine.apply('aborted');
        s.interval = undefined;
        s.txn = undefined;
        kafkaEvents.emit('transaction', { jobId: this.#o.jobId, taskId: this.#o.taskId, outcome: 'aborted' });
      } catch {
        // Left to the next owner's fencing (or the transaction timeout).
      }
    }
    s.machine.apply('fail', err);
  }

  async latestCheckpoint(
    inputs: readonly { readonly source: { readonly uid: string }; readonly partition: number }[],
  ): Promise<CheckpointPointer | undefined> {
    const topics = inputs.flatMap((i) => {
      const t = (i.source as { topic?: unknown }).topic;
      return typeof t === 'string' ? [t] : [];
    });
    if (topics.length === 0) return undefined;
    // Fence first. In a rebalance the new owner may start before the old one stopped; a commit of
    // the old owner landing after the pointer was read would make this task restore the checkpoint
    // before it and emit that interval's output again. Once InitProducerId has bumped the epochs of
    // the task's transactional ids, the old owner's last transaction is complete (committed, with its
    // offsets, or aborted) and nothing of it can commit any more: the pointer read then is final.
    await this.#ready;
    // One admin client per Kafka object (instance), leased until this task closes.
    this.#admin ??= leaseAdmin(this.#o.kafka);
    const lease = this.#admin;
    lease.catch(() => {
      if (this.#admin === lease) this.#admin = undefined;
    });
    const { admin } = await lease;
    return readCommittedPointer(admin, this.#o.jobId, topics, this.#o.partition);
  }

  /** Drop everything not committed and disconnect. Never throws. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const cancelled = new StreamError(
      'JOB_CANCELLED',
      `task ${this.#o.taskId}: its Kafka sink closed before the records were sent`,
    );
    this.#cancel(cancelled);
    await this.#ready.catch(() => {});
    this.#queue.close(cancelled);
    await this.#queue.idle();
    // A commit under way finishes (its retries stop now): its outcome stands either way.
    await Promise.allSettled([...this.#commits]);
    for (const s of this.#slots) {
      const txn = s.txn;
      const state = s.machine.state;
      if (txn && (state === 'open' || state === 'prepared' || state === 'failed')) {
        // open/prepared -> aborting -> idle; failed stays failed (a best-effort abort).
        s.machine.apply('abort');
        const aborted = await txn.abort().then(
          () => true,
          () => false,
        );
        if (state !== 'failed') s.machine.apply(aborted ? 'aborted' : 'fail');
        if (aborted)
          kafkaEvents.emit('transaction', {
            jobId: this.#o.jobId,
            taskId: this.#o.taskId,
            outcome: 'aborted',
          });
      }
      s.machine.apply('shutdown');
    }
    const admin = this.#admin;
    this.#admin = undefined;
    await admin?.then((l) => l.release()).catch(() => {});
    await Promise.allSettled(
      [...this.#slots.map((s) => s.producer), ...(this.#data ? [this.#data] : [])].map((p) => p.disconnect()),
    );
  }
}

/** The positions of a commit request as sendOffsets topics, each carrying the checkpoint pointer. */
function offsetsOf(
  req: CommitRequest,
): { topic: string; partitions: { partition: number; offset: string; metadata: string }[] }[] {
  const metadata = encodePointer(req.pointer);
  const byTopic = new Map<string, { partition: number; offset: string; metadata: string }[]>();
  for (const p of req.positions) {
    if (!isKafkaPosition(p.position)) continue;
    const list = byTopic.get(p.position.topic) ?? [];
    list.push({ partition: p.partition, offset: p.position.offset, metadata });
    byTopic.set(p.position.topic, list);
  }
  return [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
}
