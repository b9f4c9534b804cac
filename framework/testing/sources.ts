import type { Key } from '../api/keys.ts';
import type { Source, SourceBatch, SourceReader, SourceRecord } from '../api/source.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';

/**
 * A source over in-memory partitions, with positions that snapshot and restore: the position is
 * the index of the next record. Bounded partitions end after their last record (like bytewax's
 * testing source with an EOF marker); unbounded ones report `idle` and wait for `append`.
 */
export class TestSource<T> implements Source<T> {
  readonly uid: string;
  readonly #partitions: SourceRecord<T>[][];
  readonly #bounded: boolean;
  readonly #waiters = new Set<() => void>();
  /** Optional hook called before each poll (tests inject reader failures and delays here). */
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
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }

  createReader(partition: number, position: unknown): SourceReader<T> {
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
    return {
      async poll(max: number): Promise<SourceBatch<T> | 'end'> {
        await self.beforePoll?.(partition, next);
        if (next >= data.length) {
          if (self.#bounded) return 'end';
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 20);
            self.#waiters.add(() => {
              clearTimeout(t);
              resolve();
            });
          });
          if (next >= data.length) return { records: [], position: next, idle: self.#reportIdle };
        }
        const records = data.slice(next, next + max);
        next += records.length;
        return { records, position: next };
      },
      async close() {},
    };
  }
}
