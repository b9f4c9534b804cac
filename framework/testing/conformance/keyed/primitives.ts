import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStreamError } from '../../../api/errors.ts';
import type { StateMeta } from '../../../state/backend.ts';
import { jsonSerializer } from '../../../state/serializers.ts';
import {
  descriptors,
  dump,
  handles,
  type MakeKeyedStateBackend,
  throwsWith,
  withFixture,
} from './fixture.ts';

const META: StateMeta = { name: 'counts', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };

/** The backend primitives, used directly. */
export function primitiveCases(make: MakeKeyedStateBackend): void {
  test('register is idempotent and refuses the same name with another kind, serializer or TTL', () =>
    withFixture(make, async ({ backend }) => {
      backend.register(META);
      backend.register({ ...META });
      await throwsWith(
        () => backend.register({ ...META, kind: 'list' }),
        'STATE_DESCRIPTOR_CONFLICT',
        /'counts'/,
        /value.*list/,
      );
      await throwsWith(
        () => backend.register({ ...META, serializerId: 'json' }, jsonSerializer()),
        'STATE_DESCRIPTOR_CONFLICT',
        /'counts'/,
        /json/,
      );
      await throwsWith(
        () => backend.register({ ...META, ttl: { ttlMs: 5, time: 'processing' } }),
        'STATE_DESCRIPTOR_CONFLICT',
        /'counts'/,
        /TTL/,
      );
    }));

  test('get, put, delete, size and entries', () =>
    withFixture(make, ({ backend }) => {
      backend.register(META);
      backend.register({ ...META, name: 'other' });
      assert.equal(backend.get('counts', 'a'), undefined);
      assert.equal(backend.size('counts'), 0);
      backend.put('counts', 'a', 1);
      backend.put('counts', 'b', { n: 2 });
      backend.put('counts', 'a', 3);
      backend.put('other', 'a', 'x');
      assert.equal(backend.get('counts', 'a'), 3);
      assert.deepEqual(backend.get('counts', 'b'), { n: 2 });
      assert.equal(backend.size('counts'), 2);
      assert.equal(backend.size('other'), 1);
      backend.delete('counts', 'a');
      backend.delete('counts', 'a');
      backend.delete('counts', 'never');
      assert.equal(backend.get('counts', 'a'), undefined);
      assert.equal(backend.size('counts'), 1);
      assert.deepEqual(backend.entries('counts'), [['b', { n: 2 }]]);
      assert.equal(backend.get('other', 'a'), 'x');
    }));

  test('entries() is a copy: the backend may change while it is iterated', () =>
    withFixture(make, ({ backend }) => {
      backend.register(META);
      for (let i = 0; i < 100; i++) backend.put('counts', `k${i}`, i);
      const seen: string[] = [];
      for (const [key, value] of backend.entries('counts')) {
        seen.push(key);
        backend.delete('counts', key);
        backend.put('counts', `${key}-new`, value);
      }
      assert.equal(seen.length, 100);
      assert.equal(backend.size('counts'), 100);
      assert.equal(backend.get('counts', 'k7-new'), 7);
    }));

  test('getForUpdate copies a value shared with a live capture at most once, and only then', () =>
    withFixture(make, async ({ backend }) => {
      backend.register({ ...META, kind: 'list' });
      backend.put('counts', 'a', [1]);
      let copies = 0;
      const copy = (xs: number[]) => {
        copies++;
        return xs.slice();
      };
      assert.equal(backend.getForUpdate<number[]>('counts', 'missing', copy), undefined);
      const capture = backend.capture(1);
      const mine = backend.getForUpdate<number[]>('counts', 'a', copy)!;
      mine.push(2);
      backend.put('counts', 'a', mine);
      const again = backend.getForUpdate<number[]>('counts', 'a', copy)!;
      again.push(3);
      backend.put('counts', 'a', again);
      // A backend whose captures hold bytes (level) shares nothing and copies nothing.
      assert.ok(copies <= 1, `at most one copy per key per capture, got ${copies}`);
      assert.deepEqual(backend.get('counts', 'a'), [1, 2, 3]);
      const snapshot = await capture.materialize();
      capture.release();
      const entry = snapshot.states.find((s) => s.meta.name === 'counts');
      assert.equal(entry?.entries.length, 1);
      let restoredValue: unknown;
      await withFixture(make, async (g) => {
        await g.backend.restore(snapshot);
        g.backend.register({ ...META, kind: 'list' });
        restoredValue = g.backend.get('counts', 'a');
      });
      assert.deepEqual(restoredValue, [1], 'the capture kept the value as of capture()');
    }));

  test('a state used before it is registered is refused', () =>
    withFixture(make, ({ backend }) => {
      assert.throws(
        () => backend.get('nobody', 'a'),
        (e: unknown) => isStreamError(e) && /'nobody'/.test(e.message),
      );
    }));
}

