import { valueState } from '../api/descriptors.ts';
import { StreamError } from '../api/errors.ts';
import type {
  Collector,
  KeyedContext,
  KeyedProcessFunction,
  OnTimerContext,
  OutputTag,
} from '../api/functions.ts';
import type { Key } from '../api/keys.ts';

export interface DedupOptions<T> {
  /** Two records of one key closer than this (in the chosen time) are duplicates. */
  readonly horizonMs: number;
  /** Default `event`. */
  readonly time?: 'event' | 'processing';
  /** Duplicates dropped, emitted here when given (e.g. to count or audit them). */
  readonly duplicates?: OutputTag<T>;
  /** Event time: records behind the watermark when they arrive (undecidable: the key's state may be gone). Default: dropped and counted. */
  readonly late?: OutputTag<T>;
}

/**
 * Deduplication by key within a time horizon: the first record of a key is emitted; a later one
 * is a duplicate while it is within `horizonMs` of the last emitted record of its key.
 *
 * - **Event time** (default): a record at `t` is a duplicate iff the key's last emitted record is at
 *   `kept` with |t - kept| < horizon. The key's state (one number) is removed by an event-time timer
 *   when the watermark passes kept + horizon, so state is bounded by the keys seen in the last
 *   horizon plus out-of-orderness. A record behind the watermark is late (its key may already be
 *   forgotten) and goes to `late`, or is dropped and counted (`kstate_late_records_dropped_total`).
 *   The result depends only on each key's records in arrival order, which Kafka keeps per partition:
 *   reprocessing after a failure gives the same output.
 * - **Processing time**: a record is a duplicate while the key's entry lives; the entry has a state
 *   TTL of `horizonMs` (processing time), so expired keys are dropped at the next checkpoint.
 */
export class Deduplicate<K extends Key, T> implements KeyedProcessFunction<K, T, T> {
  readonly #o: DedupOptions<T>;
  readonly #kept;

  constructor(o: DedupOptions<T>) {
    if (!Number.isFinite(o.horizonMs) || o.horizonMs <= 0) {
      throw new StreamError(
        'CONFIG_INVALID',
        `dedup: horizonMs must be a positive number, got ${o.horizonMs}`,
      );
    }
    this.#o = o;
    this.#kept =
      o.time === 'processing'
        ? valueState<number>('dedup.kept', { ttl: { ttlMs: o.horizonMs, time: 'processing' } })
        : valueState<number>('dedup.kept');
  }

  processElement(value: T, ctx: KeyedContext<K>, out: Collector<T>): void {
    const kept = ctx.getState(this.#kept);
    if (this.#o.time === 'processing') {
      if (kept.value() !== undefined) {
        if (this.#o.duplicates) ctx.output(this.#o.duplicates, value);
        return;
      }
      kept.update(ctx.currentProcessingTime());
      out.collect(value);
      return;
    }
    const t = ctx.timestamp;
    if (t === undefined || !Number.isFinite(t)) {
      throw new StreamError(
        'RECORD_TIMESTAMP_MISSING',
        `dedup (operator '${ctx.info.operatorUid}') got a record without a timestamp: give its source event time, or use { time: 'processing' }`,
      );
    }
    if (t < ctx.currentWatermark()) {
      if (this.#o.late) ctx.output(this.#o.late, value, t);
      else ctx.lateRecordDropped();
      return;
    }
    const last = kept.value();
    if (last !== undefined && Math.abs(t - last) < this.#o.horizonMs) {
      if (this.#o.duplicates) ctx.output(this.#o.duplicates, value, t);
      return;
    }
    kept.update(t);
    ctx.timerService.registerEventTimeTimer(t + this.#o.horizonMs);
    out.collect(value, t);
  }

  onTimer(timestamp: number, ctx: OnTimerContext<K>): void {
    const kept = ctx.getState(this.#kept);
    const last = kept.value();
    // A later kept record registered its own timer; only the timer of the current one clears.
    if (last !== undefined && last + this.#o.horizonMs <= timestamp) kept.clear();
  }
}
