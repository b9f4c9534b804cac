import { StreamError } from '../api/errors.ts';
import type { Key, KeyId, Partitioner } from '../api/keys.ts';
import { partitionerFunction } from './partitioners.ts';

export { murmur2, toPositive } from './partitioners.ts';

/**
 * Key ids and key groups.
 *
 * A key id is the canonical, reversible string form of a key (see `api/keys.ts`):
 * - a string key is its own id, so the id of a string key hashes exactly like Kafka's default
 *   partitioner hashes the record key `Buffer.from(key, 'utf8')`;
 * - every other key (number, boolean, null, array, plain object) is `'\u0000'` + canonical JSON,
 *   with object fields sorted, so `{a:1,b:2}` and `{b:2,a:1}` are the same key and `42` differs
 *   from `'42'`;
 * - the rare string key that itself starts with `'\u0000'` is escaped the same way
 *   (`'\u0000' + JSON.stringify(key)`), which keeps ids injective. Its key group is still computed
 *   from the UTF-8 of the string itself.
 *
 * `-0` is the same key as `0` (JSON has no negative zero).
 *
 * The key group of a key is its Kafka partition under the stage's partitioner (`partitioners.ts`;
 * default murmur2: `toPositive(murmur2(bytes)) % numKeyGroups`, as in Kafka's
 * `BuiltInPartitioner.partitionForKey`); so a topic keyed by the same string key needs no shuffle:
 * partition p of the input holds exactly key group p. The bytes hashed are `keyBytes(id)`: a string
 * key selected from the value hashes exactly like a record whose Kafka key is that string's UTF-8.
 */

const NUL = 0;
const QUOTE = 34; // '"'

const KEY_RULE = 'keys must be strings, finite numbers, booleans, null, or arrays and plain objects of those';

/** The key id of `key`; throws USER_FUNCTION_FAILED for values that are not keys. */
export function keyId(key: Key): KeyId {
  if (typeof key === 'string') {
    return key.charCodeAt(0) === NUL ? `\u0000${JSON.stringify(key)}` : key;
  }
  return `\u0000${canonicalJson(key, '$')}`;
}

/** The key whose id is `id` (a fresh value; the inverse of `keyId`). */
export function keyFromId(id: KeyId): Key {
  if (id.charCodeAt(0) !== NUL) return id;
  return JSON.parse(id.slice(1)) as Key;
}

/**
 * The bytes hashed for the key group: UTF-8 of the string for string keys, UTF-8 of the canonical
 * JSON for the others.
 */
export function keyBytes(id: KeyId): Uint8Array {
  if (id.charCodeAt(0) !== NUL) return Buffer.from(id, 'utf8');
  if (id.charCodeAt(1) === QUOTE) return Buffer.from(JSON.parse(id.slice(1)) as string, 'utf8');
  return Buffer.from(id.slice(1), 'utf8');
}

/**
 * The key group (= Kafka partition) of a key id among `numKeyGroups` under `partitioner` (the
 * stage's; default murmur2, Kafka's default partitioner).
 */
export function keyGroupOf(id: KeyId, numKeyGroups: number, partitioner: Partitioner = 'murmur2'): number {
  return partitionerFunction(partitioner)(keyBytes(id), numKeyGroups);
}

function canonicalJson(value: unknown, path: string): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw notAKey(value, path);
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          out += canonicalJson(value[i], `${path}[${i}]`);
        }
        return `${out}]`;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw notAKey(value, path);
      const record = value as Record<string, unknown>;
      const fields = Object.keys(record).sort();
      let out = '{';
      for (let i = 0; i < fields.length; i++) {
        const field = fields[i]!;
        if (i > 0) out += ',';
        out += `${JSON.stringify(field)}:${canonicalJson(record[field], `${path}.${field}`)}`;
      }
      return `${out}}`;
    }
    default:
      throw notAKey(value, path);
  }
}

function notAKey(value: unknown, path: string): StreamError {
  return new StreamError(
    'USER_FUNCTION_FAILED',
    `key selector returned ${describe(value)}${path === '$' ? '' : ` at ${path}`}: ${KEY_RULE}`,
  );
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'bigint') return `the bigint ${value}n`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  if (typeof value === 'object' && value !== null) {
    const name = (value as { constructor?: { name?: string } }).constructor?.name;
    return `an instance of ${name ?? 'an unknown class'}`;
  }
  return typeof value;
}
