import type {
  PollingSourceReader,
  PullSourceReader,
  SourceBatch,
  SourceReader,
  SourceRecord,
} from '../api/source.ts';

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

/** A barrier or the end in the queue; everything else in it is a record (a SourceRecord). */
class Marker {
  readonly element: Extract<ChannelElement, { kind: 'barrier' | 'end' }>;
  constructor(element: Extract<ChannelElement, { kind: 'barrier' | 'end' }>) {
    this.element = element;
  }
}

/** A record in the queue: as its reader gave it, or replayed from channel state. */
export type QueuedRecord = SourceRecord<unknown> | InflightRecord;

type Queued = QueuedRecord | Marker;

/** The record element `take` hands out: one per channel, filled anew by each take. */
interface RecordSlot {
  kind: 'record';
  value: unknown;
  timestamp: number | undefined;
  tag: string | undefined;
  origin: unknown;
}

/**
 * One input channel of a task: the one buffer between a source partition's reader and the task loop.
 * The channel pulls the reader (`pollNext`, synchronous) up to its capacity, and again once the task
 * has drained it to half; when the reader has nothing it waits for the reader's availability signal
 * (`onAvailable`) instead of asking again on a timer. A reader whose data arrives on its own (a Kafka
 * fetch) may signal from the code that receives it: the records then go into the queue in the same
 * step. Backpressure is this one rule; a Kafka reader keeps what the channel could not take and
 * pauses its partition until the channel took it.
 *
 * Position contract: `position` is the source position after the last record *queued*, updated in
 * the same synchronous step as the records are queued. The channel also remembers the position at
 * the end of each batch still queued (`#bounds`), so that a barrier goes in at a batch boundary
 * near the head (`insertBarrier`), with the resume point of the records before it, rather than
 * behind everything queued: a checkpoint waits for a few hundred records per channel, not for a full
 * channel (5000 records of a Kafka partition). The records queued behind the barrier belong to the
 * next checkpoint; a restore reads them again from the source.
 */
export class InputChannel {
  readonly index: number;
  readonly sourceUid: string;
  readonly partition: number;
  /** Records (and barriers) the channel holds before it stops pulling its reader. */
  capacity: number;
  position: unknown;
  /** Blocked by barrier alignment; the task does not take elements from it. */
  blocked = false;
  /** Held back on request (testing and operations); the task does not take elements from it. */
  held = false;
  /** The `end` element was taken: the partition is exhausted. */
  finished = false;
  /** The reader reported it has no data now. */
  sourceIdle = false;
  /** Why the reader failed (thrown by its `pollNext`); the task fails with it. */
  failure: unknown;

