import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { KeyedStateSnapshot, StateMeta } from '../../../state/backend.ts';
import { jsonSerializer, msgpackSerializer, userSerializer } from '../../../state/serializers.ts';
import { decodeKeyedSnapshot, encodeKeyedSnapshot } from '../../../state/snapshot-codec.ts';
import {
  type Descriptors,
  descriptors,
  dump,
  dumpOfSnapshot,
  type Fixture,
  handles,
  type KeyedStateBackendCapabilities,
  type MakeKeyedStateBackend,
  throwsWith,
  withFixture,
} from './fixture.ts';

/** Writes a few keys into every kind of `d`. */
function fill(
  f: Fixture,
  d: Descriptors,
  keys: readonly (string | number | object)[] = ['a', 'b', 7, { id: 1 }],
): void {
  const h = handles(f, d);
  keys.forEach((key, i) => {
    f.at(key as string);
    h.value.update({ i, key });
    h.list.addAll([i, i + 1]);
    h.map.put(`k${i}`, { i });
    h.map.put(i, [i]);
    h.reducing.add(i);
    h.aggregating.add(i);
  });
}

async function snapshotOf(f: Fixture, checkpointId = 1): Promise<KeyedStateSnapshot> {
  const capture = f.backend.capture(checkpointId);
  try {
    return await capture.materialize();
  } finally {
    capture.release();
  }
}

/** Copy-on-write: captures keep the state as of `capture()`. */
export function copyOnWriteCases(make: MakeKeyedStateBackend, caps: KeyedStateBackendCapabilities): void {
  const d = descriptors();

  test('a capture keeps the state as of capture() while every handle kind changes it', () =>
    withFixture(make, async (f) => {
      fill(f, d);
      const before = dump(f, d);
      const capture = f.backend.capture(1);
      const h = handles(f, d);
      f.at('a');
      h.value.update('changed');
      h.list.add(100);
      h.map.put('k0', 'changed');
      h.map.put('new', 1);
      h.map.remove(0);
      h.reducing.add(100);
      h.aggregating.add(100); // changes the accumulator in place
      f.at('b');
      h.value.clear();
      h.list.update([42]);
      h.map.clear();
      h.reducing.clear();
      h.aggregating.clear();
      f.at(7);
      h.list.clear();
      f.at('fresh');
      h.value.update('fresh');
      h.list.add('fresh');
      const after = dump(f, d);
      assert.notDeepEqual(after, before);
      const snapshot = await capture.materialize();
      capture.release();
      assert.deepEqual(await dumpOfSnapshot(make, snapshot, d), before);
      assert.deepEqual(dump(f, d), after, 'the live state is the changed one');
      assert.deepEqual(await dumpOfSnapshot(make, await snapshotOf(f, 2), d), after);
    }));

  test('changes made while materialize() is in flight do not leak into the snapshot', () =>
    withFixture(make, async (f) => {
      const h = handles(f, d);
      for (let i = 0; i < 20_000; i++) {
        f.at(`key-${i}`);
        h.value.update(i);
        if (i % 10 === 0) h.list.add(i);
      }
      const before = dump(f, d);
      const capture = f.backend.capture(1);
      const pending = capture.materialize();
      for (let round = 0; round < 5; round++) {
        for (let i = round; i < 20_000; i += 7) {
          f.at(`key-${i}`);
          h.value.update(-i);
          h.list.add(-i);
          if (i % 3 === 0) h.value.clear();
        }
        await yieldToEventLoop();
      }
      const snapshot = await pending;
      capture.release();
      assert.deepEqual(await dumpOfSnapshot(make, snapshot, d), before);
    }));

  test('release() is idempotent and materialize() after release() is refused', () =>
    withFixture(make, async (f) => {
      fill(f, d);
      const capture = f.backend.capture(1);
      capture.release();
      capture.release();
      await assert.rejects(capture.materialize());
      const state = dump(f, d);
      assert.deepEqual(await dumpOfSnapshot(make, await snapshotOf(f, 2), d), state);
    }));

  if (caps.concurrentCaptures !== false) {
    test('several captures alive at once each see their own state, whatever the release order', () =>
      withFixture(make, async (f) => {
        const h = handles(f, d);
        const states: ReturnType<typeof dump>[] = [];
        const captures = [];
        fill(f, d);
        for (let c = 0; c < 4; c++) {
          states.push(dump(f, d));
          captures.push(f.backend.capture(c + 1));
          f.at('a');
          h.value.update(`after capture ${c}`);
          h.list.add(c);
          h.map.put(`c${c}`, c);
          h.map.remove(`k${c}`);
          h.aggregating.add(c);
          f.at(`new-${c}`);
          h.list.add(c);
          f.at(7);
          if (c === 1) h.list.clear();
        }
        const live = dump(f, d);
        // Release capture 1 unread, read 3 while 0 is being read, then 2.
        captures[1]!.release();
        const p0 = captures[0]!.materialize();
        const s3 = await captures[3]!.materialize();
        captures[3]!.release();
        const s0 = await p0;
        captures[0]!.release();
        f.at('a');
        h.value.update('after releases');
        const s2 = await captures[2]!.materialize();
        captures[2]!.release();
        assert.deepEqual(await dumpOfSnapshot(make, s0, d), states[0]);
        assert.deepEqual(await dumpOfSnapshot(make, s2, d), states[2]);
        assert.deepEqual(await dumpOfSnapshot(make, s3, d), states[3]);
        const end = dump(f, d);
        assert.deepEqual({ ...end, value: {} }, { ...live, value: {} });
        assert.deepEqual(await dumpOfSnapshot(make, await snapshotOf(f, 9), d), end);
      }));
  }
}

