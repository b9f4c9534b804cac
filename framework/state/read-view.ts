import type { KeyId } from '../api/keys.ts';
import type { Version } from '../api/state.ts';
import type { KeyedStateBackend, StateMeta } from './backend.ts';
import { readAsOf, readLatest, readRange, type VersionStore, versionStore } from './time-index.ts';
import { type TtlValue, userKeyOf } from './value-codec.ts';

/**
 * Reading one keyed state of a backend from outside its operator (interactive queries), in the
 * user's terms. This is the one reader of stored values besides the state handles (handles.ts), so
 * the stored form of value-codec.ts stays known here and there only: callers never see a
 * `TtlValue` wrapper, a map's internal keys or a `TimeVersions` array.
 *
 * - `openStateReader(backend, name)` finds the state by its full name (`<operator uid>/<state>`)
 *   among the states the backend holds (registered by their operators, or restored from a snapshot
 *   and not opened yet). A restored state is registered for reading when its serializer is built in
 *   (`msgpack`, `json`); otherwise, or when the backend refuses (it is closing), the outcome is
 *   `unopened` and the caller may try again later. Outcomes are values, not exceptions.
 * - Values are what a handle would return, except that TTL expiry is not applied (a query has no
 *   watermark or processing time of the task): a value that expired but was not cleaned up yet is
 *   returned with its TTL wrapper removed. Lists are arrays, maps arrays of `[user key, value]`
 *   entries (a map state's object keys as the user gave them), and a time-indexed state's current
 *   value is its newest version `{ time, value }`.
 *
 * Reads are synchronous and must run between two records of the owning task (as queries do: the
 * task's handles are synchronous), so one read sees one consistent state of the key.
 */
export type StateReaderOutcome =
  | { readonly kind: 'ok'; readonly reader: StateReader }
  /** The backend holds no state of that name; `states` are the names of the ones it holds. */
  | { readonly kind: 'unknown'; readonly states: readonly string[] }
  /** Restored but not readable yet (a user serializer, or the backend is closing): try again. */
  | { readonly kind: 'unopened'; readonly reason: string };

export interface StateReader {
  readonly meta: StateMeta;
  /** The key's current value (see above), or undefined when the key has none. */
  current(key: KeyId): unknown;
  /** The ids of the keys with a value, in no particular order. */
  keys(): Iterable<KeyId>;
  /** The version reads of a time-indexed state; undefined for every other kind. */
  readonly versions: VersionReader | undefined;
}

/** Reads of a time-indexed state (time-index.ts): versions `{ time, value }`, oldest first. */
export interface VersionReader {
  /** Whether the key has at least one version. */
  has(key: KeyId): boolean;
  latest(key: KeyId): Version<unknown> | undefined;
  /** The version in effect at `t` (the latest with time <= t); `t` a finite number. */
  asOf(key: KeyId, t: number): Version<unknown> | undefined;
  /** The versions with from <= time < to, at most `limit`. */
  range(key: KeyId, from: number, to: number, limit: number): Version<unknown>[];
}

export function openStateReader(backend: KeyedStateBackend, name: string): StateReaderOutcome {
  const metas = backend.states?.() ?? [];
  const meta = metas.find((m) => m.name === name);
  if (meta === undefined) return { kind: 'unknown', states: metas.map((m) => m.name) };
  try {
    // Idempotent for a state its operator registered; makes a restored one readable.
    backend.register(meta);
  } catch (e) {
    return { kind: 'unopened', reason: e instanceof Error ? e.message : String(e) };
  }
  if (meta.kind === 'timeIndexed') {
    const store = versionStore(backend, name);
    const versions = versionReader(store);
    return {
      kind: 'ok',
      reader: { meta, current: (key) => versions.latest(key), keys: () => store.keys(), versions },
    };
  }
  return {
    kind: 'ok',
    reader: {
      meta,
      current: (key) => userValue(meta, backend.get(name, key)),
      keys: () => backend.entries(name).map(([k]) => k),
      versions: undefined,
    },
  };
}

function versionReader(store: VersionStore): VersionReader {
  return {
    has: (key) => store.times(key).length > 0,
    latest: (key) => readLatest(store, key),
    asOf: (key, t) => readAsOf(store, key, t),
    range: (key, from, to, limit) => readRange(store, key, from, to, limit),
  };
}

/** A stored value (value-codec.ts "Stored values") as the user sees it, JSON-safe. */
function userValue(meta: StateMeta, stored: unknown): unknown {
  if (stored === undefined) return undefined;
  const ttl = meta.ttl !== undefined;
  switch (meta.kind) {
    case 'list':
      return ttl ? (stored as TtlValue<unknown>[]).map((w) => w.v) : stored;
    case 'map':
      return [...(stored as Map<unknown, unknown>)].map(([k, v]) => [
        userKeyOf(k),
        ttl ? (v as TtlValue<unknown>).v : v,
      ]);
    default: {
      const v = ttl ? (stored as TtlValue<unknown>).v : stored;
      return v instanceof Map ? [...v] : v;
    }
  }
}
