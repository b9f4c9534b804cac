import {
  type SourceBatch,
  type SourceReader,
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
  /** Why: RECORD_DESERIALIZATION_FAILED (could not be decoded) or KEY_GROUP_MISMATCH (wrong partition). */
  readonly code?: 'RECORD_DESERIALIZATION_FAILED' | 'KEY_GROUP_MISMATCH';
}

export interface ReaderOptions<T> {
  readonly topic: string;
  readonly partition: number;
  readonly startOffset: bigint;
  readonly capacity: number;
  readonly idleWaitMs: number;
  readonly decode: (r: KafkaRecordIn) => T | Promise<T>;
  readonly onDecodeError: DecodeErrorPolicy;
  /** Called when the buffer drained below half after having been full (the hub resumes the partition). */
  readonly onRoom: () => void;
  readonly onSkip?: (r: KafkaRecordIn, error: unknown) => void;
}

/**
 * The reader of one topic partition, fed by the instance's consumer (`offer`, from eachBatch) and
 * drained by the task (`poll`). Records before `expected` (a refetch after a seek or a resume) are
 * dropped, so the task sees every offset at most once and, from its start offset on, in order.
 */
export class PartitionReader<T> implements SourceReader<T> {
  readonly topic: string;
  readonly partition: number;
  readonly #o: ReaderOptions<T>;
  #buffer: KafkaMessage[] = [];
  /** Filtered ranges behind buffered records: once `after` is taken, the position moves to `to`. */
  #skips: { after: KafkaMessage; to: bigint }[] = [];
  /** The next offset the reader accepts. */
  #expected: bigint;
  /** The offset after the last record handed to the task: the position. */
  #position: bigint;
  #waiter: (() => void) | undefined;
  #full = false;
  #closed = false;
  skipped = 0;

  constructor(o: ReaderOptions<T>) {
    this.#o = o;
    this.topic = o.topic;
    this.partition = o.partition;
    this.#expected = o.startOffset;
    this.#position = o.startOffset;
  }

  /** Whether the buffer is full (its feeder pauses the partition until the task drained half). */
  get isFull(): boolean {
    return this.#full;
  }

  get startOffset(): bigint {
    return this.#o.startOffset;
  }

  /**
   * Take a fetched batch whole (a fetch is already bounded by the consumer's bytes per partition, so
   * memory stays within the buffer plus one fetch; refetching the rest of a batch would decode it
   * twice). Returns the offset of the last message and whether the buffer is now full, in which case
   * the hub pauses the partition until the task drained half of it.
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
    const expectedBefore = this.#expected;
    let lastTaken: string | undefined;
    for (const m of messages) {
      const off = BigInt(m.offset);
      lastTaken = m.offset;
      if (off < this.#expected) continue;
      this.#buffer.push(m);
      this.#expected = off + 1n;
    }
    if (fetched !== undefined && BigInt(fetched.first) <= expectedBefore) {
      const end = BigInt(fetched.last) + 1n;
      if (end > this.#expected) {
        this.#expected = end;
        lastTaken = fetched.last;
        if (this.#buffer.length === 0) this.#position = end;
        else this.#skips.push({ after: this.#buffer.at(-1)!, to: end });
      }
    }
    this.#wake();
    this.#full = this.#buffer.length >= this.#o.capacity;
    return { lastTaken, full: this.#full };
  }

  async poll(max: number): Promise<SourceBatch<T> | 'end'> {
    if (this.#buffer.length === 0 && !this.#closed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.#o.idleWaitMs);
        this.#waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
    // Never reported idle: a partition without data for a moment must not let event time run ahead
    // of it (its next records would be late). Idleness is the job's choice: watermarks.idleTimeoutMs.
    if (this.#buffer.length === 0) return { records: [], position: this.position() };
    const taken = this.#buffer.splice(0, max);
    if (this.#full && this.#buffer.length <= this.#o.capacity / 2) {
      this.#full = false;
      this.#o.onRoom();
    }
    const records: SourceRecord<T>[] = [];
    for (const m of taken) {
      const r: KafkaRecordIn = {
        topic: this.topic,
        partition: this.partition,
        offset: m.offset,
        key: m.key ?? null,
        value: m.value ?? null,
        headers: m.headers,
        timestamp: Number(m.timestamp),
      };
      try {
        // The record as read goes along (origin): should a keyed operator find it in the wrong
        // partition, the source's policy dead-letters it as it was.
        records.push({ value: await this.#o.decode(r), timestamp: r.timestamp, origin: r });
      } catch (e) {
        // An unreachable schema registry is not a bad record: never skipped, the task retries.
        if ((e as { retryable?: unknown }).retryable === true) throw e;
        if (this.#o.onDecodeError === 'fail') {
          throw new StreamError(
            'RECORD_DESERIALIZATION_FAILED',
            `record ${this.topic}/${this.partition}@${m.offset} could not be deserialized: ${e instanceof Error ? e.message : String(e)}; set the source's onDecodeError to 'skip' or 'dead-letter' to go on`,
            { cause: e },
          );
        }
        this.skipped++;
        this.#o.onSkip?.(r, e);
        if (this.#o.onDecodeError === 'dead-letter') {
          const dl: DeadLetter = {
            ...r,
            error: e instanceof Error ? e.message : String(e),
            code: 'RECORD_DESERIALIZATION_FAILED',
          };
          records.push({ value: dl as unknown as T, timestamp: r.timestamp, tag: DEAD_LETTER_TAG });
        }
      }
      this.#position = BigInt(m.offset) + 1n;
      if (this.#skips[0]?.after === m) this.#position = this.#skips.shift()!.to;
    }
    return { records, position: this.position() };
  }

  position(): KafkaPosition {
    return { topic: this.topic, offset: this.#position.toString() };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake();
  }

  #wake(): void {
    this.#waiter?.();
  }
}

/** The side output of a Kafka source that carries records it could not decode (policy dead-letter). */
export const DEAD_LETTER_TAG = 'kafka-dead-letter';