/** Snapshot, new backend, restore; and what restore must refuse. */
export function restoreCases(make: MakeKeyedStateBackend): void {
  const d = descriptors();
  const ttl = descriptors({ ttlMs: 1_000_000, time: 'processing' }, '-ttl');

  test('snapshot -> new backend -> restore gives the same state, also through the snapshot file codec', () =>
    withFixture(make, async (f) => {
      fill(f, d);
      fill(f, ttl, ['a', 'z']);
      const expected = { ...dump(f, d), ...dump(f, ttl) };
      const snapshot = await snapshotOf(f);
      const file = decodeKeyedSnapshot(encodeKeyedSnapshot(snapshot), 'chk-1/keyed.bin');
      for (const s of [snapshot, file]) {
        await withFixture(make, async (g) => {
          await g.backend.restore(s);
          assert.deepEqual({ ...dump(g, d), ...dump(g, ttl) }, expected);
        });
      }
    }));

  test('states registered after restore() are decoded then; unregistered ones carry on into later snapshots', () =>
    withFixture(make, async (f) => {
      fill(f, d);
      const expected = dump(f, d);
      const snapshot = await snapshotOf(f);
      await withFixture(make, async (g) => {
        await g.backend.restore(snapshot);
        handles(g, d); // registers all five
        handles(g, descriptors(undefined, '-unused'));
        const next = await snapshotOf(g, 2);
        assert.deepEqual(await dumpOfSnapshot(make, next, d), expected);
      });
      await withFixture(make, async (g) => {
        await g.backend.restore(snapshot);
        g.store.getState(d.value); // only one registered before the next checkpoint
        const next = await snapshotOf(g, 2);
        assert.deepEqual(await dumpOfSnapshot(make, next, d), expected);
      });
    }));

  test('restore() replaces the whole state, also of states registered before it', () =>
    withFixture(make, async (f) => {
      fill(f, d, ['a']);
      const snapshot = await snapshotOf(f);
      const expected = dump(f, d);
      await withFixture(make, async (g) => {
        fill(g, d, ['b', 'c']);
        g.at('a');
        handles(g, d).list.add('extra');
        await g.backend.restore(snapshot);
        assert.deepEqual(dump(g, d), expected);
      });
    }));

  test('a state with a user serializer and one with the json serializer round-trip', () =>
    withFixture(make, async (f) => {
      const upper = userSerializer<string>(
        'user:upper',
        2,
        (s) => new TextEncoder().encode(s.toUpperCase()),
        (b) => new TextDecoder().decode(b).toLowerCase(),
      );
      const user = { kind: 'value', name: 'user', serializer: upper } as const;
      const json = { kind: 'list', name: 'json', serializer: jsonSerializer<{ n: number }>() } as const;
      f.at('a');
      f.store.getState(user).update('hello');
      f.store.getListState(json).addAll([{ n: 1 }, { n: 2 }]);
      const snapshot = decodeKeyedSnapshot(encodeKeyedSnapshot(await snapshotOf(f)), 'file');
      const metas = snapshot.states.map((s) => s.meta);
      assert.deepEqual(
        metas.find((m) => m.name === 'user'),
        { name: 'user', kind: 'value', serializerId: 'user:upper', serializerVersion: 2 },
      );
      await withFixture(make, async (g) => {
        await g.backend.restore(snapshot);
        g.at('a');
        assert.equal(g.store.getState(user).value(), 'hello');
        assert.deepEqual(g.store.getListState(json).get(), [{ n: 1 }, { n: 2 }]);
      });
    }));

  test('restore refuses another serializer or a newer version, naming the state, and changes nothing', () =>
    withFixture(make, async (f) => {
      f.at('a');
      f.store.getState({ kind: 'value', name: 'orders', serializer: jsonSerializer() }).update(1);
      const snapshot = await snapshotOf(f);
      const newer: KeyedStateSnapshot = {
        ...snapshot,
        states: snapshot.states.map((s) => ({ ...s, meta: { ...s.meta, serializerVersion: 99 } })),
      };
      // Registered before restore: restore() refuses, and the state stays as it was.
      await withFixture(make, async (g) => {
        g.at('a');
        const state = g.store.getState({ kind: 'value', name: 'orders', serializer: msgpackSerializer() });
        state.update('mine');
        await throwsWith(
          () => g.backend.restore(snapshot),
          'SERIALIZER_MISMATCH',
          /'orders'/,
          /json/,
          /msgpack/,
        );
        assert.equal(state.value(), 'mine');
      });
      // Registered after restore: registering refuses.
      await withFixture(make, async (g) => {
        await g.backend.restore(snapshot);
        await throwsWith(
          () => g.store.getState({ kind: 'value', name: 'orders', serializer: msgpackSerializer() }),
          'SERIALIZER_MISMATCH',
          /'orders'/,
        );
      });
      for (const registerFirst of [true, false]) {
        await withFixture(make, async (g) => {
          const open = () =>
            g.store.getState({ kind: 'value', name: 'orders', serializer: jsonSerializer() });
          if (registerFirst) open();
          await throwsWith(
            async () => {
              await g.backend.restore(newer);
              open();
            },
            'SERIALIZER_MISMATCH',
            /'orders'/,
            /version 99/,
          );
        });
      }
    }));

  test('restore refuses a change of state kind or of TTL on/off with STATE_DESCRIPTOR_CONFLICT', () =>
    withFixture(make, async (f) => {
      f.at('a');
      f.store.getState({ kind: 'value', name: 'seen' }).update(true);
      const snapshot = await snapshotOf(f);
      await withFixture(make, async (g) => {
        await g.backend.restore(snapshot);
        await throwsWith(
          () => g.store.getListState({ kind: 'list', name: 'seen' }),
          'STATE_DESCRIPTOR_CONFLICT',
          /'seen'/,
        );
        await throwsWith(
          () => g.store.getState({ kind: 'value', name: 'seen', ttl: { ttlMs: 10, time: 'processing' } }),
          'STATE_DESCRIPTOR_CONFLICT',
          /'seen'/,
          /TTL/,
        );
      });
    }));

  test('restore refuses an unknown format version; the file codec refuses truncated or garbage files', () =>
    withFixture(make, async (f) => {
      f.at('a');
      f.store.getState({ kind: 'value', name: 'v' }).update(1);
      const snapshot = await snapshotOf(f);
      const future = { ...snapshot, formatVersion: 2 } as unknown as KeyedStateSnapshot;
      await throwsWith(() => f.backend.restore(future), 'SNAPSHOT_FORMAT_UNSUPPORTED', /version 2/);
      await throwsWith(
        () => decodeKeyedSnapshot(encodeKeyedSnapshot(future), 'chk-7/keyed-3.bin'),
        'SNAPSHOT_FORMAT_UNSUPPORTED',
        /chk-7\/keyed-3\.bin/,
      );
      const bytes = encodeKeyedSnapshot(snapshot);
      await throwsWith(
        () => decodeKeyedSnapshot(bytes.subarray(0, bytes.length - 1), 'k.bin'),
        'CHECKPOINT_CORRUPT',
        /k\.bin/,
        /truncated/,
      );
      await throwsWith(
        () => decodeKeyedSnapshot(bytes.subarray(0, 5), 'k.bin'),
        'CHECKPOINT_CORRUPT',
        /k\.bin/,
      );
      await throwsWith(
        () => decodeKeyedSnapshot(new TextEncoder().encode('{"json": true}'), 'k.bin'),
        'CHECKPOINT_CORRUPT',
        /k\.bin/,
      );
      const flipped = Uint8Array.from(bytes);
      flipped[flipped.length - 2]! ^= 0xff;
      await throwsWith(
        () => decodeKeyedSnapshot(flipped, 'k.bin'),
        'CHECKPOINT_CORRUPT',
        /k\.bin/,
        /checksum/,
      );
      assert.equal(
        f.store.getState({ kind: 'value', name: 'v' }).value(),
        1,
        'refused restores change nothing',
      );
    }));

  test('entry bytes that do not decode are refused with CHECKPOINT_CORRUPT naming the state and key', () =>
    withFixture(make, async () => {
      const meta: StateMeta = { name: 'broken', kind: 'list', serializerId: 'msgpack', serializerVersion: 1 };
      const snapshot: KeyedStateSnapshot = {
        formatVersion: 1,
        states: [{ meta, entries: [['user-9', Uint8Array.of(0x92, 0x01)]] }],
      };
      await withFixture(make, async (g) => {
        await throwsWith(
          async () => {
            await g.backend.restore(snapshot);
            g.at('user-9');
            g.store.getListState({ kind: 'list', name: 'broken' }).get();
          },
          'CHECKPOINT_CORRUPT',
          /'broken'/,
          /user-9/,
        );
      });
    }));
}
