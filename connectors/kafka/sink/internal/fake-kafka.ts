/**
 * A broker-less stand-in for the parts of kafkajs's Kafka, Producer, Transaction and Admin the sink
 * uses, for unit tests. It models what matters for order and failure:
 *
 * - Calls complete when the fake says so, not when they are made. `completion` picks the order in
 *   which pending calls complete: 'lifo' (every call pending at the next turn of the event loop
 *   completes in reverse order: concurrent sends take their place in the log out of order, as
 *   concurrent kafkajs sendBatch calls can), 'fifo', or 'manual' (the test calls `release`).
 * - A send's records are appended to their partition logs when it completes; a partition log is
 *   what a reader of the partition sees, in offset order.
 * - `failWhen` hooks decide, per call, to fail it with an error shaped like kafkajs's.
 * - kafkajs's rules that the sink must keep: one open transaction per producer; a transaction's
 *   methods fail once it ended; and (with `endOnFailedEndTxn`, as kafkajs 2.2.4) a failed
 *   commit or abort ends the transaction, so it cannot be retried.
 */
import type { Kafka, Message } from '../../internal/kafkajs.ts';

export type FakeOp = 'connect' | 'begin' | 'send' | 'sendOffsets' | 'commit' | 'abort';

export interface FakeCall {
  readonly op: FakeOp;
  /** The transactional id of the producer ('' for a non-transactional one). */
  readonly producer: string;
  /** The transaction (numbered across the fake), for begin/send/sendOffsets/commit/abort. */
  readonly txn: number | undefined;
  /** Records in a send. */
  readonly count: number;
  /** How many calls of this op this producer made before (0 for its first). */
  readonly nth: number;
}

export interface FakeRecord {
  readonly topic: string;
  readonly partition: number;
  readonly key: string | null;
  readonly value: string;
  readonly producer: string;
  readonly txn: number | undefined;
}

/** An error shaped like kafkajs's KafkaJSProtocolError for Kafka error `type`. */
export class FakeProtocolError extends Error {
  readonly type: string;
  readonly retriable: boolean;
  constructor(type: string, retriable: boolean) {
    super(`fake broker: ${type}`);
    this.name = 'KafkaJSProtocolError';
    this.type = type;
    this.retriable = retriable;
  }
}

/** kafkajs's KafkaJSNonRetriableError (e.g. "Cannot continue to use transaction once ended"). */
export class FakeNonRetriableError extends Error {
  readonly retriable = false;
  constructor(message: string) {
    super(message);
    this.name = 'KafkaJSNonRetriableError';
  }
}

interface Pending {
  readonly call: FakeCall;
  readonly effect: () => void;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

export class FakeKafka {
  completion: 'lifo' | 'fifo' | 'manual' = 'lifo';
  /** Partitions of every topic. */
  partitions = 3;
  /** Each hook may return an error to fail a call with (checked when the call completes). */
  failWhen: ((call: FakeCall) => Error | undefined)[] = [];
  /** As kafkajs 2.2.4: a failed commit or abort ends the transaction (it cannot be retried). */
  endOnFailedEndTxn = false;

  readonly logs = new Map<string, FakeRecord[]>();
  readonly outcomes = new Map<number, 'open' | 'committed' | 'aborted'>();
  /** Every completed call, in completion order. */
  readonly completed: FakeCall[] = [];
  /** Offsets committed by committed transactions: `${group}/${topic}/${partition}` -> offset, metadata. */
  readonly offsets = new Map<string, { offset: string; metadata: string }>();
  /** Most send calls pending at once, over the fake's life. */
  maxSendsInFlight = 0;
  admins = 0;
  adminsConnected = 0;
  adminsDisconnected = 0;

  #pending: Pending[] = [];
  #settling = false;
  #txns = 0;
  #nth = new Map<string, number>();
  #transactional = new Map<
    string,
    { open: number | undefined; offsets: Map<string, { offset: string; metadata: string }> }
  >();

  /** Calls made and not completed yet. */
  get pending(): readonly FakeCall[] {
    return this.#pending.map((p) => p.call);
  }

  /** This fake as kafkajs's Kafka type (it implements only what the sink uses). */
  asKafka(): Kafka {
    return this as unknown as Kafka;
  }

  /** Records of `topic` in partition order, each partition in log (offset) order. */
  log(topic: string, partition: number): FakeRecord[] {
    return this.logs.get(`${topic}/${partition}`) ?? [];
  }

  /** What a read_committed reader of the partition sees, in offset order. */
  committed(topic: string, partition: number): FakeRecord[] {
    return this.log(topic, partition).filter(
      (r) => r.txn === undefined || this.outcomes.get(r.txn) === 'committed',
    );
  }

  /** manual: complete the pending call at `index` (default the oldest). */
  release(index = 0): void {
    const [p] = this.#pending.splice(index, 1);
    if (p) this.#complete(p);
  }

