import type { KeyId } from '../api/keys.ts';
import type { Serializer } from '../api/serializer.ts';
import type {
  AggregatingState,
  AggregatingStateDescriptor,
  KeyedStateStore,
  ListState,
  ListStateDescriptor,
  MapState,
  MapStateDescriptor,
  ReducingState,
  ReducingStateDescriptor,
  StateDescriptor,
  StateTtlConfig,
  TimeIndexedState,
  TimeIndexedStateDescriptor,
  ValueState,
  ValueStateDescriptor,
} from '../api/state.ts';
import { bindState, type KeyedStateBackend, type StateAccess, type StateMeta } from './backend.ts';
import { describeState } from './state-meta.ts';
import { checkRetention, cleanupRetention, timeIndexedHandle, versionStore } from './time-index.ts';
import { mapKeyOf, type TtlValue, userKeyOf } from './value-codec.ts';

/**
 * Keyed state handles, implemented once over the KeyedStateBackend primitives (stored forms: see
 * value-codec.ts).
 *
 * Writes: a handle that mutates a stored list or map takes it with `getForUpdate` (so the backend
 * copies it only when a live capture shares it) and then writes it back with `put`, so a backend
 * may treat `getForUpdate` as a read and `put` as the write. An empty list or map is never stored:
 * clearing it or removing its last element deletes the entry.
 *
 * TTL (`descriptor.ttl`), as in Flink's TtlStateFactory, per element for list state and per entry
 * for map state:
 * - the timestamp of an entry is the task's processing time (`ctx.processingTime()`) or, for event
 *   time, its current watermark (`ctx.watermark()`); an entry with timestamp `ts` is expired once
 *   `ts + ttlMs <= now`;
 * - `onCreateAndWrite` sets the timestamp when the entry is written; `onReadAndWrite` also when it
 *   is read (`value()`, `get()`, `contains()`, `entries()` ...);
 * - an expired entry found by an access is deleted; `neverReturnExpired` then returns nothing,
 *   `returnExpiredIfNotCleanedUp` returns the expired value this one last time. Reducing and
 *   aggregating `add` always start afresh from an expired value;
 * - event time before the first watermark (`-Infinity`): entries written then carry `-Infinity` and
 *   are restamped with the first finite watermark that an access or `cleanupExpired` sees, so they
 *   live `ttlMs` from there instead of expiring at once;
 * - entries nobody reads are dropped by `cleanupExpired`, which the runtime calls before each
 *   capture so that snapshots do not carry expired state (and heap memory stays bounded).
 */

/** What the handles need from the task: the current key and its clocks. */
export interface KeyedStateContext {
  /** The key of the record or timer being processed; set by the runtime before each user call. */
  currentKey(): KeyId;
  processingTime(): number;
  /** The task's current watermark; `-Infinity` before the first one. */
  watermark(): number;
}

export interface ManagedKeyedStateStore extends KeyedStateStore {
  /** The states registered through this store, in registration order. */
  registeredStates(): readonly StateMeta[];
  /**
   * `cleanupExpired(backend, registeredStates(), ctx)`, plus the retention of time-indexed states
   * against the watermark (`watermark - retentionMs`, every key: O(keys of those states)).
   */
  cleanupExpired(): number;
}

