import type { Serializer } from './serializer.ts';

/**
 * State descriptors and handles: the managed state a user function declares and uses.
 *
 * Keyed state handles are scoped to the *current key*: the runtime sets the key of the record (or
 * timer) being processed before it calls the user function, and every handle reads and writes the
 * entry of that key only. Handles are synchronous; backends make that cheap (heap maps, or a
 * write-behind cache over LevelDB).
 *
 * Values returned by handles must be treated as immutable: change state by calling `update`,
 * `add`, `put`, never by mutating a returned object in place (an asynchronous snapshot may share it).
 */

/** Time-to-live of state entries. `event` time (against the watermark) is an addition Flink lacks. */
export interface StateTtlConfig {
  readonly ttlMs: number;
  /** Which clock ages entries: processing time (the task's clock) or event time (its watermark). */
  readonly time: 'processing' | 'event';
  /** When the entry's age is reset. Default `onCreateAndWrite`. */
  readonly update?: 'onCreateAndWrite' | 'onReadAndWrite';
  /** Default `neverReturnExpired`. */
  readonly visibility?: 'neverReturnExpired' | 'returnExpiredIfNotCleanedUp';
}

interface DescriptorBase {
  /** Unique within the operator; part of the snapshot, so renaming it loses the state. */
  readonly name: string;
  readonly ttl?: StateTtlConfig;
}

export interface ValueStateDescriptor<T> extends DescriptorBase {
  readonly kind: 'value';
  readonly serializer?: Serializer<T>;
}

export interface ListStateDescriptor<T> extends DescriptorBase {
  readonly kind: 'list';
  /** Serializer of one element. */
  readonly serializer?: Serializer<T>;
}

export interface MapStateDescriptor<K, V> extends DescriptorBase {
  readonly kind: 'map';
  /** Serializer of one `[userKey, value]` entry. */
  readonly serializer?: Serializer<[K, V]>;
}

export interface ReducingStateDescriptor<T> extends DescriptorBase {
  readonly kind: 'reducing';
  readonly reduce: (accumulated: T, value: T) => T;
  readonly serializer?: Serializer<T>;
}

export interface AggregateFunction<IN, ACC, OUT> {
  createAccumulator(): ACC;
  add(value: IN, accumulator: ACC): ACC;
  getResult(accumulator: ACC): OUT;
  /** Optional; used by session windows that merge. */
  merge?(a: ACC, b: ACC): ACC;
}

export interface AggregatingStateDescriptor<IN, ACC, OUT> extends DescriptorBase {
  readonly kind: 'aggregating';
  readonly aggregate: AggregateFunction<IN, ACC, OUT>;
  /** Serializer of the accumulator. */
  readonly serializer?: Serializer<ACC>;
}

/**
 * Versions of a value per key, each with the event time it took effect (a price list, a customer's
 * address, a model's parameters): `asOf(t)` reads the value in effect at `t`, `range(from, to)` the
 * history. See docs/queries.md.
 */
export interface TimeIndexedStateDescriptor<V> {
  readonly kind: 'timeIndexed';
  /** Unique within the operator; part of the snapshot, so renaming it loses the state. */
  readonly name: string;
  /**
   * Keep versions for this long behind the reference time: max(the key's latest version, the task's
   * watermark). Older versions are dropped, except the newest one at or before the cutoff (it is
   * still the value in effect at the cutoff, so `asOf` stays right for every t >= cutoff).
   * Default: keep every version.
   */
  readonly retentionMs?: number;
  /** Serializer of one version's value. */
  readonly serializer?: Serializer<V>;
  /** Time-indexed states take `retentionMs`, not a TTL. */
  readonly ttl?: undefined;
}

export type StateDescriptor =
  | ValueStateDescriptor<unknown>
  | ListStateDescriptor<unknown>
  | MapStateDescriptor<unknown, unknown>
  | ReducingStateDescriptor<unknown>
  | AggregatingStateDescriptor<unknown, unknown, unknown>
  | TimeIndexedStateDescriptor<unknown>;

export type StateKind = StateDescriptor['kind'];

export interface ValueState<T> {
  value(): T | undefined;
  update(value: T): void;
  clear(): void;
}

export interface ListState<T> {
  /** The elements, oldest first; an empty array when there are none. */
  get(): readonly T[];
  add(value: T): void;
  addAll(values: readonly T[]): void;
  /** Replace all elements. */
  update(values: readonly T[]): void;
  clear(): void;
}

export interface MapState<K, V> {
  get(key: K): V | undefined;
  put(key: K, value: V): void;
  putAll(entries: Iterable<readonly [K, V]>): void;
  remove(key: K): void;
  contains(key: K): boolean;
  /** A copy of the entries; safe to iterate while calling put/remove. */
  entries(): [K, V][];
  keys(): K[];
  values(): V[];
  isEmpty(): boolean;
  clear(): void;
}

export interface ReducingState<T> {
  get(): T | undefined;
  add(value: T): void;
  clear(): void;
}

export interface AggregatingState<IN, OUT> {
  get(): OUT | undefined;
  add(value: IN): void;
  clear(): void;
}

/** One version of a time-indexed value: the value and the event time it took effect. */
export interface Version<V> {
  readonly time: number;
  readonly value: V;
}

/**
 * The versions of the current key, ordered by time. Times are finite numbers (event-time
 * milliseconds); a put at the time of an existing version replaces it.
 */
export interface TimeIndexedState<V> {
  /** Record `value` as in effect from `time` on (until the next version). */
  put(time: number, value: V): void;
  /** The value in effect at `time`: the latest version with `version.time <= time`. */
  asOf(time: number): Version<V> | undefined;
  /** The versions with `from <= time < to`, oldest first. */
  range(from: number, to: number): Version<V>[];
  /** The newest version. */
  latest(): Version<V> | undefined;
  /** Number of versions kept. */
  size(): number;
  /** Drop every version of the current key. */
  clear(): void;
}

/** Where a keyed function gets its state handles. */
export interface KeyedStateStore {
  getState<T>(d: ValueStateDescriptor<T>): ValueState<T>;
  getListState<T>(d: ListStateDescriptor<T>): ListState<T>;
  getMapState<K, V>(d: MapStateDescriptor<K, V>): MapState<K, V>;
  getReducingState<T>(d: ReducingStateDescriptor<T>): ReducingState<T>;
  getAggregatingState<IN, ACC, OUT>(d: AggregatingStateDescriptor<IN, ACC, OUT>): AggregatingState<IN, OUT>;
  getTimeIndexedState<V>(d: TimeIndexedStateDescriptor<V>): TimeIndexedState<V>;
}

/**
 * Operator (non-keyed) state. On a change of parallelism, `split` list state is divided among the
 * new tasks, `union` list state is given whole to every task, and broadcast state is copied.
 */
export interface OperatorStateStore {
  getListState<T>(name: string, serializer?: Serializer<T>): ListState<T>;
  getUnionListState<T>(name: string, serializer?: Serializer<T>): ListState<T>;
  getBroadcastState<K, V>(name: string, serializer?: Serializer<[K, V]>): MapState<K, V>;
}