  producer(config: { transactionalId?: string; idempotent?: boolean }): unknown {
    const id = config.transactionalId ?? '';
    const state = {
      open: undefined as number | undefined,
      offsets: new Map<string, { offset: string; metadata: string }>(),
    };
    if (id) this.#transactional.set(id, state);
    const producer = {
      connect: () => this.#call({ op: 'connect', producer: id, txn: undefined, count: 0 }, () => {}),
      disconnect: async () => {},
      sendBatch: ({ topicMessages }: { topicMessages: { topic: string; messages: Message[] }[] }) =>
        this.#send(id, undefined, topicMessages),
      transaction: async () => {
        if (state.open !== undefined)
          throw new FakeNonRetriableError('There is already an ongoing transaction for this producer.');
        const txn = ++this.#txns;
        await this.#call({ op: 'begin', producer: id, txn, count: 0 }, () => {
          if (state.open !== undefined)
            throw new FakeNonRetriableError('There is already an ongoing transaction for this producer.');
          state.open = txn;
          state.offsets = new Map();
          this.outcomes.set(txn, 'open');
        });
        let ended = false;
        const guard = <T>(fn: () => Promise<T>): Promise<T> =>
          ended
            ? Promise.reject(new FakeNonRetriableError('Cannot continue to use transaction once ended'))
            : fn();
        const end = (op: 'commit' | 'abort') =>
          guard(async () => {
            try {
              await this.#call({ op, producer: id, txn, count: 0 }, () => {
                this.outcomes.set(txn, op === 'commit' ? 'committed' : 'aborted');
                if (op === 'commit') for (const [k, v] of state.offsets) this.offsets.set(k, v);
                state.open = undefined;
                ended = true;
              });
            } catch (e) {
              if (this.endOnFailedEndTxn) ended = true;
              throw e;
            }
          });
        return {
          sendBatch: ({ topicMessages }: { topicMessages: { topic: string; messages: Message[] }[] }) =>
            guard(() => this.#send(id, txn, topicMessages)),
          sendOffsets: (o: {
            consumerGroupId: string;
            topics: {
              topic: string;
              partitions: { partition: number; offset: string; metadata?: string }[];
            }[];
          }) =>
            guard(() =>
              this.#call({ op: 'sendOffsets', producer: id, txn, count: 0 }, () => {
                for (const t of o.topics)
                  for (const p of t.partitions)
                    state.offsets.set(`${o.consumerGroupId}/${t.topic}/${p.partition}`, {
                      offset: p.offset,
                      metadata: p.metadata ?? '',
                    });
              }),
            ),
          commit: () => end('commit'),
          abort: () => end('abort'),
          isActive: () => !ended,
        };
      },
    };
    return producer;
  }

  admin(): unknown {
    this.admins++;
    return {
      connect: async () => {
        this.adminsConnected++;
      },
      disconnect: async () => {
        this.adminsDisconnected++;
      },
      fetchOffsets: async ({ groupId, topics }: { groupId: string; topics: string[] }) =>
        topics.map((topic) => ({
          topic,
          partitions: [...Array(this.partitions).keys()].map((partition) => {
            const o = this.offsets.get(`${groupId}/${topic}/${partition}`);
            return { partition, offset: o?.offset ?? '-1', metadata: o?.metadata ?? null };
          }),
        })),
    };
  }

  #send(
    producer: string,
    txn: number | undefined,
    topicMessages: { topic: string; messages: Message[] }[],
  ): Promise<void> {
    // The records as they are now: the caller may not change what it handed over.
    const records: FakeRecord[] = topicMessages.flatMap(({ topic, messages }) =>
      messages.map((m) => ({
        topic,
        partition: m.partition ?? partitionOf(m.key, this.partitions),
        key: m.key === null || m.key === undefined ? null : String(m.key),
        value: String(m.value),
        producer,
        txn,
      })),
    );
    const sending = this.#call({ op: 'send', producer, txn, count: records.length }, () => {
      for (const r of records) {
        const k = `${r.topic}/${r.partition}`;
        let log = this.logs.get(k);
        if (!log) {
          log = [];
          this.logs.set(k, log);
        }
        log.push(r);
      }
    });
    this.maxSendsInFlight = Math.max(
      this.maxSendsInFlight,
      this.#pending.filter((p) => p.call.op === 'send').length,
    );
    return sending;
  }

  #call(c: Omit<FakeCall, 'nth'>, effect: () => void): Promise<void> {
    const key = `${c.producer}:${c.op}`;
    const nth = this.#nth.get(key) ?? 0;
    this.#nth.set(key, nth + 1);
    const call: FakeCall = { ...c, nth };
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ call, effect, resolve, reject });
      if (this.completion !== 'manual') this.#settleSoon();
    });
  }

  /** At the next turn of the event loop, complete every pending call (in LIFO or FIFO order). */
  #settleSoon(): void {
    if (this.#settling) return;
    this.#settling = true;
    setImmediate(() => {
      this.#settling = false;
      const batch = this.#pending;
      this.#pending = [];
      if (this.completion === 'lifo') batch.reverse();
      for (const p of batch) this.#complete(p);
    });
  }

  #complete(p: Pending): void {
    for (const hook of this.failWhen) {
      const e = hook(p.call);
      if (e) {
        p.reject(e);
        return;
      }
    }
    try {
      p.effect();
    } catch (e) {
      p.reject(e);
      return;
    }
    this.completed.push(p.call);
    p.resolve();
  }
}

function partitionOf(key: Message['key'], partitions: number): number {
  if (key === null || key === undefined) return 0;
  let h = 0;
  for (const c of String(key)) h = (h * 31 + c.charCodeAt(0)) | 0;
  return Math.abs(h) % partitions;
}