export function createKeyedStateStore(
  backend: KeyedStateBackend,
  ctx: KeyedStateContext,
): ManagedKeyedStateStore {
  const handles = new WeakMap<StateDescriptor, unknown>();
  const metas = new Map<string, StateMeta>();
  const retention = new Map<string, number>();

  const open = <H>(d: StateDescriptor, make: (meta: StateMeta, serializer: Serializer<unknown>) => H): H => {
    const cached = handles.get(d);
    if (cached !== undefined) return cached as H;
    const { meta, serializer } = describeState(d);
    backend.register(meta, serializer);
    if (!metas.has(meta.name)) metas.set(meta.name, meta);
    const handle = make(meta, serializer);
    handles.set(d, handle);
    return handle;
  };

  return {
    getState: <T>(d: ValueStateDescriptor<T>): ValueState<T> =>
      open(d as StateDescriptor, (meta) => valueState<T>(backend, ctx, meta)),
    getListState: <T>(d: ListStateDescriptor<T>): ListState<T> =>
      open(d as StateDescriptor, (meta) => listState<T>(backend, ctx, meta)),
    getMapState: <K, V>(d: MapStateDescriptor<K, V>): MapState<K, V> =>
      open(d as StateDescriptor, (meta) => mapState<K, V>(backend, ctx, meta)),
    getReducingState: <T>(d: ReducingStateDescriptor<T>): ReducingState<T> =>
      open(d as StateDescriptor, (meta, serializer) =>
        reducingState<T>(backend, ctx, meta, d.reduce, copier(serializer as Serializer<T>)),
      ),
    getAggregatingState: <IN, ACC, OUT>(
      d: AggregatingStateDescriptor<IN, ACC, OUT>,
    ): AggregatingState<IN, OUT> =>
      open(d as StateDescriptor, (meta, serializer) =>
        aggregatingState<IN, ACC, OUT>(backend, ctx, meta, d, copier(serializer as Serializer<ACC>)),
      ),
    getTimeIndexedState: <V>(d: TimeIndexedStateDescriptor<V>): TimeIndexedState<V> =>
      open(d as StateDescriptor, (meta) => {
        const ms = checkRetention(meta.name, d.retentionMs);
        if (ms !== undefined) retention.set(meta.name, Math.min(ms, retention.get(meta.name) ?? ms));
        return timeIndexedHandle<V>(versionStore(backend, meta.name), ctx, meta.name, ms);
      }),
    registeredStates: () => [...metas.values()],
    cleanupExpired: () => {
      let dropped = cleanupExpired(backend, [...metas.values()], ctx);
      for (const [name, ms] of retention) {
        dropped += cleanupRetention(versionStore(backend, name), ctx.watermark() - ms);
      }
      return dropped;
    },
  };
}

/**
 * Deletes every expired entry (and expired list element and map entry) of the TTL states among
 * `metas`, and restamps event-time entries written before the first watermark. Returns how many
 * entries, elements and map entries it dropped. O(entries of the TTL states): the runtime calls it
 * in the synchronous part of a checkpoint, before `capture()`, so snapshots stay bounded.
 */
export function cleanupExpired(
  backend: KeyedStateBackend,
  metas: readonly StateMeta[],
  ctx: Pick<KeyedStateContext, 'processingTime' | 'watermark'>,
): number {
  let dropped = 0;
  for (const meta of metas) {
    const ttl = meta.ttl;
    if (ttl === undefined) continue;
    const now = ttl.time === 'event' ? ctx.watermark() : ctx.processingTime();
    const s = bindState(backend, meta.name);
    for (const [key, stored] of backend.entries(meta.name)) {
      switch (meta.kind) {
        case 'value':
        case 'reducing':
        case 'aggregating': {
          const w = stored as TtlValue<unknown>;
          if (isExpired(w.ts, ttl, now)) {
            s.delete(key);
            dropped++;
          } else if (needsStamp(w.ts, now)) {
            s.put(key, { v: w.v, ts: now });
          }
          break;
        }
        case 'list': {
          const list = stored as TtlValue<unknown>[];
          let changed = false;
          const keep: TtlValue<unknown>[] = [];
          for (const w of list) {
            if (isExpired(w.ts, ttl, now)) {
              changed = true;
              dropped++;
            } else if (needsStamp(w.ts, now)) {
              changed = true;
              keep.push({ v: w.v, ts: now });
            } else {
              keep.push(w);
            }
          }
          if (changed) writeList(s, key, keep);
          break;
        }
        case 'map': {
          const map = stored as Map<unknown, TtlValue<unknown>>;
          let copy: Map<unknown, TtlValue<unknown>> | undefined;
          for (const [mk, w] of map) {
            if (isExpired(w.ts, ttl, now)) {
              copy ??= new Map(map);
              copy.delete(mk);
              dropped++;
            } else if (needsStamp(w.ts, now)) {
              copy ??= new Map(map);
              copy.set(mk, { v: w.v, ts: now });
            }
          }
          if (copy !== undefined) writeMap(s, key, copy);
          break;
        }
      }
    }
  }
  return dropped;
}

function isExpired(ts: number, ttl: StateTtlConfig, now: number): boolean {
  return ts !== Number.NEGATIVE_INFINITY && ts + ttl.ttlMs <= now;
}

