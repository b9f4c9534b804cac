import type { Key } from '../api/keys.ts';
import type { PullSourceReader, Source, SourceBatch, SourceRecord } from '../api/source.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';

/**
 * A source over in-memory partitions, with positions that snapshot and restore: the position is
 * the index of the next record. Bounded partitions end after their last record (like bytewax's
 * testing source with an EOF marker); unbounded ones wait for `append` (signalling their channel
 * then, never polled on a timer), and with `reportIdle` say once that they have no data.
 */
export class TestSource<T> implements Source<T> {
  readonly uid: string;
  readonly #partitions: SourceRecord<T>[][];
  readonly #bounded: boolean;
  readonly #waiters = new Set<() => void>();
  /**
   * Optional hook called before each batch a reader hands out, and before its end (tests inject
   * reader failures and delays here): a thrown error or a rejected promise fails the reader; while a
   * returned promise is pending, the reader has nothing.
   */
  beforePoll: ((partition: number, position: number) => void | Promise<void>) | undefined;
  /** Readers opened so far (a restart opens new ones). */
  readersOpened = 0;

  readonly #reportIdle: boolean;

  /**
   * `bounded` (default true): partitions end after their records. `reportIdle` (default false): an
   * unbounded partition without data says so, which lets its watermark go idle at once.
   */
  constructor(
    uid: string,
    partitions: SourceRecord<T>[][],
    options: { bounded?: boolean; reportIdle?: boolean } = {},
  ) {
    this.uid = uid;
    this.#partitions = partitions.map((p) => [...p]);
    this.#bounded = options.bounded ?? true;
    this.#reportIdle = options.reportIdle ?? false;
  }

  /** Split records into `n` partitions by key, exactly as Kafka's default partitioner would. */
  static byKey<T>(
    uid: string,
    records: SourceRecord<T>[],
    key: (v: T) => Key,
    n: number,
    options?: { bounded?: boolean },
  ): TestSource<T> {
    const parts: SourceRecord<T>[][] = Array.from({ length: n }, () => []);
    for (const r of records) parts[keyGroupOf(keyId(key(r.value)), n)]!.push(r);
    return new TestSource(uid, parts, options);
  }

  partitions(): number {
    return this.#partitions.length;
  }

  records(partition: number): readonly SourceRecord<T>[] {
    return this.#partitions[partition] ?? [];
  }

  append(partition: number, records: SourceRecord<T>[]): void {
    for (const r of records) this.#partitions[partition]!.push(r);
    // A signalled reader may wait again at once (its partition got nothing): clear first.
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  createReader(partition: number, position: unknown): PullSourceReader<T> {
    if (
      position !== undefined &&
      (typeof position !== 'number' || !Number.isInteger(position) || position < 0)
    ) {
      throw new Error(
        `TestSource '${this.uid}' got position ${JSON.stringify(position)}; expected a record index`,
      );
    }
    this.readersOpened++;
    let next = (position as number | undefined) ?? 0;
    const data = this.#partitions[partition]!;
    const self = this;
    /** A promise of `beforePoll` that has not settled: nothing until it does. */
    let gate: Promise<void> | undefined;
    /** `beforePoll` ran (and settled) for the batch that goes out next. */
    let passed = false;
    let failure: { readonly error: unknown } | undefined;
    let idleReported = false;
    let closed = false;
    let listener: (() => void) | undefined;
    const signal = () => {
      const l = listener;
      listener = undefined;
      l?.();
    };
    const ready = () =>
      failure !== undefined ||
      (gate === undefined && (next < data.length || self.#bounded || (self.#reportIdle && !idleReported)));
    return {
      pollNext(max: number): SourceBatch<T> | 'end' | undefined {
        if (failure) throw failure.error;
        if (closed || gate) return undefined;
        const has = next < data.length;
        if (!has && !self.#bounded) {
          if (self.#reportIdle && !idleReported) {
            idleReported = true;
            return { records: [], position: next, idle: true };
          }
          self.#waiters.add(signal);
          return undefined;
        }
        if (!passed && self.beforePoll) {
          const r = self.beforePoll(partition, next);
          if (r !== undefined && typeof (r as Promise<void>).then === 'function') {
            gate = Promise.resolve(r).then(
              () => {
                passed = true;
                gate = undefined;
                signal();
              },
              (e: unknown) => {
                failure = { error: e };
                gate = undefined;
                signal();
              },
            );
            return undefined;
          }
        }
        passed = false;
        if (!has) return 'end';
        const records = data.slice(next, next + max);
        next += records.length;
        idleReported = false;
        return { records, position: next };
      },
      onAvailable(l: () => void): void {
        listener = l;
        if (ready()) signal();
      },
      async close() {
        closed = true;
        listener = undefined;
        self.#waiters.delete(signal);
      },
    };
  }
}
