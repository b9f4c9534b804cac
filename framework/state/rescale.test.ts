import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import type { KeyedStateSnapshot, StateMeta } from './backend.ts';
import { HeapKeyedStateBackend } from './backends/heap/heap.ts';
import { createKeyedStateStore } from './handles.ts';
import { keyGroupOf, keyId } from './keys.ts';
import { rehashKeyedSnapshots } from './rescale.ts';

const META: StateMeta = { name: 'count', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };

/** Snapshots of `oldGroups` key groups holding `count = n` for each key, as a keyed job would. */
async function snapshotsOf(keys: readonly string[], oldGroups: number): Promise<KeyedStateSnapshot[]> {
  const out: KeyedStateSnapshot[] = [];
  for (let g = 0; g < oldGroups; g++) {
    const backend = new HeapKeyedStateBackend();
    let current = '';
    const store = createKeyedStateStore(backend, {
      currentKey: () => current,
      processingTime: () => 0,
      watermark: () => 0,
    });
    const count = store.getState<number>({ kind: 'value', name: 'count' });
    keys.forEach((k, n) => {
      current = keyId(k);
      if (keyGroupOf(current, oldGroups) === g) count.update(n);
    });
    const capture = backend.capture(1);
    out.push(await capture.materialize());
    capture.release();
  }
  return out;
}

describe('rehashKeyedSnapshots', () => {
  test('every entry moves to the key group of its key among the new number, none lost', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 9 }),
        async (keys, oldGroups, newGroups) => {
          const out = rehashKeyedSnapshots(await snapshotsOf(keys, oldGroups), newGroups);
          assert.equal(out.length, newGroups);
          const seen = new Map<string, number>();
          out.forEach((snapshot, g) => {
            assert.deepEqual(
              snapshot.states.map((s) => s.meta),
              [META],
            );
            for (const [k] of snapshot.states[0]!.entries) {
              assert.equal(keyGroupOf(k, newGroups), g);
              seen.set(k, g);
            }
          });
          assert.deepEqual([...seen.keys()].sort(), keys.map((k) => keyId(k)).sort());
        },
      ),
      { numRuns: 50 },
    );
  });

  test('a rehashed snapshot restores into a backend', async () => {
    const [only] = rehashKeyedSnapshots(await snapshotsOf(['a', 'b', 'c'], 3), 1);
    const backend = new HeapKeyedStateBackend();
    await backend.restore(only!);
    backend.register(META);
    assert.deepEqual(
      new Map(backend.entries('count')),
      new Map([
        ['a', 0],
        ['b', 1],
        ['c', 2],
      ]),
    );
  });

  test('refuses duplicate keys, disagreeing metas and a bad key group count', async () => {
    const [a] = await snapshotsOf(['a'], 1);
    assert.throws(
      () => rehashKeyedSnapshots([a!, a!], 2),
      (e: unknown) => isStreamError(e, 'KEY_GROUP_MISMATCH') && /"a".*'count'/.test(e.message),
    );
    const json: KeyedStateSnapshot = {
      formatVersion: 1,
      states: [{ meta: { ...META, serializerId: 'json' }, entries: [] }],
    };
    assert.throws(
      () => rehashKeyedSnapshots([a!, json], 2),
      (e: unknown) => isStreamError(e, 'SERIALIZER_MISMATCH'),
    );
    const list: KeyedStateSnapshot = {
      formatVersion: 1,
      states: [{ meta: { ...META, kind: 'list' }, entries: [] }],
    };
    assert.throws(
      () => rehashKeyedSnapshots([a!, list], 2),
      (e: unknown) => isStreamError(e, 'STATE_DESCRIPTOR_CONFLICT'),
    );
    assert.throws(
      () => rehashKeyedSnapshots([a!], 0),
      (e: unknown) => isStreamError(e, 'CONFIG_INVALID'),
    );
    assert.throws(
      () => rehashKeyedSnapshots([{ formatVersion: 9 } as unknown as KeyedStateSnapshot], 2),
      (e: unknown) => isStreamError(e, 'SNAPSHOT_FORMAT_UNSUPPORTED'),
    );
  });
});