function needsStamp(ts: number, now: number): boolean {
  return ts === Number.NEGATIVE_INFINITY && now !== Number.NEGATIVE_INFINITY;
}

interface TtlRules {
  readonly now: () => number;
  readonly ttl: StateTtlConfig;
  readonly onRead: boolean;
  readonly returnExpired: boolean;
}

function ttlRules(meta: StateMeta, ctx: KeyedStateContext): TtlRules | undefined {
  const ttl = meta.ttl;
  if (ttl === undefined) return undefined;
  return {
    now: ttl.time === 'event' ? () => ctx.watermark() : () => ctx.processingTime(),
    ttl,
    onRead: ttl.update === 'onReadAndWrite',
    returnExpired: ttl.visibility === 'returnExpiredIfNotCleanedUp',
  };
}

/** A deep copy through the state's serializer (used only when a live capture shares the value). */
function copier<T>(serializer: Serializer<T>): (value: T) => T {
  return (value) => serializer.deserialize(serializer.serialize(value));
}

const copyArray = <T>(a: T[]): T[] => a.slice();
const copyMap = <K, V>(m: Map<K, V>): Map<K, V> => new Map(m);

function writeList(s: StateAccess, key: KeyId, list: unknown[]): void {
  if (list.length === 0) s.delete(key);
  else s.put(key, list);
}

function writeMap(s: StateAccess, key: KeyId, map: Map<unknown, unknown>): void {
  if (map.size === 0) s.delete(key);
  else s.put(key, map);
}

/**
 * Reads a single TTL-wrapped value (value, reducing, aggregating state) per the rules: deletes it when
 * expired, refreshes or stamps its timestamp when due. `found` is false when nothing is returned.
 */
function readWrapped<T>(
  s: StateAccess,
  key: KeyId,
  rules: TtlRules,
): { found: boolean; value: T | undefined } {
  const w = s.get(key) as TtlValue<T> | undefined;
  if (w === undefined) return { found: false, value: undefined };
  const now = rules.now();
  if (isExpired(w.ts, rules.ttl, now)) {
    s.delete(key);
    return rules.returnExpired ? { found: true, value: w.v } : { found: false, value: undefined };
  }
  if (rules.onRead || needsStamp(w.ts, now)) s.put(key, { v: w.v, ts: now });
  return { found: true, value: w.v };
}

function valueState<T>(backend: KeyedStateBackend, ctx: KeyedStateContext, meta: StateMeta): ValueState<T> {
  const s = bindState(backend, meta.name);
  const rules = ttlRules(meta, ctx);
  const clear = (): void => s.delete(ctx.currentKey());
  if (rules === undefined) {
    return {
      value: () => s.get(ctx.currentKey()) as T | undefined,
      update: (value) => (value === undefined ? clear() : s.put(ctx.currentKey(), value)),
      clear,
    };
  }
  return {
    value: () => readWrapped<T>(s, ctx.currentKey(), rules).value,
    update: (value) =>
      value === undefined
        ? clear()
        : s.put(ctx.currentKey(), { v: value, ts: rules.now() } satisfies TtlValue<T>),
    clear,
  };
}

function listState<T>(backend: KeyedStateBackend, ctx: KeyedStateContext, meta: StateMeta): ListState<T> {
  const s = bindState(backend, meta.name);
  const rules = ttlRules(meta, ctx);
  const clear = (): void => s.delete(ctx.currentKey());
  if (rules === undefined) {
    const addAll = (values: readonly T[]): void => {
      if (values.length === 0) return;
      const key = ctx.currentKey();
      const list = s.getForUpdate<T[]>(key, copyArray);
      if (list === undefined) {
        s.put(key, values.slice());
        return;
      }
      for (const v of values) list.push(v);
      s.put(key, list);
    };
    return {
      get: () => {
        const list = s.get(ctx.currentKey()) as T[] | undefined;
        return list === undefined ? [] : list.slice();
      },
      add: (value) => addAll([value]),
      addAll,
      update: (values) => writeList(s, ctx.currentKey(), values.slice()),
      clear,
    };
  }
  const addAll = (values: readonly T[]): void => {
    if (values.length === 0) return;
    const key = ctx.currentKey();
    const now = rules.now();
    const list = s.getForUpdate<TtlValue<T>[]>(key, copyArray) ?? [];
    for (const v of values) list.push({ v, ts: now });
    s.put(key, list);
  };
  return {
    get: () => {
      const key = ctx.currentKey();
      const list = s.get(key) as TtlValue<T>[] | undefined;
      if (list === undefined) return [];
      const now = rules.now();
      const out: T[] = [];
      const keep: TtlValue<T>[] = [];
      let changed = false;
      for (const w of list) {
        if (isExpired(w.ts, rules.ttl, now)) {
          changed = true;
          if (rules.returnExpired) out.push(w.v);
        } else {
          out.push(w.v);
          if (rules.onRead || needsStamp(w.ts, now)) {
            changed = true;
            keep.push({ v: w.v, ts: now });
          } else {
            keep.push(w);
          }
        }
      }
      if (changed) writeList(s, key, keep);
      return out;
    },
    add: (value) => addAll([value]),
    addAll,
    update: (values) => {
      const now = rules.now();
      writeList(
        s,
        ctx.currentKey(),
        values.map((v) => ({ v, ts: now })),
      );
    },
    clear,
  };
}

