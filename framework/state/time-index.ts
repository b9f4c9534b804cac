import { StreamError } from '../api/errors.ts';
import type { KeyId } from '../api/keys.ts';
import type { Serializer } from '../api/serializer.ts';
import type { TimeIndexedState, Version } from '../api/state.ts';
import type { KeyedStateBackend, StateMeta, VersionedStateOps } from './backend.ts';
import type { StoredValueCodec, TimeVersions } from './value-codec.ts';

/**
 * Time-indexed keyed state: versions of a value per key, each with the event time it took effect.
 *
 * Two storages behind one handle (`timeIndexedHandle`), both ordered by time:
 * - **native** (`backend.versioned`, the level backend): every version is its own entry under the
 *   key `versionKey(key, time)`, whose order-preserving time suffix keeps a key's versions
 *   contiguous and time-ordered in LevelDB; the version times of each key are held in memory
 *   (`VersionIndex`, which is also the level backend's key index for such a state), so `asOf` is a
 *   binary search and one point read, never a read of the whole history;
 * - **array** (any other backend, e.g. heap): the key's entry is a `TimeVersions` (times ascending,
 *   values in step), changed copy-on-write through `getForUpdate`.
 *
 * Either way a snapshot holds one entry per key (value-codec.ts), so rescaling and savepoint tools
 * treat it like any other keyed state.
 */

// ---------------------------------------------------------------- order-preserving time encoding

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HI = LITTLE ? 1 : 0;
const LO = LITTLE ? 0 : 1;

/**
 * 16 lowercase hex digits whose string order is the numeric order of `time` (a finite float64):
 * the IEEE bits with the sign bit flipped for non-negative numbers and every bit flipped for
 * negative ones. `-0` encodes as `0`.
 */
