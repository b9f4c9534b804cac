import { StreamError } from '../api/errors.ts';
import type { AggregateFunction } from '../api/state.ts';

/**
 * What a pane (a slice, a window or a session) stores: an accumulator `ACC`, built record by record.
 * The operators keep one per pane in map state and combine the panes of a window when it fires.
 *
 * Ownership: a stored accumulator may be shared with a checkpoint being written (state is
 * copy-on-write per entry, not per accumulator), so it is changed in place only when it is
 * *private*: made or copied by this operator since the last checkpoint barrier
 * (`PrivateAccumulators`). Otherwise it is copied first (`copy`, at most once per pane per
 * checkpoint). That lets user functions change their accumulator in place, as Flink allows.
 */
export interface PaneContents<IN, ACC> {
  /** A pane holding only `value`. */
  first(value: IN): ACC;
  /** `acc` (private) with `value` added; may change and return `acc`. */
  add(acc: ACC, value: IN): ACC;
  /** `a` (private) with `b` (read only) folded in; may change and return `a`. */
  merge(a: ACC, b: ACC): ACC;
  /** A private copy of a stored accumulator. */
  copy(acc: ACC): ACC;
  /** Whether `merge` is available (sliced sliding windows and sessions need it). */
  readonly canMerge: boolean;
}

/** Deep copy of plain data (what state holds with its default msgpack serializer). */
export function copyPlain<T>(v: T): T {
  return typeof v === 'object' && v !== null ? structuredClone(v) : v;
}

/** `reduce(a, b)`: the pane holds the reduced value; merging panes is reducing them. */
export function reducingContents<T>(reduce: (a: T, b: T) => T): PaneContents<T, T> {
  return {
    first: (v) => v,
    add: (acc, v) => reduce(acc, v),
    merge: (a, b) => reduce(a, b),
    copy: copyPlain,
    canMerge: true,
  };
}

export function aggregatingContents<IN, ACC, OUT>(
  agg: AggregateFunction<IN, ACC, OUT>,
): PaneContents<IN, ACC> {
  const merge = agg.merge;
  return {
    first: (v) => agg.add(v, agg.createAccumulator()),
    add: (acc, v) => agg.add(v, acc),
    merge: merge
      ? (a, b) => merge.call(agg, a, b)
      : () => {
          throw new StreamError('CONFIG_INVALID', 'the aggregate function has no merge');
        },
    copy: copyPlain,
    canMerge: merge !== undefined,
  };
}

/** The full-window `process` function: the pane holds its records, in arrival order. */
export function listContents<T>(): PaneContents<T, T[]> {
  return {
    first: (v) => [v],
    add: (acc, v) => {
      acc.push(v);
      return acc;
    },
    merge: (a, b) => {
      for (const v of b) a.push(v);
      return a;
    },
    copy: (acc) => acc.slice(),
    canMerge: true,
  };
}

/**
 * Accumulators this operator may change in place: those it made or copied since the last
 * checkpoint barrier (`reset()` at `snapshotState`). Primitives are immutable, hence always
 * private. A result that *is* the record being added (a reduce returning its input) is not
 * private: the record may be referenced elsewhere.
 */
export class PrivateAccumulators {
  #set = new WeakSet<object>();

  reset(): void {
    this.#set = new WeakSet();
  }

  has(acc: unknown): boolean {
    return typeof acc !== 'object' || acc === null || this.#set.has(acc);
  }

  mark(acc: unknown, unless?: unknown): void {
    if (typeof acc === 'object' && acc !== null && acc !== unless) this.#set.add(acc);
  }

  /** `acc` if private, else a private copy of it. */
  own<ACC>(contents: PaneContents<unknown, ACC>, acc: ACC): ACC {
    if (this.has(acc)) return acc;
    const c = contents.copy(acc);
    this.mark(c);
    return c;
  }
}