function mapState<K, V>(backend: KeyedStateBackend, ctx: KeyedStateContext, meta: StateMeta): MapState<K, V> {
  const name = meta.name;
  const s = bindState(backend, meta.name);
  const rules = ttlRules(meta, ctx);
  const clear = (): void => s.delete(ctx.currentKey());
  const read = (): Map<unknown, unknown> | undefined =>
    s.get(ctx.currentKey()) as Map<unknown, unknown> | undefined;
  /** Applies `change` to a private copy of the current key's map and writes it back. */
  const modify = (change: (m: Map<unknown, unknown>) => void): void => {
    const key = ctx.currentKey();
    const map = s.getForUpdate<Map<unknown, unknown>>(key, copyMap) ?? new Map();
    change(map);
    writeMap(s, key, map);
  };
  const remove = (k: K): void => {
    const mk = mapKeyOf(k, name);
    if (read()?.has(mk)) modify((m) => m.delete(mk));
  };

  if (rules === undefined) {
    const entries = (): [K, V][] => {
      const map = read();
      if (map === undefined) return [];
      const out: [K, V][] = [];
      for (const [mk, v] of map) out.push([userKeyOf(mk) as K, v as V]);
      return out;
    };
    return {
      get: (k) => read()?.get(mapKeyOf(k, name)) as V | undefined,
      put: (k, v) => {
        const mk = mapKeyOf(k, name);
        modify((m) => m.set(mk, v));
      },
      putAll: (items) => {
        const pairs = [...items].map(([k, v]) => [mapKeyOf(k, name), v] as const);
        if (pairs.length === 0) return;
        modify((m) => {
          for (const [mk, v] of pairs) m.set(mk, v);
        });
      },
      remove,
      contains: (k) => read()?.has(mapKeyOf(k, name)) ?? false,
      entries,
      keys: () => entries().map(([k]) => k),
      values: () => [...(read()?.values() ?? [])] as V[],
      isEmpty: () => (read()?.size ?? 0) === 0,
      clear,
    };
  }

  /** Reads one entry per the TTL rules. */
  const readEntry = (k: K): { found: boolean; value: V | undefined } => {
    const mk = mapKeyOf(k, name);
    const w = read()?.get(mk) as TtlValue<V> | undefined;
    if (w === undefined) return { found: false, value: undefined };
    const now = rules.now();
    if (isExpired(w.ts, rules.ttl, now)) {
      modify((m) => m.delete(mk));
      return rules.returnExpired ? { found: true, value: w.v } : { found: false, value: undefined };
    }
    if (rules.onRead || needsStamp(w.ts, now)) modify((m) => m.set(mk, { v: w.v, ts: now }));
    return { found: true, value: w.v };
  };
  /** All entries per the TTL rules, deleting the expired ones and refreshing the read ones. */
  const entries = (): [K, V][] => {
    const map = read() as Map<unknown, TtlValue<V>> | undefined;
    if (map === undefined) return [];
    const now = rules.now();
    const out: [K, V][] = [];
    let copy: Map<unknown, TtlValue<V>> | undefined;
    for (const [mk, w] of map) {
      if (isExpired(w.ts, rules.ttl, now)) {
        copy ??= new Map(map);
        copy.delete(mk);
        if (rules.returnExpired) out.push([userKeyOf(mk) as K, w.v]);
      } else {
        out.push([userKeyOf(mk) as K, w.v]);
        if (rules.onRead || needsStamp(w.ts, now)) {
          copy ??= new Map(map);
          copy.set(mk, { v: w.v, ts: now });
        }
      }
    }
    if (copy !== undefined) writeMap(s, ctx.currentKey(), copy);
    return out;
  };
  return {
    get: (k) => readEntry(k).value,
    put: (k, v) => {
      const mk = mapKeyOf(k, name);
      const now = rules.now();
      modify((m) => m.set(mk, { v, ts: now }));
    },
    putAll: (items) => {
      const now = rules.now();
      const pairs = [...items].map(([k, v]) => [mapKeyOf(k, name), { v, ts: now }] as const);
      if (pairs.length === 0) return;
      modify((m) => {
        for (const [mk, w] of pairs) m.set(mk, w);
      });
    },
    remove,
    contains: (k) => readEntry(k).found,
    entries,
    keys: () => entries().map(([k]) => k),
    values: () => entries().map(([, v]) => v),
    isEmpty: () => entries().length === 0,
    clear,
  };
}

