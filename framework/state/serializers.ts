import { Packr } from 'msgpackr';
import { StreamError } from '../api/errors.ts';
import type { Serializer } from '../api/serializer.ts';

/**
 * The built-in serializers and the compatibility rule snapshots are checked against.
 *
 * - `msgpack` (the default; see docs/state.md for the benchmark that chose it): msgpackr with its
 *   record extension (object shapes defined inline in each value, so every value is self-contained)
 *   and `moreTypes`, so `Map`, `Set`, `Date`, typed arrays, `undefined`, `NaN`, `Infinity` and
 *   bigint round-trip. Negative zero becomes zero.
 * - `json`: UTF-8 JSON. Only JSON-shaped values round-trip (no `Map`, `Date`, `undefined`, `NaN`).
 * - `user:<name>`: the user's own functions, with their own version.
 */

export const MSGPACK_SERIALIZER_ID = 'msgpack';
export const JSON_SERIALIZER_ID = 'json';
/** Chosen by `scripts/bench/serializers.ts` (docs/state.md, "Serializers"). */
export const DEFAULT_SERIALIZER_ID = MSGPACK_SERIALIZER_ID;

const packr = new Packr({ moreTypes: true });

const MSGPACK: Serializer<unknown> = Object.freeze({
  id: MSGPACK_SERIALIZER_ID,
  version: 1,
  serialize: (value: unknown): Uint8Array => packr.pack(value),
  deserialize: (bytes: Uint8Array): unknown => packr.unpack(bytes),
});

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

const JSON_SERIALIZER: Serializer<unknown> = Object.freeze({
  id: JSON_SERIALIZER_ID,
  version: 1,
  serialize(value: unknown): Uint8Array {
    const text = JSON.stringify(value);
    if (text === undefined) {
      throw new StreamError(
        'CONFIG_INVALID',
        `the json serializer cannot encode ${typeof value} values; use the msgpack serializer`,
      );
    }
    return encoder.encode(text);
  },
  deserialize: (bytes: Uint8Array): unknown => JSON.parse(decoder.decode(bytes)),
});

/** msgpackr with records and `moreTypes` (Map, Set, Date, typed arrays, bigint round-trip). */
export function msgpackSerializer<T>(): Serializer<T> {
  return MSGPACK as Serializer<T>;
}

/** UTF-8 JSON; only JSON-shaped values round-trip. */
export function jsonSerializer<T>(): Serializer<T> {
  return JSON_SERIALIZER as Serializer<T>;
}

/** The serializer states use when their descriptor names none. */
export function defaultSerializer<T>(): Serializer<T> {
  return MSGPACK as Serializer<T>;
}

/**
 * A user-supplied serializer. `id` must start with `user:`; bump `version` whenever the byte layout
 * changes, and keep `deserialize` able to read the bytes of every older version (restore refuses
 * bytes written by a newer version than the reader's).
 */
export function userSerializer<T>(
  id: string,
  version: number,
  serialize: (value: T) => Uint8Array,
  deserialize: (bytes: Uint8Array) => T,
): Serializer<T> {
  if (!id.startsWith('user:') || id.length === 'user:'.length) {
    throw new StreamError(
      'CONFIG_INVALID',
      `user serializer id '${id}' must start with 'user:' followed by a name, e.g. 'user:orders'`,
    );
  }
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new StreamError(
      'CONFIG_INVALID',
      `user serializer '${id}' has version ${version}; versions are non-negative integers`,
    );
  }
  return Object.freeze({ id, version, serialize, deserialize });
}

/** The built-in serializer with this id (`msgpack`, `json`), if any. */
export function builtinSerializer(id: string): Serializer<unknown> | undefined {
  if (id === MSGPACK_SERIALIZER_ID) return MSGPACK;
  if (id === JSON_SERIALIZER_ID) return JSON_SERIALIZER;
  return undefined;
}

/** What a snapshot records about the serializer of one state. */
export interface SerializerInSnapshot {
  /** The state's name, for the error message. */
  readonly name: string;
  readonly serializerId: string;
  readonly serializerVersion: number;
}

/**
 * Throws SERIALIZER_MISMATCH, naming the state (and `where`, e.g. a file), when the snapshot was
 * written by another serializer or by a newer version of this one. Older versions are accepted: a
 * serializer must read the bytes of its earlier versions.
 */
export function checkSerializerCompatible(
  inSnapshot: SerializerInSnapshot,
  current: Pick<Serializer<unknown>, 'id' | 'version'>,
  where?: string,
): void {
  const at = where === undefined ? '' : ` in ${where}`;
  if (inSnapshot.serializerId !== current.id) {
    throw new StreamError(
      'SERIALIZER_MISMATCH',
      `state '${inSnapshot.name}'${at} was written with serializer '${inSnapshot.serializerId}' ` +
        `but is now declared with '${current.id}': restore with the original serializer, or migrate the state`,
    );
  }
  if (inSnapshot.serializerVersion > current.version) {
    throw new StreamError(
      'SERIALIZER_MISMATCH',
      `state '${inSnapshot.name}'${at} was written with serializer '${current.id}' version ` +
        `${inSnapshot.serializerVersion}, newer than this build's version ${current.version}: ` +
        'run a build that knows that version',
    );
  }
}
