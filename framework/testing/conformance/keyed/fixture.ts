import assert from 'node:assert/strict';
import { type ErrorCode, isStreamError } from '../../../api/errors.ts';
import type { Key, KeyId } from '../../../api/keys.ts';
import type {
  AggregateFunction,
  AggregatingStateDescriptor,
  ListStateDescriptor,
  MapStateDescriptor,
  ReducingStateDescriptor,
  StateDescriptor,
  StateTtlConfig,
  ValueStateDescriptor,
} from '../../../api/state.ts';
import type { KeyedStateBackend, KeyedStateSnapshot } from '../../../state/backend.ts';
import {
  createKeyedStateStore,
  type KeyedStateContext,
  type ManagedKeyedStateStore,
} from '../../../state/handles.ts';
import { keyFromId, keyId } from '../../../state/keys.ts';

export type MakeKeyedStateBackend = () => Promise<KeyedStateBackend> | KeyedStateBackend;

export interface KeyedStateBackendCapabilities {
  /** Several captures alive at once (max concurrent checkpoints > 1). Default true. */
  readonly concurrentCaptures?: boolean;
  /** Runs of the random-operations model test. Default 150. */
  readonly modelRuns?: number;
  /** Runs of the time-indexed model test. Default 60. */
  readonly timeIndexedRuns?: number;
}

/** A backend under test with a keyed state store over it, a settable current key and clocks. */
export class Fixture {
  readonly backend: KeyedStateBackend;
  readonly store: ManagedKeyedStateStore;
  key: KeyId = 'k0';
  processingTime = 0;
  watermark = Number.NEGATIVE_INFINITY;
  readonly ctx: KeyedStateContext;

  constructor(backend: KeyedStateBackend) {
    this.backend = backend;
    this.ctx = {
      currentKey: () => this.key,
      processingTime: () => this.processingTime,
      watermark: () => this.watermark,
    };
    this.store = createKeyedStateStore(backend, this.ctx);
  }

  /** Sets the current key (as the runtime does before each user call) and returns `this`. */
  at(key: Key): this {
    this.key = keyId(key);
    return this;
  }
}

/** Runs `body` with a fresh backend, closing it afterwards. */
export async function withFixture(
  make: MakeKeyedStateBackend,
  body: (f: Fixture) => Promise<void> | void,
): Promise<void> {
  const f = new Fixture(await make());
  try {
    await body(f);
  } finally {
    await f.backend.close();
  }
}

// ---- descriptors used throughout the suite ----

export interface Avg {
  sum: number;
  count: number;
}

/** An average whose `add` changes the accumulator in place, as Flink examples do. */
export const average: AggregateFunction<number, Avg, number> = {
  createAccumulator: () => ({ sum: 0, count: 0 }),
  add: (value, acc) => {
    acc.sum += value;
    acc.count += 1;
    return acc;
  },
  getResult: (acc) => acc.sum / acc.count,
};

export function descriptors(ttl?: StateTtlConfig, suffix = '') {
  const t = ttl === undefined ? {} : { ttl };
  return {
    value: { kind: 'value', name: `value${suffix}`, ...t } as ValueStateDescriptor<unknown>,
    list: { kind: 'list', name: `list${suffix}`, ...t } as ListStateDescriptor<unknown>,
    map: { kind: 'map', name: `map${suffix}`, ...t } as MapStateDescriptor<unknown, unknown>,
    reducing: {
      kind: 'reducing',
      name: `reducing${suffix}`,
      reduce: (a: number, b: number) => a + b,
      ...t,
    } as ReducingStateDescriptor<number>,
    aggregating: {
      kind: 'aggregating',
      name: `aggregating${suffix}`,
      aggregate: average,
      ...t,
    } as AggregatingStateDescriptor<number, Avg, number>,
  };
}

export type Descriptors = ReturnType<typeof descriptors>;

/** Handles of all five kinds for `d` on `f`'s store. */
export function handles(f: Fixture, d: Descriptors) {
  return {
    value: f.store.getState(d.value),
    list: f.store.getListState(d.list),
    map: f.store.getMapState(d.map),
    reducing: f.store.getReducingState(d.reducing),
    aggregating: f.store.getAggregatingState(d.aggregating),
  };
}

/** A plain picture of the states of `d`: per state, per key (sorted), what the handles return. */
export type Dump = Record<string, Record<string, unknown>>;

export function dump(f: Fixture, d: Descriptors): Dump {
  const h = handles(f, d);
  const saved = f.key;
  const out: Dump = {};
  const read: Record<keyof Descriptors, () => unknown> = {
    value: () => h.value.value(),
    list: () => h.list.get(),
    map: () => sortEntries(h.map.entries()),
    reducing: () => h.reducing.get(),
    aggregating: () => h.aggregating.get(),
  };
  for (const kind of Object.keys(d) as (keyof Descriptors)[]) {
    const name = d[kind].name;
    const perKey: Record<string, unknown> = {};
    for (const id of f.backend
      .entries(name)
      .map(([k]) => k)
      .sort()) {
      f.key = id;
      perKey[JSON.stringify(keyFromId(id))] = read[kind]();
    }
    out[name] = perKey;
  }
  f.key = saved;
  return out;
}

export function sortEntries(entries: [unknown, unknown][]): [unknown, unknown][] {
  return entries.slice().sort(([a], [b]) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
}

/** Restores `snapshot` into a fresh backend and returns the dump of `d` there. */
export async function dumpOfSnapshot(
  make: MakeKeyedStateBackend,
  snapshot: KeyedStateSnapshot,
  d: Descriptors,
): Promise<Dump> {
  let out: Dump = {};
  await withFixture(make, async (f) => {
    await f.backend.restore(snapshot);
    out = dump(f, d);
  });
  return out;
}

export function allDescriptors(d: Descriptors): StateDescriptor[] {
  return Object.values(d) as StateDescriptor[];
}

/** Asserts that `f` throws (or rejects with) a StreamError of `code` whose message matches `patterns`. */
export async function throwsWith(f: () => unknown, code: ErrorCode, ...patterns: RegExp[]): Promise<void> {
  let error: unknown;
  try {
    await f();
  } catch (e) {
    error = e;
  }
  assert.ok(error !== undefined, `expected a StreamError ${code}, but nothing was thrown`);
  assert.ok(isStreamError(error), `expected a StreamError ${code}, got ${String(error)}`);
  assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
  for (const re of patterns) assert.match(error.message, re);
}