function reducingState<T>(
  backend: KeyedStateBackend,
  ctx: KeyedStateContext,
  meta: StateMeta,
  reduce: (accumulated: T, value: T) => T,
  copy: (value: T) => T,
): ReducingState<T> {
  const s = bindState(backend, meta.name);
  const rules = ttlRules(meta, ctx);
  const clear = (): void => s.delete(ctx.currentKey());
  if (rules === undefined) {
    return {
      get: () => s.get(ctx.currentKey()) as T | undefined,
      add: (value) => {
        const key = ctx.currentKey();
        // The reduce function may change its first argument: give it a private copy.
        const current = s.getForUpdate<T>(key, copy);
        s.put(key, current === undefined ? value : reduce(current, value));
      },
      clear,
    };
  }
  const copyWrapped = (w: TtlValue<T>): TtlValue<T> => ({ v: copy(w.v), ts: w.ts });
  return {
    get: () => readWrapped<T>(s, ctx.currentKey(), rules).value,
    add: (value) => {
      const key = ctx.currentKey();
      const now = rules.now();
      const w = s.getForUpdate<TtlValue<T>>(key, copyWrapped);
      const live = w !== undefined && !isExpired(w.ts, rules.ttl, now);
      s.put(key, { v: live ? reduce(w.v, value) : value, ts: now } satisfies TtlValue<T>);
    },
    clear,
  };
}

function aggregatingState<IN, ACC, OUT>(
  backend: KeyedStateBackend,
  ctx: KeyedStateContext,
  meta: StateMeta,
  d: AggregatingStateDescriptor<IN, ACC, OUT>,
  copy: (acc: ACC) => ACC,
): AggregatingState<IN, OUT> {
  const s = bindState(backend, meta.name);
  const agg = d.aggregate;
  const rules = ttlRules(meta, ctx);
  const clear = (): void => s.delete(ctx.currentKey());
  if (rules === undefined) {
    return {
      get: () => {
        const acc = s.get(ctx.currentKey()) as ACC | undefined;
        return acc === undefined ? undefined : agg.getResult(acc);
      },
      add: (value) => {
        const key = ctx.currentKey();
        // AggregateFunction.add usually changes the accumulator in place: give it a private copy.
        const acc = s.getForUpdate<ACC>(key, copy) ?? agg.createAccumulator();
        s.put(key, agg.add(value, acc));
      },
      clear,
    };
  }
  const copyWrapped = (w: TtlValue<ACC>): TtlValue<ACC> => ({ v: copy(w.v), ts: w.ts });
  return {
    get: () => {
      const r = readWrapped<ACC>(s, ctx.currentKey(), rules);
      return r.found ? agg.getResult(r.value as ACC) : undefined;
    },
    add: (value) => {
      const key = ctx.currentKey();
      const now = rules.now();
      const w = s.getForUpdate<TtlValue<ACC>>(key, copyWrapped);
      const acc = w !== undefined && !isExpired(w.ts, rules.ttl, now) ? w.v : agg.createAccumulator();
      s.put(key, { v: agg.add(value, acc), ts: now } satisfies TtlValue<ACC>);
    },
    clear,
  };
}
