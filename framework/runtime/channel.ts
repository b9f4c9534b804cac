import type { SourceReader } from '../api/source.ts';

/** What flows through an input channel, in order. */
export type ChannelElement =
  | {
      readonly kind: 'record';
      readonly value: unknown;
      readonly timestamp: number | undefined;
      readonly tag?: string | undefined;
      /** The source's own form of the record (SourceRecord.origin), for record errors. */
      readonly origin?: unknown;
    }
  | { readonly kind: 'barrier'; readonly checkpointId: number; readonly position: unknown }
  | { readonly kind: 'end' };

/** A record buffered in a channel, as saved in an unaligned checkpoint (FLIP-76 channel state). */
export interface InflightRecord {
  readonly value: unknown;
  readonly timestamp: number | undefined;
  readonly tag?: string | undefined;
  readonly origin?: unknown;
}

/**
 * One input channel of a task: a bounded queue between one source partition's reader (the pump,
 * asynchronous) and the task loop (synchronous). Backpressure: the pump stops polling while the
 * queue is full.
 *
 * Position contract: `position` is the source position after the last record *pushed* into the
 * queue, updated in the same synchronous step as the push, so a barrier appended at the tail
 * carries exactly the resume point of the records before it.
 */
export class InputChannel {
  readonly index: number;
  readonly sourceUid: string;
  readonly partition: number;
  readonly capacity: number;
  position: unknown;
  /** Blocked by barrier alignment; the task does not take elements from it. */
  blocked = false;
  /** Held back on request (testing and operations); the task does not take elements from it. */
  held = false;
  /** The `end` element was taken: the partition is exhausted. */
  finished = false;
  /** The reader reported it has no data now. */
  sourceIdle = false;
  /** Highest event timestamp taken from this channel. */
  maxTimestamp = Number.NEGATIVE_INFINITY;
  /** Processing time of the last record taken (for idleness). */
  lastRecordAt: number;
  failure: unknown;

  #queue: ChannelElement[] = [];
  #head = 0;
  #stopped = false;
  #spaceWaiter: (() => void) | undefined;
  readonly #wake: () => void;

  constructor(opts: {
    index: number;
    sourceUid: string;
    partition: number;
    capacity: number;
    position: unknown;
    now: number;
    wake: () => void;
  }) {
    this.index = opts.index;
    this.sourceUid = opts.sourceUid;
    this.partition = opts.partition;
    this.capacity = opts.capacity;
    this.position = opts.position;
    this.lastRecordAt = opts.now;
    this.#wake = opts.wake;
  }

  get length(): number {
    return this.#queue.length - this.#head;
  }

  get available(): boolean {
    return !this.blocked && !this.held && !this.finished && this.length > 0;
  }

  peek(): ChannelElement | undefined {
    return this.#queue[this.#head];
  }

  take(): ChannelElement | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const e = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined as unknown as ChannelElement;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (this.#spaceWaiter && this.length < this.capacity) {
      const w = this.#spaceWaiter;
      this.#spaceWaiter = undefined;
      w();
    }
    return e;
  }

  /** Put records replayed from channel state in front of everything the reader will deliver. */
  prepend(records: readonly InflightRecord[]): void {
    const rest = this.#queue.slice(this.#head);
    this.#queue = [...records.map((r) => ({ kind: 'record' as const, ...r })), ...rest];
    this.#head = 0;
  }

  /** Append barrier `id` at the tail with the current position. */
  appendBarrier(checkpointId: number): void {
    this.#queue.push({ kind: 'barrier', checkpointId, position: this.position });
    this.#wake();
  }

  /** Records queued before barrier `id` (or all records when `id` is undefined). */
  recordsBefore(checkpointId?: number): InflightRecord[] {
    const out: InflightRecord[] = [];
    for (let i = this.#head; i < this.#queue.length; i++) {
      const e = this.#queue[i]!;
      if (e.kind === 'barrier' && e.checkpointId === checkpointId) break;
      if (e.kind === 'record')
        out.push({
          value: e.value,
          timestamp: e.timestamp,
          ...(e.tag === undefined ? {} : { tag: e.tag }),
          ...(e.origin === undefined ? {} : { origin: e.origin }),
        });
    }
    return out;
  }

  /** Remove barrier `id` from the queue (it was overtaken) and return its position. */
  removeBarrier(checkpointId: number): unknown {
    for (let i = this.#head; i < this.#queue.length; i++) {
      const e = this.#queue[i]!;
      if (e.kind === 'barrier' && e.checkpointId === checkpointId) {
        this.#queue.splice(i, 1);
        return e.position;
      }
    }
    return undefined;
  }

  /** Drop every barrier of the given checkpoint ids (aborted checkpoints). */
  dropBarriers(ids: ReadonlySet<number>): void {
    for (let i = this.#queue.length - 1; i >= this.#head; i--) {
      const e = this.#queue[i]!;
      if (e.kind === 'barrier' && ids.has(e.checkpointId)) this.#queue.splice(i, 1);
    }
  }

  /** Run the reader until it ends or the channel stops. Errors are kept in `failure`. */
  async pump(reader: SourceReader<unknown>, maxBatch: number, idlePollMs: number): Promise<void> {
    try {
      while (!this.#stopped) {
        const room = this.capacity - this.length;
        if (room <= 0) {
          await new Promise<void>((resolve) => {
            this.#spaceWaiter = resolve;
          });
          continue;
        }
        const batch = await reader.poll(Math.min(maxBatch, room));
        if (this.#stopped) return;
        if (batch === 'end') {
          this.#queue.push({ kind: 'end' });
          this.#wake();
          return;
        }
        for (const r of batch.records)
          this.#queue.push({
            kind: 'record',
            value: r.value,
            timestamp: r.timestamp,
            tag: r.tag,
            origin: r.origin,
          });
        this.position = batch.position;
        this.sourceIdle = batch.records.length === 0 && batch.idle === true;
        if (batch.records.length > 0) this.#wake();
        else await new Promise((resolve) => setTimeout(resolve, idlePollMs));
      }
    } catch (e) {
      if (!this.#stopped) {
        this.failure = e;
        this.#wake();
      }
    }
  }

  stop(): void {
    this.#stopped = true;
    const w = this.#spaceWaiter;
    this.#spaceWaiter = undefined;
    w?.();
  }
}
