import { Packr } from 'msgpackr';
import { StreamError } from '../api/errors.ts';
import type { KeyId } from '../api/keys.ts';
import type { Serializer } from '../api/serializer.ts';
import type { StateMeta } from './backend.ts';
import { keyFromId, keyId } from './keys.ts';

/**
 * The stored form of keyed state values (what a backend keeps per (state, key)) and their bytes in
 * snapshots. Every backend uses this one codec, so snapshots are backend-independent.
 *
 * Stored values (JS, in the heap backend's maps):
 *
 * | kind                          | without TTL       | with TTL                         |
 * | ---                           | ---               | ---                              |
 * | value, reducing, aggregating  | `T`               | `TtlValue<T>`                    |
 * | list                          | `T[]` (non-empty) | `TtlValue<T>[]` (per element)    |
 * | map                           | `Map<MapKey, V>`  | `Map<MapKey, TtlValue<V>>` (per entry) |
 *
 * `MapKey` is the user key itself for primitives and its key id for arrays and plain objects (and for
 * strings starting with NUL), so object keys compare by value and survive a restore.
 *
 * Bytes (`S(x)` = the state's serializer; `env(...)` = plain MessagePack written by the framework,
 * byte strings as `bin`):
 *
 * | kind                          | without TTL                | with TTL                          |
 * | ---                           | ---                        | ---                               |
 * | value, reducing, aggregating  | `S(v)`                     | `env([ts, S(v)])`                 |
 * | list                          | `env([S(e1), S(e2) ...])`  | `env([[ts1, S(e1)], ...])`        |
 * | map                           | `env([S([k1, v1]) ...])`   | `env([[ts1, S([k1, v1])], ...])`  |
 *
 * `ts` is the entry's TTL timestamp (a float64; `-Infinity` for an event-time entry written before
 * the first watermark).
 *
 * Time-indexed states (no TTL; see time-index.ts) are stored per key as `TimeVersions` (`{ t, v }`,
 * times ascending) and written as `env([[t1, S(v1)], [t2, S(v2)], ...])`, one entry per key like
 * every other kind, so rescaling and savepoint tools need nothing new. (The level backend keeps each
 * version as its own LevelDB entry and converts at `materialize`/`restore`.)
 */

/** A value with the timestamp its time-to-live counts from. Never mutated: replace it. */
export interface TtlValue<T> {
  readonly v: T;
  readonly ts: number;
}

export interface StoredValueCodec {
  encode(stored: unknown): Uint8Array;
  /** Throws CHECKPOINT_CORRUPT naming the state and key when the bytes do not decode. */
  decode(bytes: Uint8Array, key: KeyId): unknown;
}

const envelope = new Packr({ useRecords: false });

export function storedValueCodec(meta: StateMeta, serializer: Serializer<unknown>): StoredValueCodec {
  const ttl = meta.ttl !== undefined;
  const s = serializer;
  const corrupt = (key: KeyId, why: string, cause?: unknown): StreamError =>
    new StreamError(
      'CHECKPOINT_CORRUPT',
      `state '${meta.name}' key ${JSON.stringify(key)}: cannot decode the stored ${meta.kind} value ` +
        `(serializer '${s.id}' v${s.version}): ${why}`,
      { cause },
    );
  const guard = <R>(key: KeyId, f: () => R): R => {
    try {
      return f();
    } catch (e) {
      if (e instanceof StreamError && e.code === 'CHECKPOINT_CORRUPT') throw e;
      throw corrupt(key, e instanceof Error ? e.message : String(e), e);
    }
  };
  const unwrapped = (key: KeyId, bytes: Uint8Array): unknown[] => {
    const items: unknown = envelope.unpack(bytes);
    if (!Array.isArray(items)) throw corrupt(key, 'expected an array');
    return items;
  };
  const pair = (key: KeyId, item: unknown): [number, Uint8Array] => {
    if (!Array.isArray(item) || typeof item[0] !== 'number' || !(item[1] instanceof Uint8Array)) {
      throw corrupt(key, 'expected [timestamp, bytes]');
    }
    return [item[0], item[1]];
  };
  const bytesOf = (key: KeyId, item: unknown): Uint8Array => {
    if (!(item instanceof Uint8Array)) throw corrupt(key, 'expected bytes');
    return item;
  };
  const entry = (key: KeyId, decoded: unknown): [unknown, unknown] => {
    if (!Array.isArray(decoded) || decoded.length !== 2) throw corrupt(key, 'expected a [key, value] entry');
    return [decoded[0], decoded[1]];
  };

  switch (meta.kind) {
    case 'value':
    case 'reducing':
    case 'aggregating':
      return ttl
        ? {
            encode: (stored) => {
              const w = stored as TtlValue<unknown>;
              return envelope.pack([w.ts, s.serialize(w.v)]);
            },
            decode: (bytes, key) =>
              guard(key, () => {
                const [ts, b] = pair(key, envelope.unpack(bytes));
                return { v: s.deserialize(b), ts } satisfies TtlValue<unknown>;
              }),
          }
        : {
            encode: (stored) => s.serialize(stored),
            decode: (bytes, key) => guard(key, () => s.deserialize(bytes)),
          };
    case 'list':
      return ttl
        ? {
            encode: (stored) =>
              envelope.pack((stored as TtlValue<unknown>[]).map((w) => [w.ts, s.serialize(w.v)])),
            decode: (bytes, key) =>
              guard(key, () =>
                unwrapped(key, bytes).map((item): TtlValue<unknown> => {
                  const [ts, b] = pair(key, item);
                  return { v: s.deserialize(b), ts };
                }),
              ),
          }
        : {
            encode: (stored) => envelope.pack((stored as unknown[]).map((e) => s.serialize(e))),
            decode: (bytes, key) =>
              guard(key, () => unwrapped(key, bytes).map((item) => s.deserialize(bytesOf(key, item)))),
          };
    case 'timeIndexed':
      return {
        encode: (stored) => {
          const { t, v } = stored as TimeVersions;
          return envelope.pack(t.map((time, i) => [time, s.serialize(v[i])]));
        },
        decode: (bytes, key) =>
          guard(key, () => {
            const t: number[] = [];
            const v: unknown[] = [];
            for (const [time, b] of unpackVersionBytes(bytes, meta.name, key)) {
              t.push(time);
              v.push(s.deserialize(b));
            }
            return { t, v } satisfies TimeVersions;
          }),
      };
    case 'map':
      return ttl
        ? {
            encode: (stored) => {
              const out: [number, Uint8Array][] = [];
              for (const [mk, w] of stored as Map<unknown, TtlValue<unknown>>) {
                out.push([w.ts, s.serialize([userKeyOf(mk), w.v])]);
              }
              return envelope.pack(out);
            },
            decode: (bytes, key) =>
              guard(key, () => {
                const m = new Map<unknown, TtlValue<unknown>>();
                for (const item of unwrapped(key, bytes)) {
                  const [ts, b] = pair(key, item);
                  const [k, v] = entry(key, s.deserialize(b));
                  m.set(mapKeyOf(k, meta.name), { v, ts });
                }
                return m;
              }),
          }
        : {
            encode: (stored) => {
              const out: Uint8Array[] = [];
              for (const [mk, v] of stored as Map<unknown, unknown>)
                out.push(s.serialize([userKeyOf(mk), v]));
              return envelope.pack(out);
            },
            decode: (bytes, key) =>
              guard(key, () => {
                const m = new Map<unknown, unknown>();
                for (const item of unwrapped(key, bytes)) {
                  const [k, v] = entry(key, s.deserialize(bytesOf(key, item)));
                  m.set(mapKeyOf(k, meta.name), v);
                }
                return m;
              }),
          };
  }
}

