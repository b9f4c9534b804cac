import {
  type ErrorCode,
  type PullSourceReader,
  type SourceBatch,
  type SourceRecord,
  StreamError,
} from '../../../framework/index.ts';
import type { KafkaMessage } from '../internal/kafkajs.ts';

/** One Kafka record as decoders see it. */
export interface KafkaRecordIn {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: KafkaMessage['headers'];
  readonly timestamp: number;
}

/** A Kafka source position: the next offset to read. JSON-safe (it is stored in checkpoints). */
export interface KafkaPosition {
  readonly topic: string;
  readonly offset: string;
}

export function isKafkaPosition(p: unknown): p is KafkaPosition {
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof (p as KafkaPosition).topic === 'string' &&
    typeof (p as KafkaPosition).offset === 'string'
  );
}

/**
 * What a source does with a bad record (one that fails to decode, or one in the wrong partition):
 * `fail` the task, `skip` it (counted and logged), or emit it as a `DeadLetter` on the source's side
 * output DEAD_LETTER_TAG (same task, same transaction).
 */
export type RecordErrorPolicy = 'fail' | 'skip' | 'dead-letter';
/** The policy for records that fail to decode (`KafkaSourceOptions.onDecodeError`). */
export type DecodeErrorPolicy = RecordErrorPolicy;

/** A bad record as the source's side output DEAD_LETTER_TAG carries it: the record as it was read, and why. */
export interface DeadLetter {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly error: string;
  /**
   * Why: RECORD_DESERIALIZATION_FAILED (could not be decoded), KEY_GROUP_MISMATCH (wrong partition),
   * or the code of what a user function threw on it (USER_FUNCTION_FAILED, its `onError` policy).
   */
  readonly code?: ErrorCode;
}

export interface ReaderOptions<T> {
  readonly topic: string;
  readonly partition: number;
  readonly startOffset: bigint;
  /** Records the task's input channel holds for this reader (`KafkaSource` `bufferRecords`). */
  readonly capacity: number;
  /** The record -> element function (a user's `decode`), given each record as a `KafkaRecordIn`... */
  readonly decode?: (r: KafkaRecordIn) => T | Promise<T>;
  /** ... or a function of the value only (a serde, JSON), which needs no `KafkaRecordIn` per record. */
  readonly decodeValue?: (value: Buffer | null, topic: string) => T | Promise<T>;
  readonly onDecodeError: DecodeErrorPolicy;
  /** Called when the channel took every record the reader had kept after a fetch it could not take whole (the hub resumes the partition). */
  readonly onRoom: () => void;
  readonly onSkip?: (r: KafkaRecordIn, error: unknown) => void;
}

/** The part of one fetched batch not yet handed to the channel. */
interface Segment {
  readonly messages: readonly KafkaMessage[];
  /** The next message to hand out. */
  i: number;
  /** The position once every message is handed out, when the fetch covered filtered records after them. */
  to: bigint | undefined;
}

/** A decode that returned a promise (a registry fetching a schema): its outcome, once settled. */
interface AsyncDecode<T> {
  outcome: { readonly value: T } | { readonly error: unknown } | undefined;
}

/** `#decode`'s answers besides a value: the error is in `#decodeError`; a promise is being waited for. */
const FAILED: unique symbol = Symbol('decode failed');
const WAITING: unique symbol = Symbol('decode pending');

/**
 * The reader of one topic partition, fed by the instance's consumer (`offer`, from eachBatch) and
 * pulled by the task's input channel (`pollNext`). It holds no buffer of its own: `offer` signals
 * the channel, which takes the fetched records at once (decoding them on the way in) up to its
 * capacity. What the channel could not take (it is full) stays in the fetched batch, the hub pauses
 * the partition, and the channel takes the rest when the task has drained it to half; then the
 * partition is resumed (`onRoom`). Memory is thus bounded by the channel's capacity plus one fetch.
 *
 * Records before `expected` (a refetch after a seek or a resume) are dropped, so the task sees every
 * offset at most once and, from its start offset on, in order.
 */
export class PartitionReader<T> implements PullSourceReader<T> {
  readonly topic: string;
  readonly partition: number;
  readonly bufferRecords: number;
  readonly #o: ReaderOptions<T>;
  /** Fetched batches not yet handed out whole, oldest first. */
  #segments: Segment[] = [];
  /** The next offset the reader accepts. */
  #expected: bigint;
  /** The offset after the last record handed to the channel: the position. */
  #position: bigint;
  /** The position moved without records (a filtered fetch) and the channel has not been told. */
  #moved = false;
  #decoding: AsyncDecode<T> | undefined;
  #failure: { readonly error: unknown } | undefined;
  #decodeError: unknown;
  #listener: (() => void) | undefined;
  #full = false;
  #closed = false;
  skipped = 0;

