import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { TimeIndexedStateDescriptor } from '../../../api/state.ts';
import { MemoryCheckpointStorage } from '../../../checkpoint/storage/memory.ts';
import type { FileRef, Scope } from '../../../checkpoint/storage/storage.ts';
import type { CheckpointFiles, KeyedStateBackend, KeyedStateHandle } from '../../../state/backend.ts';
import { msgpackSerializer } from '../../../state/serializers.ts';
import { decodeKeyedSnapshot, encodeKeyedSnapshot } from '../../../state/snapshot-codec.ts';
import { unpackVersionBytes } from '../../../state/value-codec.ts';
import { Fixture, type MakeKeyedStateBackend, throwsWith, withFixture } from './fixture.ts';

/**
 * Time-indexed state (`getTimeIndexedState`) against a brute-force model: every key's versions as a
 * plain map time -> value; `asOf(t)` is the value at the greatest time <= t, `range` a filter, and
 * retention drops all but the newest version at or before the cutoff. Reads are compared after
 * every operation batch, after snapshot -> restore into a fresh backend (also through the file
 * codec), and after full and incremental checkpoints in the backend's own format.
 */
export function timeIndexedCases(make: MakeKeyedStateBackend, runs = 60): void {
  const plain: TimeIndexedStateDescriptor<number> = { kind: 'timeIndexed', name: 'prices' };
  const kept: TimeIndexedStateDescriptor<number> = { kind: 'timeIndexed', name: 'kept', retentionMs: 10 };
  const objects: TimeIndexedStateDescriptor<{ p: number }> = { kind: 'timeIndexed', name: 'prices' };

  test('put, asOf, range and latest per key; a put at an existing time replaces it', () =>
    withFixture(make, (f) => {
      const h = f.store.getTimeIndexedState<string>({ kind: 'timeIndexed', name: 'p' });
      f.at('a');
      h.put(10, 'a10');
      h.put(30, 'a30');
      h.put(20, 'a20');
      h.put(20, 'a20b');
      f.at('b');
      h.put(-5.5, 'b-5.5');
      assert.equal(h.asOf(-6), undefined);
      assert.deepEqual(h.asOf(-5.5), { time: -5.5, value: 'b-5.5' });
      assert.deepEqual(h.asOf(1e15), { time: -5.5, value: 'b-5.5' });
      f.at('a');
      assert.equal(h.asOf(9.999), undefined);
      assert.deepEqual(h.asOf(10), { time: 10, value: 'a10' });
      assert.deepEqual(h.asOf(29), { time: 20, value: 'a20b' });
      assert.deepEqual(
        h.range(10, 30).map((v) => v.value),
        ['a10', 'a20b'],
      );
      assert.deepEqual(h.range(30, 30), []);
      assert.deepEqual(h.latest(), { time: 30, value: 'a30' });
      assert.equal(h.size(), 3);
      h.clear();
      assert.equal(h.latest(), undefined);
      assert.equal(h.size(), 0);
      f.at('b');
      assert.equal(h.size(), 1);
    }));

  test('bad times and a ttl are refused with clear errors', () =>
    withFixture(make, async (f) => {
      const h = f.store.getTimeIndexedState<number>({ kind: 'timeIndexed', name: 'p' });
      await throwsWith(() => h.put(Number.NaN, 1), 'USER_FUNCTION_FAILED', /put's time/, /NaN/);
      await throwsWith(() => h.asOf(Number.POSITIVE_INFINITY), 'USER_FUNCTION_FAILED', /asOf's time/);
      await throwsWith(
        () => h.put(1, undefined as unknown as number),
        'USER_FUNCTION_FAILED',
        /needs a value/,
      );
      await throwsWith(
        () => f.store.getTimeIndexedState({ kind: 'timeIndexed', name: 'q', retentionMs: -1 }),
        'CONFIG_INVALID',
        /retentionMs/,
      );
      await throwsWith(
        () =>
          f.store.getTimeIndexedState({
            kind: 'timeIndexed',
            name: 'r',
            ttl: { ttlMs: 5, time: 'event' },
          } as unknown as TimeIndexedStateDescriptor<number>),
        'CONFIG_INVALID',
        /retentionMs, not a ttl/,
      );
    }));

  test('retention keeps the newest version at or before the cutoff, on put and at cleanup', () =>
    withFixture(make, (f) => {
      const h = f.store.getTimeIndexedState<number>(kept);
      f.at('a');
      for (const t of [0, 4, 8, 12]) h.put(t, t);
      // cutoff 12 - 10 = 2: 0 is still in effect at 2, so nothing goes yet.
      assert.deepEqual(
        h.range(-100, 100).map((v) => v.time),
        [0, 4, 8, 12],
      );
      h.put(15, 15); // cutoff 5: 4 is in effect there; 0 goes
      assert.deepEqual(
        h.range(-100, 100).map((v) => v.time),
        [4, 8, 12, 15],
      );
      assert.deepEqual(h.asOf(5), { time: 4, value: 4 });
      f.at('b');
      h.put(1, 1);
      h.put(2, 2);
      f.watermark = 100; // cleanup cutoff 90: only each key's newest version stays
      f.store.cleanupExpired();
      assert.deepEqual(h.range(-100, 1000), [{ time: 2, value: 2 }]);
      f.at('a');
      assert.deepEqual(h.range(-100, 1000), [{ time: 15, value: 15 }]);
    }));

  test('a capture keeps its versions while processing goes on; the snapshot is one entry per key', () =>
    withFixture(make, async (f) => {
      const h = f.store.getTimeIndexedState(objects);
      for (const k of ['a', 'b']) {
        f.at(k);
        h.put(1, { p: 1 });
        h.put(2, { p: 2 });
      }
      const capture = f.backend.capture(1);
      f.at('a');
      h.put(3, { p: 3 });
      h.clear();
      f.at('c');
      h.put(1, { p: 9 });
      const snap = await capture.materialize();
      capture.release();
      const state = snap.states.find((s) => s.meta.name === 'prices')!;
      assert.equal(state.meta.kind, 'timeIndexed');
      assert.deepEqual(state.entries.map(([k]) => k).sort(), ['a', 'b']);
      for (const [k, bytes] of state.entries) {
        assert.deepEqual(
          unpackVersionBytes(bytes, 'prices', k).map(([t]) => t),
          [1, 2],
        );
      }
      await withFixture(make, async (g) => {
        await g.backend.restore(decodeKeyedSnapshot(encodeKeyedSnapshot(snap), 'snap'));
        const r = g.store.getTimeIndexedState(objects);
        g.at('a');
        assert.deepEqual(r.asOf(5), { time: 2, value: { p: 2 } });
        g.at('c');
        assert.equal(r.latest(), undefined);
      });
    }));

  test('random operations match a brute-force model across snapshots and own-format checkpoints', async () => {
    type Op =
      | {
          readonly t: 'put';
          readonly key: string;
          readonly time: number;
          readonly v: number;
          readonly kept: boolean;
        }
      | { readonly t: 'clear'; readonly key: string }
      | { readonly t: 'watermark'; readonly by: number }
      | { readonly t: 'checkpoint' }
      | { readonly t: 'restore' };
    const time = fc.oneof(
      fc.integer({ min: -40, max: 40 }),
      fc.constantFrom(-1e12, 1e15, 0.5, -0.5, 2 ** 53, -(2 ** 40) + 0.25),
    );
    const key = fc.constantFrom('a', 'b', 'c', '\u0000{"id":1}', 'a\u0000b');
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 8,
        arbitrary: fc.record({
          t: fc.constant('put' as const),
          key,
          time,
          v: fc.integer(),
          kept: fc.boolean(),
        }),
      },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('clear' as const), key }) },
      {
        weight: 1,
        arbitrary: fc.record({ t: fc.constant('watermark' as const), by: fc.integer({ min: 0, max: 20 }) }),
      },
      { weight: 1, arbitrary: fc.constant({ t: 'checkpoint' as const }) },
      { weight: 1, arbitrary: fc.constant({ t: 'restore' as const }) },
    );
    const probes = [-1e13, -41, -40, -3, -0.5, 0, 0.5, 7, 40, 41, 1e15, 2 ** 53 + 4096];

    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 80 }), async (ops) => {
        const model = {
          plain: new Map<string, Map<number, number>>(),
          kept: new Map<string, Map<number, number>>(),
        };
        let f = new Fixture(await make());
        const io = new Files();
        let previous: KeyedStateHandle | undefined;
        let lastHandle: KeyedStateHandle | undefined;
        let watermark = Number.NEGATIVE_INFINITY;
        const retain = (m: Map<number, number>, cutoff: number) => {
          const times = [...m.keys()].sort((x, y) => x - y);
          const floor = times.filter((t) => t <= cutoff).pop();
          if (floor === undefined) return;
          for (const t of times) if (t < floor) m.delete(t);
        };
        const check = (g: Fixture, where: string) => {
          for (const [which, d] of [
            ['plain', plain],
            ['kept', kept],
          ] as const) {
            const h = g.store.getTimeIndexedState<number>(d);
            for (const k of ['a', 'b', 'c', '\u0000{"id":1}', 'a\u0000b']) {
              g.key = k;
              const m = model[which].get(k) ?? new Map<number, number>();
              const times = [...m.keys()].sort((x, y) => x - y);
              assert.deepEqual(
                h.range(Number.MIN_SAFE_INTEGER * 1e6, Number.MAX_SAFE_INTEGER * 1e6),
                times.map((t) => ({ time: t, value: m.get(t) })),
                `${where}: ${which} history of ${JSON.stringify(k)}`,
              );
              for (const p of probes) {
                const at = times.filter((t) => t <= p).pop();
                assert.deepEqual(
                  h.asOf(p),
                  at === undefined ? undefined : { time: at, value: m.get(at) },
                  `${where}: ${which} ${JSON.stringify(k)} asOf(${p})`,
                );
              }
              assert.deepEqual(
                h.range(-3, 7).map((v) => v.time),
                times.filter((t) => t >= -3 && t < 7),
              );
            }
          }
        };
        try {
          for (const o of ops) {
            if (o.t === 'put') {
              const which = o.kept ? 'kept' : 'plain';
              f.key = o.key;
              f.store.getTimeIndexedState<number>(o.kept ? kept : plain).put(o.time, o.v);
              const m = model[which].get(o.key) ?? new Map<number, number>();
              model[which].set(o.key, m);
              m.set(o.time, o.v);
              if (o.kept) retain(m, Math.max(Math.max(...m.keys()), watermark) - 10);
            } else if (o.t === 'clear') {
              f.key = o.key;
              f.store.getTimeIndexedState(plain).clear();
              model.plain.delete(o.key);
            } else if (o.t === 'watermark') {
              watermark = (Number.isFinite(watermark) ? watermark : -50) + o.by;
              f.watermark = watermark;
            } else if (o.t === 'checkpoint') {
              // As the runtime does: retention against the watermark, then capture.
              f.store.getTimeIndexedState(plain);
              f.store.getTimeIndexedState(kept);
              f.store.cleanupExpired();
              for (const m of model.kept.values()) retain(m, watermark - 10);
              const capture = f.backend.capture(io.nextId());
              try {
                const snap = await capture.materialize();
                if (capture.writeCheckpoint !== undefined && f.backend.restoreHandle !== undefined) {
                  lastHandle = await capture.writeCheckpoint(io.files(), previous);
                  previous = lastHandle;
                }
                const g = new Fixture(await make());
                try {
                  await g.backend.restore(decodeKeyedSnapshot(encodeKeyedSnapshot(snap), 'model'));
                  check(g, 'after snapshot restore');
                } finally {
                  await g.backend.close();
                }
              } finally {
                capture.release();
              }
            } else if (o.t === 'restore' && lastHandle !== undefined) {
              // Replace the backend by the last checkpoint; the model goes back to it too.
              const g = new Fixture(await make());
              await g.backend.restoreHandle!(lastHandle, io.files());
              g.watermark = watermark;
              const snap = await materialize(g.backend);
              await f.backend.close();
              f = g;
              previous = undefined;
              model.plain = versionsOf(snap, 'prices');
              model.kept = versionsOf(snap, 'kept');
            }
          }
          check(f, 'live');
        } finally {
          await f.backend.close();
        }
      }),
      { numRuns: runs },
    );
  });
}