export function encodeTime(time: number): string {
  f64[0] = time === 0 ? 0 : time;
  let hi = u32[HI]!;
  let lo = u32[LO]!;
  if (hi & 0x80000000) {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
  } else {
    hi = (hi | 0x80000000) >>> 0;
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

export function decodeTime(hex: string): number {
  let hi = Number.parseInt(hex.slice(0, 8), 16);
  let lo = Number.parseInt(hex.slice(8, 16), 16);
  if (hi & 0x80000000) {
    hi = (hi & 0x7fffffff) >>> 0;
  } else {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
  }
  u32[HI] = hi;
  u32[LO] = lo;
  return f64[0]!;
}

/**
 * The entry key of one version: `<length of the key id, base 36>:<key id><encodeTime(time)>`. The
 * length prefix makes the versions of one key a contiguous, time-ordered run of keys (no other key
 * id can continue this prefix), and the whole injective.
 */
export function versionKey(key: KeyId, time: number): string {
  return `${key.length.toString(36)}:${key}${encodeTime(time)}`;
}

/** `[key id, time]` of a `versionKey`, or undefined when `entry` is not one. */
export function parseVersionKey(entry: string): [KeyId, number] | undefined {
  const colon = entry.indexOf(':');
  if (colon < 1) return undefined;
  const len = Number.parseInt(entry.slice(0, colon), 36);
  if (!Number.isSafeInteger(len) || colon + 1 + len + 16 !== entry.length) return undefined;
  const hex = entry.slice(entry.length - 16);
  if (!/^[0-9a-f]{16}$/.test(hex)) return undefined;
  return [entry.slice(colon + 1, colon + 1 + len), decodeTime(hex)];
}

// ---------------------------------------------------------------- sorted arrays

/** Index of the last time <= t, or -1. */
export function floorIndex(times: readonly number[], t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** Index of the first time >= t (times.length when none). */
export function lowerBound(times: readonly number[], t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const NO_TIMES: readonly number[] = Object.freeze([]);

/**
 * The version times of every key of one state, in memory, behaving as the `Set` of version entry
 * keys (`versionKey`) that the level backend keeps as a state's key index: `size` counts versions.
 * About 8 bytes per version plus a Map entry and an array per key.
 */
export class VersionIndex {
  readonly #times = new Map<KeyId, number[]>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Keys with at least one version. */
  get keyCount(): number {
    return this.#times.size;
  }

  add(entry: string): this {
    const parsed = parseVersionKey(entry);
    if (parsed === undefined) throw new Error(`not a version entry key: ${JSON.stringify(entry)}`);
    const [key, t] = parsed;
    const times = this.#times.get(key);
    if (times === undefined) {
      this.#times.set(key, [t]);
    } else if (t > times[times.length - 1]!) {
      times.push(t);
    } else {
      const i = lowerBound(times, t);
      if (times[i] === t) return this;
      times.splice(i, 0, t);
    }
    this.#size++;
    return this;
  }

  has(entry: string): boolean {
    const parsed = parseVersionKey(entry);
    if (parsed === undefined) return false;
    const times = this.#times.get(parsed[0]);
    return times !== undefined && times[lowerBound(times, parsed[1])] === parsed[1];
  }

  delete(entry: string): boolean {
    const parsed = parseVersionKey(entry);
    if (parsed === undefined) return false;
    const [key, t] = parsed;
    const times = this.#times.get(key);
    if (times === undefined) return false;
    const i = lowerBound(times, t);
    if (times[i] !== t) return false;
    if (times.length === 1) this.#times.delete(key);
    else times.splice(i, 1);
    this.#size--;
    return true;
  }

  clear(): void {
    this.#times.clear();
    this.#size = 0;
  }

  /** The key's version times, ascending; a live array: do not change it. */
  times(key: KeyId): readonly number[] {
    return this.#times.get(key) ?? NO_TIMES;
  }

  keys(): IterableIterator<KeyId> {
    return this.#times.keys();
  }

  *[Symbol.iterator](): IterableIterator<string> {
    for (const [key, times] of this.#times) for (const t of times) yield versionKey(key, t);
  }
}

/** The codec of one version's value (native storage): the serializer's bytes, `S(v)`. */
export function versionValueCodec(meta: StateMeta, s: Serializer<unknown>): StoredValueCodec {
  return {
    encode: (v) => s.serialize(v),
    decode: (bytes, key) => {
      try {
        return s.deserialize(bytes);
      } catch (e) {
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `state '${meta.name}' version ${JSON.stringify(key)}: cannot decode the stored value (serializer '${s.id}' v${s.version}): ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        );
      }
    },
  };
}

// ---------------------------------------------------------------- version stores

/** What the handle and the queries need from a storage of versions. */
export interface VersionStore {
  /** Version times of `key`, ascending (a live array: do not change it). */
  times(key: KeyId): readonly number[];
  /** The value of the version of `key` at exactly `time` (which `times` lists). */
  value(key: KeyId, time: number): unknown;
  put(key: KeyId, time: number, value: unknown): void;
  /** Drop the `n` oldest versions of `key`. */
  dropOldest(key: KeyId, n: number): void;
  clear(key: KeyId): void;
  /** The keys with at least one version. */
  keys(): Iterable<KeyId>;
}

/** The version store of state `name` of `backend`: native when the backend has one, else arrays. */
export function versionStore(backend: KeyedStateBackend, name: string): VersionStore {
  const native = backend.versioned;
  return native !== undefined ? nativeStore(native, name) : arrayStore(backend, name);
}

function nativeStore(ops: VersionedStateOps, name: string): VersionStore {
  return {
    times: (key) => ops.times(name, key),
    value: (key, time) => ops.get(name, key, time),
    put: (key, time, value) => ops.put(name, key, time, value),
    dropOldest: (key, n) => {
      const doomed = ops.times(name, key).slice(0, n);
      for (const t of doomed) ops.delete(name, key, t);
    },
    clear: (key) => {
      for (const t of ops.times(name, key).slice()) ops.delete(name, key, t);
    },
    keys: () => ops.keys(name),
  };
}

const copyVersions = (x: TimeVersions): TimeVersions => ({ t: x.t.slice(), v: x.v.slice() });

function arrayStore(backend: KeyedStateBackend, name: string): VersionStore {
  const read = (key: KeyId) => backend.get(name, key) as TimeVersions | undefined;
  return {
    times: (key) => read(key)?.t ?? NO_TIMES,
    value: (key, time) => {
      const x = read(key);
      if (x === undefined) return undefined;
      const i = lowerBound(x.t, time);
      return x.t[i] === time ? x.v[i] : undefined;
    },
    put: (key, time, value) => {
      const x = backend.getForUpdate<TimeVersions>(name, key, copyVersions);
      if (x === undefined) {
        backend.put(name, key, { t: [time], v: [value] } satisfies TimeVersions);
        return;
      }
      const last = x.t.length - 1;
      if (time > x.t[last]!) {
        x.t.push(time);
        x.v.push(value);
      } else {
        const i = lowerBound(x.t, time);
        if (x.t[i] === time) x.v[i] = value;
        else {
          x.t.splice(i, 0, time);
          x.v.splice(i, 0, value);
        }
      }
      backend.put(name, key, x);
    },
    dropOldest: (key, n) => {
      const x = read(key);
      if (x === undefined || n <= 0) return;
      if (n >= x.t.length) backend.delete(name, key);
      else backend.put(name, key, { t: x.t.slice(n), v: x.v.slice(n) } satisfies TimeVersions);
    },
    clear: (key) => backend.delete(name, key),
    keys: () => backend.entries(name).map(([k]) => k),
  };
}

// ---------------------------------------------------------------- reads and the handle

export function checkTime(what: string, t: unknown): number {
  if (typeof t !== 'number' || !Number.isFinite(t)) {
    throw new StreamError(
      'USER_FUNCTION_FAILED',
      `${what} must be a finite number (event-time ms), got ${String(t)}`,
    );
  }
  return t;
}

/** The version of `key` in effect at `t` (the latest with time <= t). */
export function readAsOf(store: VersionStore, key: KeyId, t: number): Version<unknown> | undefined {
  const times = store.times(key);
  const i = floorIndex(times, t);
  if (i < 0) return undefined;
  const time = times[i]!;
  return { time, value: store.value(key, time) };
}

/** The versions of `key` with from <= time < to, oldest first (at most `limit`). */
export function readRange(
  store: VersionStore,
  key: KeyId,
  from: number,
  to: number,
  limit = Number.POSITIVE_INFINITY,
): Version<unknown>[] {
  const times = store.times(key);
  const out: Version<unknown>[] = [];
  for (let i = lowerBound(times, from); i < times.length && times[i]! < to && out.length < limit; i++) {
    const time = times[i]!;
    out.push({ time, value: store.value(key, time) });
  }
  return out;
}

export function readLatest(store: VersionStore, key: KeyId): Version<unknown> | undefined {
  const times = store.times(key);
  if (times.length === 0) return undefined;
  const time = times[times.length - 1]!;
  return { time, value: store.value(key, time) };
}

/**
 * Drops the versions of `key` that retention no longer needs: all but the newest at or before
 * `cutoff`. Returns how many it dropped.
 */
export function applyRetention(store: VersionStore, key: KeyId, cutoff: number): number {
  const i = floorIndex(store.times(key), cutoff);
  if (i <= 0) return 0;
  store.dropOldest(key, i);
  return i;
}

export function checkRetention(name: string, retentionMs: number | undefined): number | undefined {
  if (retentionMs === undefined) return undefined;
  if (!(typeof retentionMs === 'number' && retentionMs >= 0 && !Number.isNaN(retentionMs))) {
    throw new StreamError(
      'CONFIG_INVALID',
      `time-indexed state '${name}': retentionMs must be a number >= 0 (milliseconds), got ${String(retentionMs)}`,
    );
  }
  return retentionMs === Number.POSITIVE_INFINITY ? undefined : retentionMs;
}

/** The handle over `store` for the current key of `ctx`. */
export function timeIndexedHandle<V>(
  store: VersionStore,
  ctx: { currentKey(): KeyId; watermark(): number },
  name: string,
  retentionMs: number | undefined,
): TimeIndexedState<V> {
  return {
    put: (time, value) => {
      checkTime(`time-indexed state '${name}': put's time`, time);
      if (value === undefined) {
        throw new StreamError(
          'USER_FUNCTION_FAILED',
          `time-indexed state '${name}': put(${time}, undefined): a version needs a value`,
        );
      }
      const key = ctx.currentKey();
      store.put(key, time, value);
      if (retentionMs !== undefined) {
        const times = store.times(key);
        const reference = Math.max(times[times.length - 1]!, ctx.watermark());
        applyRetention(store, key, reference - retentionMs);
      }
    },
    asOf: (time) =>
      readAsOf(store, ctx.currentKey(), checkTime(`time-indexed state '${name}': asOf's time`, time)) as
        | Version<V>
        | undefined,
    range: (from, to) =>
      readRange(
        store,
        ctx.currentKey(),
        checkTime(`time-indexed state '${name}': range's from`, from),
        checkTime(`time-indexed state '${name}': range's to`, to),
      ) as Version<V>[],
    latest: () => readLatest(store, ctx.currentKey()) as Version<V> | undefined,
    size: () => store.times(ctx.currentKey()).length,
    clear: () => store.clear(ctx.currentKey()),
  };
}

/** Retention at a checkpoint: every key's versions before `watermark - retentionMs` (but the floor). */
export function cleanupRetention(store: VersionStore, cutoff: number): number {
  if (!Number.isFinite(cutoff)) return 0;
  let dropped = 0;
  for (const key of [...store.keys()]) dropped += applyRetention(store, key, cutoff);
  return dropped;
}
