import { StreamError } from '../../../../framework/index.ts';
import type { Message } from '../../internal/kafkajs.ts';

/** One send call's records: per topic, in the order they were written. */
export type TopicMessages = { topic: string; messages: Message[] }[];

export interface SendQueueOptions {
  /** Most records in one send call. */
  readonly maxBatchRecords: number;
  /** Most bytes (keys, values, headers) in one send call; one larger record still goes alone. */
  readonly maxBatchBytes: number;
  /** Records written and not yet acknowledged before `ready()` holds the writer back. */
  readonly maxBufferedRecords: number;
  /**
   * Sends records of interval `interval`, resolving when the broker acknowledged them. Never called
   * while another call is in flight.
   */
  readonly send: (interval: number, records: TopicMessages, count: number) => Promise<void>;
  /** Runs the first send of a burst; default `queueMicrotask` (after the writer's synchronous run). */
  readonly schedule?: (run: () => void) => void;
}

interface Entry {
  readonly interval: number;
  readonly topic: string;
  readonly message: Message;
  readonly bytes: number;
}

interface Waiter {
  readonly interval: number;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

/**
 * A task's records on their way to Kafka, in the order they were written: at most one send call in
 * flight, so that records reach each partition in that order (concurrent sendBatch calls of one
 * kafkajs producer may take their sequence numbers in another order, and two producers would
 * interleave). Records are tagged with their checkpoint interval (0, 1, 2 ...); a send carries
 * records of one interval only, and since the queue is FIFO the first record of interval n+1 is sent
 * only after every record of interval n was acknowledged.
 *
 * Batching: while a send is in flight, written records accumulate; when its acknowledgement arrives,
 * the next send takes up to `maxBatchRecords` / `maxBatchBytes` of them at once. The first send
 * after a pause starts once the writer's synchronous run ends (`schedule`).
 *
 * Backpressure: `ready()` is a promise while `maxBufferedRecords` or more records are queued or in
 * flight, resolved when that falls to half (rejected if the queue fails).
 *
 * Failure: the first failed send stops the queue for good (an interval's transaction cannot skip a
 * send); `push` then throws it, and `ready`, `acknowledged` reject with it: never a hang.
 */
export class SendQueue {
  readonly #o: SendQueueOptions;
  #entries: Entry[] = [];
  #head = 0;
  /** Records queued or in flight, per interval. */
  readonly #outstanding = new Map<number, number>();
  #pending = 0;
  #inFlight: Promise<void> | undefined;
  #scheduled = false;
  #failure: unknown;
  #closed = false;
  #waiters: Waiter[] = [];
  #drained: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | undefined;
  /** Send calls made (for tests and metrics). */
  sends = 0;

  constructor(o: SendQueueOptions) {
    this.#o = o;
  }

  /** Records queued or in flight. */
  get pending(): number {
    return this.#pending;
  }

  get failure(): unknown {
    return this.#failure;
  }

  /** Queue one record of `interval` (never lower than the last pushed one). Throws after a failure. */
  push(interval: number, topic: string, message: Message): void {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed)
      throw new StreamError('KAFKA_TRANSACTION_STATE_INVALID', 'a record was written after close');
    this.#entries.push({ interval, topic, message, bytes: sizeOf(message) });
    this.#outstanding.set(interval, (this.#outstanding.get(interval) ?? 0) + 1);
    this.#pending++;
    this.#kick();
  }

  /** Backpressure: a promise while too much is queued or unacknowledged, else undefined. */
  ready(): Promise<void> | undefined {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#pending < this.#o.maxBufferedRecords) return undefined;
    if (!this.#drained) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#drained = { promise, resolve, reject };
    }
    return this.#drained.promise;
  }

  /** Resolves once every record of `interval` and of the intervals before it is acknowledged. */
  acknowledged(interval: number): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#settled(interval)) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ interval, resolve, reject }));
  }

  /**
   * Fail the queue from outside (its interval's commit failed): nothing more is sent, `push` throws
   * `reason`, waiters reject with it. The send in flight finishes.
   */
  fail(reason: unknown): void {
    this.#failure ??= reason;
    this.#release(this.#failure);
  }

  /** Stop: nothing more is sent; waiters are released with `reason`. The send in flight finishes. */
  close(reason: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#release(reason);
  }

  /** Resolves when no send is in flight (whatever its outcome). */
  async idle(): Promise<void> {
    await this.#inFlight?.catch(() => {});
  }

  #settled(interval: number): boolean {
    for (const [i, n] of this.#outstanding) if (i <= interval && n > 0) return false;
    return true;
  }

  #kick(): void {
    if (this.#inFlight !== undefined || this.#scheduled) return;
    this.#scheduled = true;
    (this.#o.schedule ?? queueMicrotask)(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  /** Start the next send: the oldest records, of one interval, up to the batch limits. */
  #pump(): void {
    if (this.#inFlight !== undefined || this.#failure !== undefined || this.#closed) return;
    if (this.#head >= this.#entries.length) return;
    const first = this.#entries[this.#head]!;
    const interval = first.interval;
    const byTopic = new Map<string, Message[]>();
    let count = 0;
    let bytes = 0;
    while (this.#head < this.#entries.length && count < this.#o.maxBatchRecords) {
      const e = this.#entries[this.#head]!;
      if (e.interval !== interval) break;
      if (count > 0 && bytes + e.bytes > this.#o.maxBatchBytes) break;
      let list = byTopic.get(e.topic);
      if (!list) {
        list = [];
        byTopic.set(e.topic, list);
      }
      list.push(e.message);
      count++;
      bytes += e.bytes;
      this.#head++;
    }
    if (this.#head > 4096 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    const records = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    this.sends++;
    let sent: Promise<void>;
    try {
      sent = this.#o.send(interval, records, count);
    } catch (e) {
      sent = Promise.reject(e);
    }
    this.#inFlight = sent.then(
      () => {
        this.#inFlight = undefined;
        this.#acknowledge(interval, count);
        this.#pump();
      },
      (e: unknown) => {
        this.#inFlight = undefined;
        this.fail(e);
      },
    );
  }

  #acknowledge(interval: number, count: number): void {
    const left = (this.#outstanding.get(interval) ?? 0) - count;
    if (left > 0) this.#outstanding.set(interval, left);
    else this.#outstanding.delete(interval);
    this.#pending -= count;
    if (this.#drained && this.#pending <= this.#o.maxBufferedRecords / 2) {
      const d = this.#drained;
      this.#drained = undefined;
      d.resolve();
    }
    if (this.#waiters.length > 0) {
      const still: Waiter[] = [];
      for (const w of this.#waiters) {
        if (this.#settled(w.interval)) w.resolve();
        else still.push(w);
      }
      this.#waiters = still;
    }
  }

  #release(reason: unknown): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(reason);
    const d = this.#drained;
    this.#drained = undefined;
    d?.reject(reason);
  }
}

function sizeOf(m: Message): number {
  let n = 0;
  if (m.key) n += typeof m.key === 'string' ? Buffer.byteLength(m.key) : m.key.length;
  if (m.value) n += typeof m.value === 'string' ? Buffer.byteLength(m.value) : m.value.length;
  if (m.headers) {
    for (const [k, v] of Object.entries(m.headers)) {
      n += k.length;
      if (typeof v === 'string') n += Buffer.byteLength(v);
      else if (Buffer.isBuffer(v)) n += v.length;
      else if (Array.isArray(v))
        for (const x of v) n += typeof x === 'string' ? Buffer.byteLength(x) : x.length;
    }
  }
  return n;
}