async function materialize(b: KeyedStateBackend) {
  const c = b.capture(0);
  try {
    return await c.materialize();
  } finally {
    c.release();
  }
}

/** The model of a restored checkpoint: decoded straight from its snapshot bytes (msgpack values). */
function versionsOf(
  snap: Awaited<ReturnType<typeof materialize>>,
  name: string,
): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  const s = snap.states.find((x) => x.meta.name === name);
  for (const [k, bytes] of s?.entries ?? []) {
    const m = new Map<number, number>();
    for (const [t, b] of unpackVersionBytes(bytes, name, k)) m.set(t, decodeMsgpack(b));
    out.set(k, m);
  }
  return out;
}

const mp = msgpackSerializer();
const decodeMsgpack = (b: Uint8Array): number => mp.deserialize(b) as number;

/** Checkpoint files in memory storage. */
class Files {
  readonly storage = new MemoryCheckpointStorage();
  readonly scope: Scope = { jobId: 'conformance', taskId: 's0-p0' };
  #id = 0;
  nextId(): number {
    return ++this.#id;
  }
  files(): CheckpointFiles {
    const id = this.#id;
    return {
      write: (name: string, bytes: Uint8Array): Promise<FileRef> =>
        this.storage.writeFile(this.scope, id, `ti-${id}-${name}`, bytes),
      read: (ref: FileRef): Promise<Uint8Array> => this.storage.readFile(ref),
    };
  }
}
