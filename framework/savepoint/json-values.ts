/**
 * State values as JSON, for savepoint export and import. JSON values stay as they are (so jq and
 * DuckDB read them directly); the values msgpack round-trips and JSON cannot are written as
 * one-key objects with a `$` tag:
 *
 * | value | JSON |
 * | --- | --- |
 * | `NaN`, `Infinity`, `-Infinity` | `{"$number": "NaN"}` ... |
 * | `undefined` | `{"$undefined": true}` |
 * | bigint | `{"$bigint": "123"}` |
 * | `Date` | `{"$date": "2024-01-01T00:00:00.000Z"}` |
 * | `Uint8Array` | `{"$bytes": "<base64>"}` |
 * | other typed arrays | `{"$typed": ["Float64Array", "<base64 of its bytes>"]}` |
 * | `Map` | `{"$map": [[k, v], ...]}` |
 * | `Set` | `{"$set": [v, ...]}` |
 * | a plain object with one key starting with `$` | `{"$object": {...}}` (so it is never read as a tag) |
 *
 * `fromJsonValue(toJsonValue(v))` deep-equals `v` for every value the msgpack serializer round-trips.
 */

const TYPED = {
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
} as const;

export function toJsonValue(v: unknown): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? (Object.is(v, -0) ? 0 : v) : { $number: String(v) };
  if (v === undefined) return { $undefined: true };
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (v instanceof Date) return { $date: Number.isNaN(v.getTime()) ? null : v.toISOString() };
  if (v instanceof Uint8Array && v.constructor.name !== 'Uint8ClampedArray')
    return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (ArrayBuffer.isView(v)) {
    return {
      $typed: [v.constructor.name, Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')],
    };
  }
  if (Array.isArray(v)) return v.map(toJsonValue);
  if (v instanceof Map) return { $map: [...v].map(([k, x]) => [toJsonValue(k), toJsonValue(x)]) };
  if (v instanceof Set) return { $set: [...v].map(toJsonValue) };
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toJsonValue(x);
    const keys = Object.keys(out);
    return keys.length === 1 && keys[0]!.startsWith('$') ? { $object: out } : out;
  }
  throw new TypeError(`a ${typeof v} cannot be written as JSON`);
}

/** The inverse of `toJsonValue`. Throws a TypeError naming the JSON path of a malformed tag. */
export function fromJsonValue(j: unknown, path = '$'): unknown {
  if (j === null || typeof j !== 'object') return j;
  if (Array.isArray(j)) return j.map((x, i) => fromJsonValue(x, `${path}[${i}]`));
  const keys = Object.keys(j);
  const o = j as Record<string, unknown>;
  if (keys.length === 1 && keys[0]!.startsWith('$')) {
    const tag = keys[0]!;
    const x = o[tag];
    const bad = (what: string) => new TypeError(`${path}: {"${tag}": ...} needs ${what}`);
    switch (tag) {
      case '$number':
        if (x !== 'NaN' && x !== 'Infinity' && x !== '-Infinity')
          throw bad('"NaN", "Infinity" or "-Infinity"');
        return Number(x);
      case '$undefined':
        return undefined;
      case '$bigint':
        if (typeof x !== 'string' || !/^-?\d+$/.test(x)) throw bad('a string of digits');
        return BigInt(x);
      case '$date': {
        const d = new Date(x === null ? Number.NaN : (x as string));
        if (x !== null && (typeof x !== 'string' || Number.isNaN(d.getTime())))
          throw bad('an ISO date string');
        return d;
      }
      case '$bytes':
        if (typeof x !== 'string') throw bad('a base64 string');
        return new Uint8Array(Buffer.from(x, 'base64'));
      case '$typed': {
        if (!Array.isArray(x) || typeof x[1] !== 'string' || !(x[0] in TYPED))
          throw bad(`[type, base64] with type one of ${Object.keys(TYPED).join(', ')}`);
        const bytes = Buffer.from(x[1], 'base64');
        const C = TYPED[x[0] as keyof typeof TYPED];
        const copy = new Uint8Array(bytes).buffer;
        if (copy.byteLength % C.BYTES_PER_ELEMENT !== 0) throw bad(`a whole number of ${x[0]} elements`);
        return new C(copy);
      }
      case '$map':
        if (!Array.isArray(x) || x.some((e) => !Array.isArray(e) || e.length !== 2))
          throw bad('an array of [key, value] pairs');
        return new Map(
          x.map((e: unknown[], i) => [
            fromJsonValue(e[0], `${path}.$map[${i}][0]`),
            fromJsonValue(e[1], `${path}.$map[${i}][1]`),
          ]),
        );
      case '$set':
        if (!Array.isArray(x)) throw bad('an array');
        return new Set(x.map((e, i) => fromJsonValue(e, `${path}.$set[${i}]`)));
      case '$object': {
        if (x === null || typeof x !== 'object' || Array.isArray(x)) throw bad('an object');
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(x)) out[k] = fromJsonValue(v, `${path}.${k}`);
        return out;
      }
      default:
        throw new TypeError(
          `${path}: unknown tag "${tag}" (a one-key object whose key starts with '$' is a tag; write a plain object like that as {"$object": {...}})`,
        );
    }
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = fromJsonValue(o[k], `${path}.${k}`);
  return out;
}