  #queue: Queued[] = [];
  #head = 0;
  /** Records queued so far, and taken so far (markers not counted). */
  #pushed = 0;
  #taken = 0;
  /** Per batch still queued (oldest first): the record count at its end, and the position there. */
  #bounds: { readonly seq: number; position: unknown }[] = [];
  #reader: PullSourceReader<unknown> | undefined;
  #maxBatch = 1;
  /** The reader said it has nothing; it calls `#onAvailable` when it has. */
  #waiting = false;
  /** Inside `#fill`: a listener called synchronously only asks the running fill to go on. */
  #filling = false;
  #again = false;
  /** The reader returned 'end' (queued); it is not asked again. */
  #ended = false;
  #stopped = false;
  readonly #slot: RecordSlot = {
    kind: 'record',
    value: undefined,
    timestamp: undefined,
    tag: undefined,
    origin: undefined,
  };
  readonly #wake: () => void;
  readonly #onAvailable = (): void => {
    this.#waiting = false;
    if (this.#filling) this.#again = true;
    else this.#fill(true);
  };

  constructor(opts: {
    index: number;
    sourceUid: string;
    partition: number;
    capacity: number;
    position: unknown;
    /** Called when records (or the end, or a failure) were queued outside the task loop. */
    wake: () => void;
  }) {
    this.index = opts.index;
    this.sourceUid = opts.sourceUid;
    this.partition = opts.partition;
    this.capacity = opts.capacity;
    this.position = opts.position;
    this.#wake = opts.wake;
  }

  get length(): number {
    return this.#queue.length - this.#head;
  }

  get available(): boolean {
    return !this.blocked && !this.held && !this.finished && this.length > 0;
  }

  /**
   * Start taking `reader`'s records (at most `maxBatch` per `pollNext`). A reader of the earlier
   * polling contract is adapted (`pullReader`). Its `bufferRecords`, when set, is the capacity.
   */
  attach(reader: SourceReader<unknown>, maxBatch: number): void {
    const r = pullReader(reader);
    this.#reader = r;
    this.#maxBatch = Math.max(1, maxBatch);
    if (r.bufferRecords !== undefined && r.bufferRecords >= 1) this.capacity = r.bufferRecords;
    this.#fill(false);
  }

  peek(): ChannelElement | undefined {
    const q = this.#queue[this.#head];
    return q === undefined ? undefined : this.#element(q);
  }

  /**
   * The next element. A record element is valid until the next `take` (one object per channel,
   * filled anew). Taking the queue down to half its capacity asks the reader for more.
   */
  take(): ChannelElement | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const q = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined as unknown as Queued;
    if (!(q instanceof Marker)) this.#taken++;
    this.#afterTake();
    return this.#element(q);
  }

  /**
   * Hands the records at the head to `each`, up to `max` and up to the next barrier or end, and
   * returns how many: 0 when a marker (or nothing) is at the head, which `take` hands out. A record is
   * the queued one itself, valid during the call only. What `take` does per element is done once per
   * run: the queue is compacted, and once down to half its capacity the reader is asked for more. A
   * record whose `each` throws counts as taken, as with `take`.
   */
  takeRecords(max: number, each: (record: QueuedRecord, channel: InputChannel) => void): number {
    let n = 0;
    try {
      // The head and the count move before each call, so that the channel is consistent should the
      // record's processing look at it.
      while (n < max && this.#head < this.#queue.length) {
        const q = this.#queue;
        const r = q[this.#head]!;
        if (r instanceof Marker) break;
        q[this.#head++] = undefined as unknown as Queued;
        this.#taken++;
        n++;
        each(r, this);
      }
    } finally {
      if (n > 0) this.#afterTake();
    }
    return n;
  }

  /** After taking: compact the queue now and then; at half the capacity, ask the reader for more. */
  #afterTake(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (!this.#waiting && this.#reader !== undefined && this.length * 2 <= this.capacity) this.#fill(false);
  }

  /**
   * Put records replayed from channel state in front of everything the reader will deliver (before
   * the reader is attached: the channel's position, the restored one, is the position after them).
   */
  prepend(records: readonly InflightRecord[]): void {
    this.#queue = [...records, ...this.#queue.slice(this.#head)];
    this.#head = 0;
    this.#pushed += records.length;
    this.#bounds = [{ seq: this.#pushed, position: this.position }];
  }

  /**
   * Insert barrier `id` at a batch boundary after the records the task has taken and after any
   * barrier queued (barriers keep their order), with the position there: the last boundary within
   * BARRIER_BUDGET records of the head (else the first one), so that a checkpoint takes what is
   * queued when that is little, and waits for little when much is queued. After the last record (the
   * current position, before a queued end of input) when that is the boundary chosen.
   */
  insertBarrier(checkpointId: number): void {
    const q = this.#queue;
    // Records from the head up to the last marker: the barrier goes after them.
    let before = 0;
    let last = -1;
    for (let i = q.length - 1; i >= this.#head; i--) {
      const m = q[i];
      if (m instanceof Marker && m.element.kind === 'barrier') {
        last = i;
        break;
      }
    }
    for (let i = this.#head; i < last; i++) if (!(q[i] instanceof Marker)) before++;
    // The last boundary within BARRIER_BUDGET records of the head, else the first after it.
    const from = this.#taken + before;
    let bound: { readonly seq: number; position: unknown } | undefined;
    for (const b of this.#bounds) {
      if (b.seq < from) continue;
      if (bound !== undefined && b.seq > this.#taken + BARRIER_BUDGET) break;
      bound = b;
    }
    if (bound === undefined || bound.seq >= this.#pushed) {
      // After every record, before the end of input if it is queued.
      const barrier = new Marker({ kind: 'barrier', checkpointId, position: this.position });
      if (q.at(-1) === END && q.length > this.#head) q.splice(q.length - 1, 0, barrier);
      else q.push(barrier);
    } else {
      let records = 0;
      let at = this.#head;
      const want = bound.seq - this.#taken;
      while (records < want || at <= last) {
        if (!(q[at] instanceof Marker)) records++;
        at++;
      }
      q.splice(at, 0, new Marker({ kind: 'barrier', checkpointId, position: bound.position }));
    }
    this.#wake();
  }

  /** Records queued before barrier `id` (or all records when `id` is undefined). */
  recordsBefore(checkpointId?: number): InflightRecord[] {
    const out: InflightRecord[] = [];
    const reader = this.#reader;
    const store = reader?.storedOrigin?.bind(reader);
    for (let i = this.#head; i < this.#queue.length; i++) {
      const q = this.#queue[i]!;
      if (q instanceof Marker) {
        if (q.element.kind === 'barrier' && q.element.checkpointId === checkpointId) break;
        continue;
      }
      const origin = q.origin === undefined || store === undefined ? q.origin : store(q.origin);
      out.push({
        value: q.value,
        timestamp: q.timestamp,
        ...(q.tag === undefined ? {} : { tag: q.tag }),
        ...(origin === undefined ? {} : { origin }),
      });
    }
    return out;
  }

  /** Remove barrier `id` from the queue (it was overtaken) and return its position. */
  removeBarrier(checkpointId: number): unknown {
    for (let i = this.#head; i < this.#queue.length; i++) {
      const q = this.#queue[i]!;
      if (q instanceof Marker && q.element.kind === 'barrier' && q.element.checkpointId === checkpointId) {
        this.#queue.splice(i, 1);
        return q.element.position;
      }
    }
    return undefined;
  }

  /** Drop every barrier of the given checkpoint ids (aborted checkpoints). */
  dropBarriers(ids: ReadonlySet<number>): void {
    for (let i = this.#queue.length - 1; i >= this.#head; i--) {
      const q = this.#queue[i]!;
      if (q instanceof Marker && q.element.kind === 'barrier' && ids.has(q.element.checkpointId))
        this.#queue.splice(i, 1);
    }
  }

  /** Stop taking from the reader (the task closes the reader itself). */
  stop(): void {
    this.#stopped = true;
  }

  #element(q: Queued): ChannelElement {
    if (q instanceof Marker) return q.element;
    const slot = this.#slot;
    slot.value = q.value;
    slot.timestamp = q.timestamp;
    slot.tag = q.tag;
    slot.origin = q.origin;
    return slot;
  }

  /**
   * Pull the reader until the queue is full or the reader has nothing (then wait for its signal).
   * `signalled`: called from the reader's signal, outside the task loop, which is woken when
   * something was queued.
   */
  #fill(signalled: boolean): void {
    const reader = this.#reader;
    if (reader === undefined || this.#stopped || this.#ended || this.#waiting || this.#filling) return;
    this.#filling = true;
    let queued = false;
    let empties = 0;
    try {
      while (this.length < this.capacity) {
        const b = reader.pollNext(Math.min(this.#maxBatch, this.capacity - this.length));
        if (this.#stopped) return;
        if (b === 'end') {
          this.#ended = true;
          this.#queue.push(END);
          queued = true;
          return;
        }
        if (b === undefined || (b.records.length === 0 && ++empties > 1)) {
          if (b !== undefined) this.#took(b);
          // Nothing now: wait for the signal (the reader may give it at once, even from inside).
          this.#waiting = true;
          this.#again = false;
          reader.onAvailable(this.#onAvailable);
          if (!this.#again) return;
          continue;
        }
        if (b.records.length > 0) {
          empties = 0;
          queued = true;
        }
        this.#took(b);
      }
    } catch (e) {
      if (!this.#stopped) {
        this.failure = e;
        queued = true;
      }
    } finally {
      this.#filling = false;
      if (queued && signalled) this.#wake();
    }
  }

  #took(b: SourceBatch<unknown>): void {
    const q = this.#queue;
    const n = b.records.length;
    for (let i = 0; i < n; i++) q.push(b.records[i]!);
    this.#pushed += n;
    this.position = b.position;
    const bounds = this.#bounds;
    while (bounds.length > 0 && bounds[0]!.seq < this.#taken) bounds.shift();
    const lastBound = bounds.at(-1);
    if (lastBound !== undefined && lastBound.seq === this.#pushed) lastBound.position = b.position;
    else bounds.push({ seq: this.#pushed, position: b.position });
    this.sourceIdle = b.records.length === 0 && b.idle === true;
  }
}

const END = new Marker({ kind: 'end' });

/**
 * Records a barrier may wait behind in one channel (`insertBarrier`): about 2.5 ms of processing at
 * 5 µs per record, against 25 ms or more behind a full Kafka channel (5000 records).
 */
export const BARRIER_BUDGET = 512;

/**
 * `reader` as a pulled reader: itself, or an adapter over a reader of the earlier polling contract
 * (`PollingSourceReader`): `pollNext` starts one `poll(max)` when nothing is at hand and returns
 * `undefined`; when the poll settles, the adapter signals, and the next `pollNext` returns its batch
 * (or throws its error). An empty batch of such a reader (it waited for data in vain) starts the
 * next poll at once, as the old runtime asked again.
 */
export function pullReader<T>(reader: SourceReader<T>): PullSourceReader<T> {
  if (typeof (reader as PullSourceReader<T>).pollNext === 'function') return reader as PullSourceReader<T>;
  return new PollingReaderAdapter(reader as PollingSourceReader<T>);
}

class PollingReaderAdapter<T> implements PullSourceReader<T> {
  readonly #reader: PollingSourceReader<T>;
  #result: SourceBatch<T> | 'end' | undefined;
  #failure: { error: unknown } | undefined;
  #polling = false;
  #listener: (() => void) | undefined;

  constructor(reader: PollingSourceReader<T>) {
    this.#reader = reader;
  }

  pollNext(max: number): SourceBatch<T> | 'end' | undefined {
    if (this.#failure) throw this.#failure.error;
    const r = this.#result;
    if (r === 'end') return r;
    if (r !== undefined) {
      this.#result = undefined;
      if (r.records.length === 0) this.#poll(max);
      return r;
    }
    this.#poll(max);
    return undefined;
  }

  onAvailable(listener: () => void): void {
    this.#listener = listener;
    if (this.#result !== undefined || this.#failure) this.#signal();
  }

  close(): Promise<void> {
    return this.#reader.close();
  }

  #poll(max: number): void {
    if (this.#polling) return;
    this.#polling = true;
    this.#reader.poll(max).then(
      (b) => {
        this.#polling = false;
        this.#result = b;
        this.#signal();
      },
      (e: unknown) => {
        this.#polling = false;
        this.#failure = { error: e };
        this.#signal();
      },
    );
  }

  #signal(): void {
    const l = this.#listener;
    this.#listener = undefined;
    l?.();
  }
}
