import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import type { StateKind } from '../api/state.ts';
import type { StateMeta } from './backend.ts';
import { jsonSerializer, msgpackSerializer } from './serializers.ts';
import { mapKeyOf, storedValueCodec, userKeyOf } from './value-codec.ts';

const meta = (kind: StateKind, ttl = false): StateMeta => ({
  name: 'st',
  kind,
  serializerId: 'msgpack',
  serializerVersion: 1,
  ...(ttl ? { ttl: { ttlMs: 10, time: 'event' } } : {}),
});

describe('storedValueCodec', () => {
  const s = msgpackSerializer<unknown>();

  test('round-trips every stored form, with and without TTL', () => {
    const cases: [StateMeta, unknown][] = [
      [meta('value'), { a: [1, 2] }],
      [meta('reducing'), 42],
      [meta('aggregating'), { sum: 3, count: 2 }],
      [meta('value', true), { v: 'x', ts: 1000 }],
      [meta('value', true), { v: 'before the first watermark', ts: Number.NEGATIVE_INFINITY }],
      [meta('list'), [1, 'two', { three: 3 }]],
      [
        meta('list', true),
        [
          { v: 1, ts: 5 },
          { v: 2, ts: 6 },
        ],
      ],
      [
        meta('map'),
        new Map<unknown, unknown>([
          ['a', 1],
          [2, 'b'],
          [mapKeyOf({ id: 1 }, 'st'), [1]],
        ]),
      ],
      [meta('map', true), new Map([['a', { v: 1, ts: 7 }]])],
    ];
    for (const [m, stored] of cases) {
      const codec = storedValueCodec(m, s);
      assert.deepEqual(
        codec.decode(codec.encode(stored), 'k'),
        stored,
        `${m.kind} ttl=${m.ttl !== undefined}`,
      );
    }
  });

  test('value state without TTL is the plain serializer bytes', () => {
    const json = jsonSerializer<unknown>();
    const codec = storedValueCodec({ ...meta('value'), serializerId: 'json' }, json);
    assert.equal(new TextDecoder().decode(codec.encode({ a: 1 })), '{"a":1}');
  });

  test('map state entries go through the entry serializer as [userKey, value]', () => {
    const seen: unknown[] = [];
    const spy = {
      id: 'msgpack',
      version: 1,
      serialize: (v: unknown) => {
        seen.push(v);
        return s.serialize(v);
      },
      deserialize: s.deserialize,
    };
    storedValueCodec(meta('map'), spy).encode(new Map([[mapKeyOf({ id: 1 }, 'st'), 'v']]));
    assert.deepEqual(seen, [[{ id: 1 }, 'v']]);
  });

  test('bytes that do not decode are CHECKPOINT_CORRUPT naming state, key and serializer', () => {
    for (const m of [meta('value'), meta('list'), meta('map', true)]) {
      assert.throws(
        () => storedValueCodec(m, s).decode(Uint8Array.of(0x92, 0x01), 'user-7'),
        (e: unknown) =>
          isStreamError(e, 'CHECKPOINT_CORRUPT') && /'st' key "user-7".*msgpack/.test(e.message),
      );
    }
    assert.throws(
      () => storedValueCodec(meta('list'), s).decode(s.serialize('not an array'), 'k'),
      (e: unknown) => isStreamError(e, 'CHECKPOINT_CORRUPT') && /expected an array/.test(e.message),
    );
  });
});

describe('map keys', () => {
  test('primitives are kept, objects compare by value, and the user key comes back', () => {
    assert.equal(mapKeyOf('a', 's'), 'a');
    assert.equal(mapKeyOf(1, 's'), 1);
    assert.equal(mapKeyOf({ b: 1, a: 2 }, 's'), mapKeyOf({ a: 2, b: 1 }, 's'));
    assert.notEqual(mapKeyOf('1', 's'), mapKeyOf(1, 's'));
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string())),
        (k) => {
          assert.deepEqual(userKeyOf(mapKeyOf(k, 's')), k);
        },
      ),
    );
  });

  test('keys that are neither primitives nor JSON-shaped are refused naming the state', () => {
    assert.throws(
      () => mapKeyOf(new Date(0), 'sessions'),
      (e: unknown) =>
        isStreamError(e, 'USER_FUNCTION_FAILED') &&
        /map state 'sessions': a map key is an instance of Date/.test(e.message),
    );
  });
});
