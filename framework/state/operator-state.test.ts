import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type ErrorCode, isStreamError } from '../api/errors.ts';
import {
  type OperatorStateSnapshot,
  type OperatorStateSnapshotEntry,
  OperatorStateStoreImpl,
  redistributeOperatorState,
} from './operator-state.ts';
import { jsonSerializer, msgpackSerializer } from './serializers.ts';
import { decodeOperatorSnapshot, encodeOperatorSnapshot } from './snapshot-codec.ts';

const s = msgpackSerializer<unknown>();
const enc = (v: unknown) => s.serialize(v);
const dec = (b: Uint8Array) => s.deserialize(b);

function isCode(code: ErrorCode, pattern: RegExp) {
  return (e: unknown) => isStreamError(e, code) && pattern.test(e.message);
}

describe('OperatorStateStoreImpl', () => {
  test('split list, union list and broadcast state snapshot and restore', () => {
    const store = new OperatorStateStoreImpl();
    const offsets = store.getListState<number>('offsets');
    offsets.add(1);
    offsets.addAll([2, 3]);
    const seen = store.getUnionListState<string>('seen');
    seen.update(['a', 'b']);
    const rules = store.getBroadcastState<string | { id: number }, string>('rules');
    rules.put('r1', 'x > 1');
    rules.put({ id: 2 }, 'y < 2');
    const snapshot = decodeOperatorSnapshot(encodeOperatorSnapshot(store.snapshot()), 'op.bin');

    const restored = new OperatorStateStoreImpl();
    restored.restore(snapshot);
    assert.deepEqual(restored.getListState('offsets').get(), [1, 2, 3]);
    assert.deepEqual(restored.getUnionListState('seen').get(), ['a', 'b']);
    const r = restored.getBroadcastState<string | { id: number }, string>('rules');
    assert.equal(r.get({ id: 2 }), 'y < 2', 'object keys compare by value after restore');
    assert.deepEqual(r.keys(), ['r1', { id: 2 }]);
  });

  test('handles are stable, get() is a copy, states asked for after restore are decoded then', () => {
    const store = new OperatorStateStoreImpl();
    const a = store.getListState<number>('a');
    assert.equal(store.getListState<number>('a'), a);
    a.add(1);
    (a.get() as number[]).push(2);
    assert.deepEqual(a.get(), [1]);
    store.getListState<number>('unused-after-restore').add(9);
    const snapshot = store.snapshot();
    const next = new OperatorStateStoreImpl();
    next.restore(snapshot);
    // Never asked for: still carried on into the next snapshot.
    const again = new OperatorStateStoreImpl();
    again.restore(next.snapshot());
    assert.deepEqual(again.getListState('unused-after-restore').get(), [9]);
  });

  test('restore replaces state registered before it, and a refused restore changes nothing', () => {
    const store = new OperatorStateStoreImpl();
    const list = store.getListState<number>('l');
    list.add(1);
    const snapshot = store.snapshot();
    const other = new OperatorStateStoreImpl();
    const mine = other.getListState<number>('l');
    mine.update([7, 8]);
    const b = other.getBroadcastState<string, number>('b');
    b.put('k', 1);
    other.restore(snapshot);
    assert.deepEqual(mine.get(), [1]);
    assert.equal(b.isEmpty(), true);
    mine.add(2);
    const json = new OperatorStateStoreImpl();
    const jl = json.getListState<number>('l', jsonSerializer());
    jl.add(5);
    assert.throws(() => json.restore(snapshot), isCode('SERIALIZER_MISMATCH', /'l'.*msgpack.*json/));
    assert.deepEqual(jl.get(), [5]);
  });

  test('modes and serializers are checked on registration and restore', () => {
    const store = new OperatorStateStoreImpl();
    store.getListState('x');
    assert.throws(
      () => store.getUnionListState('x'),
      isCode('STATE_DESCRIPTOR_CONFLICT', /'x'.*split list.*union list/),
    );
    assert.throws(
      () => store.getListState('x', jsonSerializer()),
      isCode('STATE_DESCRIPTOR_CONFLICT', /'x'.*json/),
    );
    const restored = new OperatorStateStoreImpl();
    restored.restore(store.snapshot());
    assert.throws(
      () => restored.getBroadcastState('x'),
      isCode('STATE_DESCRIPTOR_CONFLICT', /'x'.*split list.*broadcast/),
    );
    assert.throws(() => restored.getListState('x', jsonSerializer()), isCode('SERIALIZER_MISMATCH', /'x'/));
    assert.throws(
      () => restored.restore({ formatVersion: 3 } as unknown as OperatorStateSnapshot),
      isCode('SNAPSHOT_FORMAT_UNSUPPORTED', /version 3/),
    );
  });
});

