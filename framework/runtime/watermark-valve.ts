import { StreamError } from '../api/errors.ts';
import type { WatermarkStrategy } from '../api/source.ts';

/** What the valve reads of one input channel of the task. */
export interface ValveInput {
  /** The channel delivered its end of input. */
  readonly finished: boolean;
  /** Elements queued in the channel. */
  readonly length: number;
  /** The channel's source reported that it has no data now. */
  readonly sourceIdle: boolean;
}

/**
 * Event time of one task (Flink's StatusWatermarkValve): per input channel, the highest event
 * timestamp taken from it and when its last record came; per operator, the combined watermark of the
 * channels upstream of it.
 *
 * - A channel's watermark is its highest timestamp − `maxOutOfOrdernessMs` − 1.
 * - A channel is idle when it is empty and its source reported no data, or it had no record for
 *   `idleTimeoutMs`; an idle channel does not hold the watermark back. A finished channel counts as
 *   +∞.
 * - An operator's watermark is the minimum over its non-idle upstream channels; when every one of
 *   them is idle, the maximum over them, so event time is not stuck behind inputs without data.
 *   Watermarks only move forward; `update` advances operators in index (topological) order, so the
 *   timers an upstream operator fires, and their output, come before the downstream operator moves.
 */
export class WatermarkValve {
  readonly #strategies: readonly WatermarkStrategy<unknown>[];
  readonly #upstream: readonly Iterable<number>[];
  /** Per channel: highest event timestamp taken. */
  readonly #maxTimestamp: number[];
  /** Per channel: processing time of the last record taken (for idleness). */
  readonly #lastRecordAt: number[];
  /** Per operator: its current watermark. */
  readonly #marks: number[];
  /** Per channel, reused by `update`: its watermark and whether it is idle. */
  readonly #channelMark: number[];
  readonly #channelIdle: boolean[];

  /**
   * `strategies[c]` is the watermark strategy of channel c's source, `upstream[i]` the channels
   * upstream of operator i; `now` is when the channels opened (idleness counts from there);
   * `restored[c]` the highest event timestamp channel c had taken when the restored snapshot was
   * taken (`eventTime`; the operators' watermarks follow at the first `update`).
   */
  constructor(
    strategies: readonly WatermarkStrategy<unknown>[],
    upstream: readonly Iterable<number>[],
    now: number,
    restored: readonly (number | undefined)[] = [],
  ) {
    this.#strategies = strategies;
    this.#upstream = upstream;
    this.#maxTimestamp = strategies.map((_, c) => restored[c] ?? Number.NEGATIVE_INFINITY);
    this.#lastRecordAt = strategies.map(() => now);
    this.#marks = upstream.map(() => Number.NEGATIVE_INFINITY);
    this.#channelMark = strategies.map(() => Number.NEGATIVE_INFINITY);
    this.#channelIdle = strategies.map(() => false);
  }

  /** The highest event timestamp taken from channel `channel` (or restored), undefined before any. */
  eventTime(channel: number): number | undefined {
    const t = this.#maxTimestamp[channel];
    return t === undefined || t === Number.NEGATIVE_INFINITY ? undefined : t;
  }

  /** The current watermark of operator `op` (-∞ before the first). */
  of(op: number): number {
    return this.#marks[op] ?? Number.NEGATIVE_INFINITY;
  }

  /**
   * A record taken from channel `channel` at processing time `now`: its event timestamp (the
   * strategy's extractor, else the source's), remembered for the channel's watermark. An extractor
   * that throws fails the task (USER_FUNCTION_FAILED naming the source).
   */
  onRecord(channel: number, sourceUid: string, value: unknown, timestamp: number | undefined, now: number) {
    const extract = this.#strategies[channel]!.timestamp;
    let ts = timestamp;
    if (extract) {
      try {
        ts = extract(value, timestamp);
      } catch (err) {
        throw new StreamError(
          'USER_FUNCTION_FAILED',
          `timestamp extractor of source '${sourceUid}' failed: ${String(err)}`,
          { cause: err },
        );
      }
    }
    if (ts !== undefined && ts > this.#maxTimestamp[channel]!) this.#maxTimestamp[channel] = ts;
    this.#lastRecordAt[channel] = now;
    return ts;
  }

  /**
   * Recompute every operator's watermark from the channels as they are at `now`; `advance(op, wm)`
   * is called for each operator whose watermark moved, in index order. Returns how many moved.
   */
  update(
    now: number,
    inputs: readonly ValveInput[],
    advance: (op: number, watermark: number) => void,
  ): number {
    const mark = this.#channelMark;
    const idle = this.#channelIdle;
    for (let c = 0; c < inputs.length; c++) {
      const input = inputs[c]!;
      if (input.finished) {
        mark[c] = Number.POSITIVE_INFINITY;
        idle[c] = false;
        continue;
      }
      const s = this.#strategies[c]!;
      const timeout = s.idleTimeoutMs;
      idle[c] =
        input.length === 0 &&
        (input.sourceIdle || (timeout !== undefined && now - this.#lastRecordAt[c]! >= timeout));
      mark[c] = this.#maxTimestamp[c]! - (s.maxOutOfOrdernessMs ?? 0) - 1;
    }
    let moved = 0;
    for (let i = 0; i < this.#marks.length; i++) {
      let wm = Number.POSITIVE_INFINITY;
      let idleMax = Number.NEGATIVE_INFINITY;
      let active = 0;
      for (const c of this.#upstream[i]!) {
        if (idle[c]) {
          if (mark[c]! > idleMax) idleMax = mark[c]!;
          continue;
        }
        active++;
        if (mark[c]! < wm) wm = mark[c]!;
      }
      if (active === 0) wm = idleMax;
      if (wm <= this.#marks[i]!) continue;
      this.#marks[i] = wm;
      moved++;
      advance(i, wm);
    }
    return moved;
  }

  /** End of input: every operator's watermark to +∞ (all event-time timers fire), in index order. */
  finish(advance: (op: number, watermark: number) => void): void {
    for (let i = 0; i < this.#marks.length; i++) {
      this.#marks[i] = Number.POSITIVE_INFINITY;
      advance(i, Number.POSITIVE_INFINITY);
    }
  }

  /** The earliest time after `now` at which a channel that is not idle yet becomes idle, if any. */
  nextIdleAt(now: number, inputs: readonly ValveInput[]): number | undefined {
    let next: number | undefined;
    for (let c = 0; c < inputs.length; c++) {
      const timeout = this.#strategies[c]!.idleTimeoutMs;
      if (timeout === undefined || inputs[c]!.finished) continue;
      const at = this.#lastRecordAt[c]! + timeout;
      if (at > now && (next === undefined || at < next)) next = at;
    }
    return next;
  }
}