  constructor(o: ReaderOptions<T>) {
    this.#o = o;
    this.topic = o.topic;
    this.partition = o.partition;
    this.bufferRecords = o.capacity;
    this.#expected = o.startOffset;
    this.#position = o.startOffset;
  }

  /** Whether the reader keeps fetched records the channel could not take (its partition is paused). */
  get isFull(): boolean {
    return this.#full;
  }

  get startOffset(): bigint {
    return this.#o.startOffset;
  }

  /** Fetched records not yet handed to the channel. */
  get held(): number {
    let n = 0;
    for (const s of this.#segments) n += s.messages.length - s.i;
    return n;
  }

  /**
   * A fetched batch, taken whole: the channel gets what it has room for at once (the reader signals
   * it), the rest stays here and the reader reports `full`, in which case the hub pauses the
   * partition until the channel took the rest. Returns the offset to resolve (the last message, or
   * the end of the fetched range) and whether the partition must pause.
   *
   * `fetched`, when given, is the offset range the fetch covered (first and last raw record at or
   * after the fetch offset, including control records and records of aborted transactions, which the
   * read_committed filter removed). When it starts at or before the next offset this reader expects,
   * nothing in it was left out, so the position moves past its end once the task has taken the
   * records before it: the committed position then passes transaction markers and aborted records, as
   * the Java consumer's does (lag reaches 0; a restore does not fetch them again). A range that starts
   * later (a stale fetch from before a seek, or a compaction gap) moves nothing.
   */
  offer(
    messages: readonly KafkaMessage[],
    fetched?: { readonly first: string; readonly last: string },
  ): { lastTaken: string | undefined; full: boolean } {
    if (this.#closed) return { lastTaken: undefined, full: true };
    const expectedBefore = this.#expected;
    let lastTaken: string | undefined;
    let segment: Segment | undefined;
    const n = messages.length;
    if (n > 0) {
      lastTaken = messages[n - 1]!.offset;
      // Offsets rise within a batch: everything from the first one expected on is new.
      let start = 0;
      while (start < n && BigInt(messages[start]!.offset) < expectedBefore) start++;
      if (start < n) {
        segment = { messages, i: start, to: undefined };
        this.#segments.push(segment);
        this.#expected = BigInt(lastTaken) + 1n;
      }
    }
    if (fetched !== undefined && BigInt(fetched.first) <= expectedBefore) {
      const end = BigInt(fetched.last) + 1n;
      if (end > this.#expected) {
        this.#expected = end;
        lastTaken = fetched.last;
        const last = this.#segments.at(-1);
        if (last === undefined) {
          this.#position = end;
          this.#moved = true;
        } else last.to = end;
      }
    }
    this.#signal();
    if (this.#holds()) this.#full = true;
    return { lastTaken, full: this.#full };
  }

  pollNext(max: number): SourceBatch<T> | undefined {
    if (this.#failure) throw this.#failure.error;
    if (this.#closed) return undefined;
    const records: SourceRecord<T>[] = [];
    // The position after what this call hands out: the last message, or a segment's end.
    let lastMessage: KafkaMessage | undefined;
    let endTo: bigint | undefined;
    // Records of a fetch mostly share their millisecond: parse each distinct timestamp string once.
    let tsText: string | undefined;
    let ts = 0;
    while (records.length < max) {
      const seg = this.#segments[0];
      if (seg === undefined) break;
      const m = seg.messages[seg.i]!;
      let v: T | typeof FAILED | typeof WAITING;
      const d = this.#decoding;
      if (d !== undefined) {
        const o = d.outcome;
        if (o === undefined) break;
        this.#decoding = undefined;
        if ('error' in o) {
          this.#decodeError = o.error;
          v = FAILED;
        } else v = o.value;
      } else v = this.#decode(m);
      if (v === WAITING) break;
      if (v === FAILED) {
        const taken = this.#failed(m, this.#decodeError);
        this.#decodeError = undefined;
        if (taken === undefined) break;
        if (taken !== null) records.push(taken);
      } else {
        // The record as read goes along (origin: the fetched message itself, no copy): should a keyed
        // operator find it in the wrong partition, the source's policy dead-letters it as it was.
        if (m.timestamp !== tsText) {
          tsText = m.timestamp;
          ts = Number(tsText);
        }
        records.push({ value: v, timestamp: ts, origin: m });
      }
      lastMessage = m;
      endTo = undefined;
      if (++seg.i === seg.messages.length) {
        this.#segments.shift();
        if (seg.to !== undefined) {
          endTo = seg.to;
          lastMessage = undefined;
        }
      }
    }
    if (endTo !== undefined) this.#position = endTo;
    else if (lastMessage !== undefined) this.#position = BigInt(lastMessage.offset) + 1n;
    if (this.#full && !this.#holds()) {
      this.#full = false;
      this.#o.onRoom();
    }
    if (records.length === 0 && lastMessage === undefined && endTo === undefined && !this.#moved) {
      // Nothing handed out: a failure of the first record is thrown now.
      const failure = this.#failure as { readonly error: unknown } | undefined;
      if (failure) throw failure.error;
      return undefined;
    }
    this.#moved = false;
    // Never reported idle: a partition without data for a moment must not let event time run ahead
    // of it (its next records would be late). Idleness is the job's choice: watermarks.idleTimeoutMs.
    return { records, position: this.position() };
  }

  /** Origins are the fetched messages; channel state stores them as `KafkaRecordIn`. */
  storedOrigin(origin: unknown): unknown {
    return recordIn(this.topic, this.partition, origin as KafkaMessage);
  }

  onAvailable(listener: () => void): void {
    this.#listener = listener;
    if (this.#hasSomething()) this.#signal();
  }

  position(): KafkaPosition {
    return { topic: this.topic, offset: this.#position.toString() };
  }

  /**
   * The reader's source is gone for good (its consumer stopped): the next `pollNext` throws `error`
   * after the records already fetched. The first failure stays.
   */
  fail(error: unknown): void {
    if (this.#closed || this.#failure) return;
    this.#failure = { error };
    this.#signal();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#segments = [];
    this.#listener = undefined;
  }

  /** Whether fetched records wait to be handed out (or to finish decoding). */
  #holds(): boolean {
    return this.#segments.length > 0;
  }

  #hasSomething(): boolean {
    if (this.#failure || this.#moved) return true;
    if (this.#decoding) return this.#decoding.outcome !== undefined;
    return this.#segments.length > 0;
  }

  #signal(): void {
    const l = this.#listener;
    if (l === undefined || !this.#hasSomething()) return;
    this.#listener = undefined;
    l();
  }

  /** Decode one record; a decoder that answers with a promise is waited for (the reader signals when it settles). */
  #decode(m: KafkaMessage): T | typeof FAILED | typeof WAITING {
    let v: T | Promise<T>;
    try {
      const byValue = this.#o.decodeValue;
      v = byValue
        ? byValue(m.value ?? null, this.topic)
        : this.#o.decode!(recordIn(this.topic, this.partition, m));
    } catch (error) {
      this.#decodeError = error;
      return FAILED;
    }
    if (!(v instanceof Promise)) return v;
    const d: AsyncDecode<T> = { outcome: undefined };
    this.#decoding = d;
    v.then(
      (value) => {
        d.outcome = { value };
        if (this.#decoding === d) this.#signal();
      },
      (error: unknown) => {
        d.outcome = { error };
        if (this.#decoding === d) this.#signal();
      },
    );
    return WAITING;
  }

  /**
   * A record that failed to decode, by policy: `null` when skipped, a dead letter to hand out, or
   * `undefined` when the reader fails (the error is thrown by the next `pollNext`: the records before
   * it go out first).
   */
  #failed(m: KafkaMessage, e: unknown): SourceRecord<T> | null | undefined {
    // An unreachable schema registry is not a bad record: never skipped, the task retries.
    if ((e as { retryable?: unknown } | undefined)?.retryable === true) {
      this.#failure = { error: e };
      return undefined;
    }
    if (this.#o.onDecodeError === 'fail') {
      this.#failure = {
        error: new StreamError(
          'RECORD_DESERIALIZATION_FAILED',
          `record ${this.topic}/${this.partition}@${m.offset} could not be deserialized: ${e instanceof Error ? e.message : String(e)}; set the source's onDecodeError to 'skip' or 'dead-letter' to go on`,
          { cause: e },
        ),
      };
      return undefined;
    }
    const r = recordIn(this.topic, this.partition, m);
    this.skipped++;
    this.#o.onSkip?.(r, e);
    if (this.#o.onDecodeError !== 'dead-letter') return null;
    const dl: DeadLetter = {
      ...r,
      error: e instanceof Error ? e.message : String(e),
      code: 'RECORD_DESERIALIZATION_FAILED',
    };
    return { value: dl as unknown as T, timestamp: r.timestamp, tag: DEAD_LETTER_TAG };
  }
}

/**
 * The record as decoders see it. Also the Kafka source's normal form of a record's `origin` (a
 * fetched kafkajs message, or a record restored from an unaligned checkpoint): `topic` and
 * `partition` fill in what a message does not carry.
 */
export function recordIn(
  topic: string,
  partition: number,
  m: {
    readonly offset: string;
    readonly key?: Buffer | null;
    readonly value?: Buffer | null;
    readonly headers?: KafkaMessage['headers'];
    readonly timestamp: string | number;
  },
): KafkaRecordIn {
  return {
    topic,
    partition,
    offset: m.offset,
    key: m.key ?? null,
    value: m.value ?? null,
    headers: m.headers,
    timestamp: Number(m.timestamp),
  };
}

/** The side output of a Kafka source that carries records it could not decode (policy dead-letter). */
export const DEAD_LETTER_TAG = 'kafka-dead-letter';