const entry = (
  name: string,
  mode: OperatorStateSnapshotEntry['mode'],
  elements: unknown[],
): OperatorStateSnapshotEntry => ({
  name,
  mode,
  serializerId: 'msgpack',
  serializerVersion: 1,
  elements: elements.map(enc),
});
const snap = (...states: OperatorStateSnapshotEntry[]): OperatorStateSnapshot => ({
  formatVersion: 1,
  states,
});
const elementsOf = (s: OperatorStateSnapshot, name: string): unknown[] =>
  (s.states.find((e) => e.name === name)?.elements ?? []).map(dec);

describe('redistributeOperatorState', () => {
  test('split: contiguous, near-equal ranges of all old elements in task order', () => {
    const out = redistributeOperatorState(
      [snap(entry('offsets', 'split', [1, 2, 3])), snap(entry('offsets', 'split', [4])), snap()],
      3,
    );
    assert.deepEqual(
      out.map((s) => elementsOf(s, 'offsets')),
      [[1], [2], [3, 4]],
    );
  });

  test('union: every new task gets everything; broadcast: every new task gets old task 0', () => {
    const out = redistributeOperatorState(
      [
        snap(entry('u', 'union', ['a']), entry('b', 'broadcast', [['k', 1]])),
        snap(entry('u', 'union', ['b', 'c']), entry('b', 'broadcast', [['k', 1]])),
      ],
      4,
    );
    assert.equal(out.length, 4);
    for (const s of out) {
      assert.deepEqual(elementsOf(s, 'u'), ['a', 'b', 'c']);
      assert.deepEqual(elementsOf(s, 'b'), [['k', 1]]);
    }
  });

  test('split redistribution keeps every element once, in order, with sizes differing by at most one', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer(), { maxLength: 20 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 12 }),
        (tasks, p) => {
          const out = redistributeOperatorState(
            tasks.map((t) => snap(entry('s', 'split', t), entry('u', 'union', t))),
            p,
          );
          assert.equal(out.length, p);
          const parts = out.map((s) => elementsOf(s, 's'));
          assert.deepEqual(parts.flat(), tasks.flat());
          const sizes = parts.map((x) => x.length);
          assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`);
          for (const s of out) assert.deepEqual(elementsOf(s, 'u'), tasks.flat());
          // A split state restores into a store as a list.
          const store = new OperatorStateStoreImpl();
          store.restore(out[0]!);
          assert.deepEqual(store.getListState('s').get(), parts[0]);
        },
      ),
    );
  });

  test('refuses inconsistent modes or serializers, and a bad parallelism', () => {
    assert.throws(
      () => redistributeOperatorState([snap(entry('x', 'split', [])), snap(entry('x', 'union', []))], 2),
      isCode('STATE_DESCRIPTOR_CONFLICT', /'x'.*task 1/),
    );
    assert.throws(
      () =>
        redistributeOperatorState(
          [snap(entry('x', 'split', [])), snap({ ...entry('x', 'split', []), serializerId: 'json' })],
          2,
        ),
      isCode('SERIALIZER_MISMATCH', /'x'/),
    );
    assert.throws(() => redistributeOperatorState([], 0), isCode('CONFIG_INVALID', /parallelism/));
  });
});
