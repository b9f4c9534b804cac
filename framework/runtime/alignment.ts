import type { InflightRecord, InputChannel } from './channel.ts';

/** A checkpoint whose barriers have all arrived (or were overtaken): ready for the snapshot. */
export interface AlignmentResult {
  readonly checkpointId: number;
  /** Resume position per channel index, from its barrier (absent: the channel's current position). */
  readonly positions: ReadonlyMap<number, unknown>;
  /** Records per channel index that precede the barrier but were not yet processed (unaligned). */
  readonly inflight: ReadonlyMap<number, InflightRecord[]>;
  readonly unaligned: boolean;
  readonly alignmentMs: number;
}

/**
 * Barrier alignment of one task, one checkpoint at a time: idle, or aligning checkpoint `id` since
 * `startedAt`. A call that completes the alignment returns the AlignmentResult (the snapshot may be
 * taken) and is idle again; the others return undefined. A barrier of another id (a checkpoint
 * aborted meanwhile) is ignored.
 *
 * - `start(id)`: the caller inserted barrier `id` into every active channel. Exactly-once:
 *   `onBarrier` blocks the channel that delivered it (`blocked`), so the snapshot holds no record
 *   after the barrier. At-least-once: nothing is blocked; records after a fast channel's barrier are
 *   processed before the snapshot and replayed after a restore. The aligner never unblocks: the
 *   caller unblocks every channel when a result comes, and after `cancel`.
 * - `timeout()`: the caller decided the alignment took too long: each barrier still queued is removed
 *   and the records before it become channel state (an unaligned result).
 * - `unaligned(id)`: no barrier is queued; every queued record becomes channel state and each
 *   channel's current position its resume point, at once (FLIP-76).
 * - A finished channel (end of input) counts as having delivered every barrier (`onChannelFinished`).
 *
 * The channel state of an unaligned result is stored with the snapshot and replayed first on restore.
 */
export class BarrierAligner {
  readonly #guarantee: 'exactly-once' | 'at-least-once';
  #id: number | undefined;
  #startedAt = 0;
  #arrived = new Set<number>();
  #positions = new Map<number, unknown>();
  /** Performance clock at start, for alignment duration. */
  #t0 = 0;

  constructor(guarantee: 'exactly-once' | 'at-least-once') {
    this.#guarantee = guarantee;
  }

  get aligning(): boolean {
    return this.#id !== undefined;
  }
  get checkpointId(): number | undefined {
    return this.#id;
  }
  get startedAt(): number {
    return this.#startedAt;
  }

  /** Barriers of `id` were inserted into every active channel. */
  start(id: number, active: readonly InputChannel[], now: number): AlignmentResult | undefined {
    this.#id = id;
    this.#startedAt = now;
    this.#t0 = performance.now();
    this.#arrived = new Set();
    this.#positions = new Map();
    return this.#completeIfAligned(active);
  }

  onBarrier(
    c: InputChannel,
    id: number,
    position: unknown,
    active: readonly InputChannel[],
  ): AlignmentResult | undefined {
    if (id !== this.#id) return undefined; // barrier of an aborted checkpoint
    this.#arrived.add(c.index);
    this.#positions.set(c.index, position);
    if (this.#guarantee === 'exactly-once') c.blocked = true;
    return this.#completeIfAligned(active);
  }

  onChannelFinished(active: readonly InputChannel[]): AlignmentResult | undefined {
    return this.#id === undefined ? undefined : this.#completeIfAligned(active);
  }

  /** Alignment took too long: the barriers still queued overtake the records before them. */
  timeout(active: readonly InputChannel[]): AlignmentResult | undefined {
    const id = this.#id;
    if (id === undefined) return undefined;
    const inflight = new Map<number, InflightRecord[]>();
    for (const c of active) {
      if (this.#arrived.has(c.index)) continue;
      inflight.set(c.index, c.recordsBefore(id));
      this.#positions.set(c.index, c.removeBarrier(id));
    }
    return this.#finish(id, inflight, true);
  }

  /** An unaligned checkpoint: barriers overtake every queued record at once. */
  unaligned(id: number, active: readonly InputChannel[], now: number): AlignmentResult {
    this.#startedAt = now;
    this.#t0 = performance.now();
    this.#positions = new Map();
    const inflight = new Map<number, InflightRecord[]>();
    for (const c of active) {
      inflight.set(c.index, c.recordsBefore());
      this.#positions.set(c.index, c.position);
    }
    return this.#finish(id, inflight, true);
  }

  cancel(): void {
    this.#id = undefined;
  }

  #completeIfAligned(active: readonly InputChannel[]): AlignmentResult | undefined {
    const id = this.#id!;
    if (!active.every((c) => this.#arrived.has(c.index))) return undefined;
    return this.#finish(id, new Map(), false);
  }

  #finish(id: number, inflight: Map<number, InflightRecord[]>, unaligned: boolean): AlignmentResult {
    this.#id = undefined;
    return {
      checkpointId: id,
      positions: this.#positions,
      inflight,
      unaligned,
      alignmentMs: performance.now() - this.#t0,
    };
  }
}
