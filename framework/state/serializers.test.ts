import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import {
  builtinSerializer,
  checkSerializerCompatible,
  DEFAULT_SERIALIZER_ID,
  defaultSerializer,
  jsonSerializer,
  msgpackSerializer,
  userSerializer,
} from './serializers.ts';

describe('msgpack serializer', () => {
  test('round-trips JSON values, Map, Set, Date, typed arrays, undefined, NaN, Infinity and bigint', () => {
    const s = msgpackSerializer<unknown>();
    const values: unknown[] = [
      { a: 1, b: [1, 2, { c: 'x' }], d: null },
      new Map<unknown, unknown>([
        [1, 'one'],
        ['k', { nested: new Map([['x', [1]]]) }],
      ]),
      new Set([1, 'a']),
      new Date(1_700_000_000_123),
      Uint8Array.of(1, 2, 3),
      [undefined, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
      2n ** 70n,
      'a string',
      2 ** 53,
      -1.5,
    ];
    for (const v of values) assert.deepEqual(s.deserialize(s.serialize(v)), v);
  });

  test('round-trips any JSON value (property)', () => {
    const s = msgpackSerializer<unknown>();
    fc.assert(
      // msgpackr drops own `__proto__` keys on decode (prototype-pollution guard): a documented
      // limit of the msgpack serializer (docs/state.md); use the json serializer for such values.
      fc.property(
        fc.jsonValue().filter((v) => !JSON.stringify(v).includes('"__proto__"')),
        (v) => {
          const normalized = JSON.parse(JSON.stringify(v)); // -0 -> 0, as msgpack
          assert.deepEqual(s.deserialize(s.serialize(normalized)), normalized);
        },
      ),
    );
  });

  test('never reuses a returned buffer', () => {
    const s = msgpackSerializer<unknown>();
    const first = s.serialize({ id: 1, name: 'first' });
    const copy = Uint8Array.from(first);
    for (let i = 0; i < 10_000; i++) s.serialize({ id: i, name: 'x'.repeat(i % 50) });
    assert.deepEqual(Uint8Array.from(first), copy);
  });

  test('is the default', () => {
    assert.equal(DEFAULT_SERIALIZER_ID, 'msgpack');
    assert.equal(defaultSerializer().id, 'msgpack');
  });
});

describe('json serializer', () => {
  test('round-trips JSON values as UTF-8 JSON', () => {
    const s = jsonSerializer<unknown>();
    assert.equal(new TextDecoder().decode(s.serialize({ a: [1, 'é'] })), '{"a":[1,"é"]}');
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const normalized = JSON.parse(JSON.stringify(v));
        assert.deepEqual(s.deserialize(s.serialize(normalized)), normalized);
      }),
    );
  });

  test('refuses undefined instead of writing something else', () => {
    assert.throws(() => jsonSerializer().serialize(undefined), /json serializer cannot encode undefined/);
  });
});

describe('user serializers', () => {
  test('need an id starting with user: and a non-negative integer version', () => {
    const ser = (s: string) => new TextEncoder().encode(s);
    const de = (b: Uint8Array) => new TextDecoder().decode(b);
    const s = userSerializer('user:text', 3, ser, de);
    assert.equal(s.id, 'user:text');
    assert.equal(s.version, 3);
    assert.equal(s.deserialize(s.serialize('hi')), 'hi');
    for (const [id, version] of [
      ['text', 1],
      ['user:', 1],
      ['user:x', -1],
      ['user:x', 1.5],
    ] as const) {
      assert.throws(
        () => userSerializer(id, version, ser, de),
        (e: unknown) => isStreamError(e, 'CONFIG_INVALID'),
      );
    }
  });

  test('builtinSerializer resolves msgpack and json only', () => {
    assert.equal(builtinSerializer('msgpack'), msgpackSerializer());
    assert.equal(builtinSerializer('json'), jsonSerializer());
    assert.equal(builtinSerializer('user:x'), undefined);
  });
});

describe('checkSerializerCompatible', () => {
  const inSnapshot = { name: 'orders', serializerId: 'user:orders', serializerVersion: 2 };

  test('accepts the same serializer at the same or a newer version', () => {
    checkSerializerCompatible(inSnapshot, { id: 'user:orders', version: 2 });
    checkSerializerCompatible(inSnapshot, { id: 'user:orders', version: 3 });
  });

  test('refuses another serializer or an older reader with SERIALIZER_MISMATCH naming the state', () => {
    assert.throws(
      () => checkSerializerCompatible(inSnapshot, { id: 'msgpack', version: 1 }, 'chk-3/keyed.bin'),
      (e: unknown) =>
        isStreamError(e, 'SERIALIZER_MISMATCH') &&
        /'orders' in chk-3\/keyed\.bin was written with serializer 'user:orders'.*'msgpack'/.test(e.message),
    );
    assert.throws(
      () => checkSerializerCompatible(inSnapshot, { id: 'user:orders', version: 1 }),
      (e: unknown) =>
        isStreamError(e, 'SERIALIZER_MISMATCH') && /version 2, newer than .* version 1/.test(e.message),
    );
  });
});