/** The five handle kinds over the backend. */
export function handleCases(make: MakeKeyedStateBackend): void {
  const d = descriptors();

  test('ValueState: update, value, clear, per key', () =>
    withFixture(make, (f) => {
      const { value } = handles(f, d);
      assert.equal(f.at('a') && value.value(), undefined);
      value.update({ total: 1 });
      f.at('b');
      assert.equal(value.value(), undefined);
      value.update('two');
      f.at('a');
      assert.deepEqual(value.value(), { total: 1 });
      value.update({ total: 2 });
      assert.deepEqual(value.value(), { total: 2 });
      value.clear();
      assert.equal(value.value(), undefined);
      assert.equal(f.at('b') && value.value(), 'two');
      assert.equal(f.backend.size(d.value.name), 1);
    }));

  test('ListState: add, addAll, update, get (a copy), clear; an empty list is not stored', () =>
    withFixture(make, (f) => {
      const { list } = handles(f, d);
      f.at('a');
      assert.deepEqual(list.get(), []);
      list.addAll([]);
      assert.equal(f.backend.size(d.list.name), 0, 'addAll([]) stores nothing');
      list.add(1);
      list.add(2);
      list.addAll([3, 4]);
      const got = list.get() as unknown[];
      assert.deepEqual(got, [1, 2, 3, 4]);
      got.push(99);
      assert.deepEqual(list.get(), [1, 2, 3, 4], 'get() returns a copy');
      f.at('b');
      list.add('b1');
      f.at('a');
      list.update([7, 8]);
      assert.deepEqual(list.get(), [7, 8]);
      list.clear();
      assert.deepEqual(list.get(), []);
      assert.equal(f.backend.size(d.list.name), 1);
      f.at('b');
      assert.deepEqual(list.get(), ['b1']);
      list.update([]);
      assert.deepEqual(list.get(), []);
      assert.equal(f.backend.size(d.list.name), 0, 'update([]) deletes the entry');
    }));

  test('MapState: put, get, remove, contains, entries, keys, values, isEmpty, putAll, clear', () =>
    withFixture(make, (f) => {
      const { map } = handles(f, d);
      f.at('a');
      assert.equal(map.isEmpty(), true);
      assert.equal(map.get('x'), undefined);
      map.put('x', 1);
      map.put(1, 'number one');
      map.put('1', 'string one');
      map.put({ id: 7, region: 'eu' }, 'object');
      map.putAll([
        ['y', 2],
        ['z', 3],
      ]);
      assert.equal(map.get('x'), 1);
      assert.equal(map.get(1), 'number one');
      assert.equal(map.get('1'), 'string one');
      assert.equal(map.get({ region: 'eu', id: 7 }), 'object', 'object keys compare by value');
      assert.equal(map.contains('y'), true);
      assert.equal(map.contains('nope'), false);
      assert.equal(map.isEmpty(), false);
      assert.equal(map.keys().length, 6);
      assert.deepEqual(map.values().slice().sort(), [1, 2, 3, 'number one', 'object', 'string one'].sort());
      for (const [k] of map.entries()) {
        map.remove(k); // entries() is a copy: safe to change the map while iterating it
        map.put(['moved', k as string], true);
      }
      assert.equal(map.keys().length, 6);
      assert.equal(map.get(['moved', 'x']), true);
      f.at('b');
      map.put('only', 1);
      map.remove('only');
      assert.equal(map.isEmpty(), true);
      f.at('a');
      map.clear();
      assert.equal(map.isEmpty(), true);
      assert.equal(f.backend.size(d.map.name), 0, 'removing the last entry or clear() deletes the map');
    }));

  test('ReducingState: add, get, clear, per key', () =>
    withFixture(make, (f) => {
      const { reducing } = handles(f, d);
      f.at('a');
      assert.equal(reducing.get(), undefined);
      reducing.add(1);
      reducing.add(2);
      f.at('b');
      reducing.add(10);
      f.at('a');
      reducing.add(3);
      assert.equal(reducing.get(), 6);
      reducing.clear();
      assert.equal(reducing.get(), undefined);
      assert.equal(f.at('b') && reducing.get(), 10);
    }));

  test('AggregatingState: add, get, clear, per key', () =>
    withFixture(make, (f) => {
      const { aggregating } = handles(f, d);
      f.at('a');
      assert.equal(aggregating.get(), undefined);
      aggregating.add(1);
      aggregating.add(3);
      f.at('b');
      aggregating.add(10);
      f.at('a');
      assert.equal(aggregating.get(), 2);
      aggregating.clear();
      assert.equal(aggregating.get(), undefined);
      aggregating.add(5);
      assert.equal(aggregating.get(), 5);
      assert.equal(f.at('b') && aggregating.get(), 10);
    }));

  test('keys are isolated across every kind, for string and structured keys', () =>
    withFixture(make, (f) => {
      const h = handles(f, d);
      const keys = ['a', 'b', 42, '42', { user: 1, region: 'eu' }, ['x', 1], null, true];
      keys.forEach((key, i) => {
        f.at(key);
        h.value.update(i);
        h.list.add(i);
        h.map.put('i', i);
        h.reducing.add(i);
        h.aggregating.add(i);
      });
      keys.forEach((key, i) => {
        f.at(key);
        assert.equal(h.value.value(), i);
        assert.deepEqual(h.list.get(), [i]);
        assert.equal(h.map.get('i'), i);
        assert.equal(h.reducing.get(), i);
        assert.equal(h.aggregating.get(), i);
      });
      assert.equal(Object.keys(dump(f, d)[d.value.name]!).length, keys.length);
    }));

  test('the same state name with another kind is refused with STATE_DESCRIPTOR_CONFLICT', () =>
    withFixture(make, async (f) => {
      f.store.getState({ kind: 'value', name: 'shared' });
      f.store.getState({ kind: 'value', name: 'shared' });
      await throwsWith(
        () => f.store.getListState({ kind: 'list', name: 'shared' }),
        'STATE_DESCRIPTOR_CONFLICT',
        /'shared'/,
      );
      await throwsWith(
        () => f.store.getState({ kind: 'value', name: 'shared', serializer: jsonSerializer() }),
        'STATE_DESCRIPTOR_CONFLICT',
        /'shared'/,
      );
    }));
}
