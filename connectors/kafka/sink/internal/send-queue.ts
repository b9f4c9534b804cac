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

/**
 * Consecutive records of one interval and one topic, in write order: the queue keeps records in runs,
 * so a record costs a slot in two arrays, not an object and a map update of its own.
 */
interface Run {
  readonly interval: number;
  readonly topic: string;
  readonly messages: Message[];
  /** Per message, its size (`sizeOf`). */
  readonly bytes: number[];
}

/** Records per run at most: a run taken by a send is sliced, never copied whole again. */
const RUN_RECORDS = 4096;

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
 * Batching: while a send is in flight, written records accumulate (in runs of one interval and
 * topic); when its acknowledgement arrives,
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
  /** Queued runs, oldest first, from `#head`; the oldest is sent from `#at` on. */
  #runs: Run[] = [];
  #head = 0;
  #at = 0;
  /** Records queued or in flight. */
  #pending = 0;
  #inFlight: Promise<void> | undefined;
  /** The interval of the send in flight. */
  #inFlightInterval = -1;
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
    let run = this.#runs.length > this.#head ? this.#runs[this.#runs.length - 1] : undefined;
    if (
      run === undefined ||
      run.interval !== interval ||
      run.topic !== topic ||
      run.messages.length >= RUN_RECORDS
    ) {
      run = { interval, topic, messages: [], bytes: [] };
      this.#runs.push(run);
    }
    run.messages.push(message);
    run.bytes.push(sizeOf(message));
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

  /**
   * Every record of `interval` and of the ones before it acknowledged: the queue is FIFO by interval,
   * so none is in flight, and the oldest queued record (if any) is of a later interval.
   */
  #settled(interval: number): boolean {
    if (this.#inFlight !== undefined && this.#inFlightInterval <= interval) return false;
    const oldest = this.#runs[this.#head];
    return oldest === undefined || oldest.interval > interval;
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
    if (this.#head >= this.#runs.length) return;
    const interval = this.#runs[this.#head]!.interval;
    const byTopic = new Map<string, Message[]>();
    let count = 0;
    let bytes = 0;
    let full = false;
    while (!full && this.#head < this.#runs.length && count < this.#o.maxBatchRecords) {
      const run = this.#runs[this.#head]!;
      if (run.interval !== interval) break;
      const from = this.#at;
      let to = from;
      const end = Math.min(run.messages.length, from + this.#o.maxBatchRecords - count);
      while (to < end) {
        const b = run.bytes[to]!;
        if (count + (to - from) > 0 && bytes + b > this.#o.maxBatchBytes) {
          full = true;
          break;
        }
        bytes += b;
        to++;
      }
      if (to > from) {
        const taken = from === 0 && to === run.messages.length ? run.messages : run.messages.slice(from, to);
        const list = byTopic.get(run.topic);
        if (list === undefined) byTopic.set(run.topic, taken);
        else for (const m of taken) list.push(m);
        count += to - from;
      }
      if (to === run.messages.length) {
        this.#runs[this.#head++] = undefined as unknown as Run;
        this.#at = 0;
      } else this.#at = to;
    }
    if (this.#head > 256 && this.#head * 2 > this.#runs.length) {
      this.#runs = this.#runs.slice(this.#head);
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
    this.#inFlightInterval = interval;
    this.#inFlight = sent.then(
      () => {
        this.#inFlight = undefined;
        this.#acknowledge(count);
        this.#pump();
      },
      (e: unknown) => {
        this.#inFlight = undefined;
        this.fail(e);
      },
    );
  }

  #acknowledge(count: number): void {
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

/**
 * A record's bytes for the batch limit: exact for buffers and long strings; for a string of up to
 * SHORT_STRING characters three bytes per character, its largest UTF-8 size (one UTF-16 unit is at
 * most three bytes), so no scan of the string per record (kafkajs scans it again to encode it). The
 * limit is a bound on the request size, never exceeded; short records reach `maxBatchRecords` first.
 */
function sizeOf(m: Message): number {
  let n = 0;
  if (m.key) n += typeof m.key === 'string' ? stringBytes(m.key) : m.key.length;
  if (m.value) n += typeof m.value === 'string' ? stringBytes(m.value) : m.value.length;
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

const SHORT_STRING = 1024;

function stringBytes(s: string): number {
  return s.length <= SHORT_STRING ? s.length * 3 : Buffer.byteLength(s);
}