/** The stored form of a time-indexed state's key: version times ascending, values in step. */
export interface TimeVersions {
  readonly t: number[];
  readonly v: unknown[];
}

/** `env([[t1, b1], ...])`: a time-indexed key's snapshot bytes from its versions' serialized values. */
export function packVersionBytes(versions: readonly (readonly [number, Uint8Array])[]): Uint8Array {
  return envelope.pack(versions);
}

/**
 * The versions in a time-indexed key's snapshot bytes, checked (finite, strictly ascending times);
 * CHECKPOINT_CORRUPT naming the state and key otherwise.
 */
export function unpackVersionBytes(bytes: Uint8Array, state: string, key: KeyId): [number, Uint8Array][] {
  const bad = (why: string, cause?: unknown) =>
    new StreamError(
      'CHECKPOINT_CORRUPT',
      `state '${state}' key ${JSON.stringify(key)}: cannot decode the stored time-indexed versions: ${why}`,
      { cause },
    );
  let items: unknown;
  try {
    items = envelope.unpack(bytes);
  } catch (e) {
    throw bad(e instanceof Error ? e.message : String(e), e);
  }
  if (!Array.isArray(items) || items.length === 0) throw bad('expected a non-empty array of [time, bytes]');
  let last = Number.NEGATIVE_INFINITY;
  return items.map((item) => {
    if (!Array.isArray(item) || typeof item[0] !== 'number' || !(item[1] instanceof Uint8Array)) {
      throw bad('expected [time, bytes]');
    }
    if (!Number.isFinite(item[0]) || item[0] <= last)
      throw bad('times must be finite and strictly ascending');
    last = item[0];
    return [item[0], item[1]];
  });
}

/**
 * The key under which a MapState (or broadcast state) user key is stored in the JS `Map`:
 * primitives as they are, arrays and plain objects by their canonical key id, so that keys compare
 * by value. Throws USER_FUNCTION_FAILED, naming the state, for other objects (Date, class instances).
 */
export function mapKeyOf(userKey: unknown, stateName: string): unknown {
  if (typeof userKey === 'string') return userKey.charCodeAt(0) === 0 ? keyId(userKey) : userKey;
  if (typeof userKey !== 'object' || userKey === null) return userKey;
  try {
    return keyId(userKey as Parameters<typeof keyId>[0]);
  } catch (e) {
    throw new StreamError(
      'USER_FUNCTION_FAILED',
      `map state '${stateName}': ${(e as Error).message.replace('key selector returned', 'a map key is')}`,
      { cause: e },
    );
  }
}

/** The user key stored under `mapKey` (inverse of `mapKeyOf`). */
export function userKeyOf(mapKey: unknown): unknown {
  return typeof mapKey === 'string' ? keyFromId(mapKey) : mapKey;
}
