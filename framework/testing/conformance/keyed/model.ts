import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { KeyedStateCapture } from '../../../state/backend.ts';
import {
  type Avg,
  type Dump,
  descriptors,
  dump,
  dumpOfSnapshot,
  Fixture,
  handles,
  type KeyedStateBackendCapabilities,
  type MakeKeyedStateBackend,
} from './fixture.ts';

type Op =
  | { readonly t: 'key'; readonly key: string }
  | { readonly t: 'value'; readonly v: number }
  | { readonly t: 'valueClear' }
  | { readonly t: 'listAdd'; readonly v: number }
  | { readonly t: 'listUpdate'; readonly vs: number[] }
  | { readonly t: 'listClear' }
  | { readonly t: 'mapPut'; readonly k: string; readonly v: number }
  | { readonly t: 'mapRemove'; readonly k: string }
  | { readonly t: 'mapClear' }
  | { readonly t: 'reduce'; readonly v: number }
  | { readonly t: 'reduceClear' }
  | { readonly t: 'agg'; readonly v: number }
  | { readonly t: 'capture' }
  | { readonly t: 'materialize'; readonly i: number }
  | { readonly t: 'release'; readonly i: number }
  | { readonly t: 'restore'; readonly i: number }
  | { readonly t: 'check' };

const KEYS = ['a', 'b', 'c'];
const MAP_KEYS = ['x', 'y', 'z'];
const small = fc.integer({ min: -5, max: 5 });

const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.constantFrom(...KEYS).map((key): Op => ({ t: 'key', key })), weight: 4 },
  { arbitrary: small.map((v): Op => ({ t: 'value', v })), weight: 3 },
  { arbitrary: fc.constant<Op>({ t: 'valueClear' }), weight: 2 },
  { arbitrary: small.map((v): Op => ({ t: 'listAdd', v })), weight: 3 },
  { arbitrary: fc.array(small, { maxLength: 3 }).map((vs): Op => ({ t: 'listUpdate', vs })), weight: 1 },
  { arbitrary: fc.constant<Op>({ t: 'listClear' }), weight: 1 },
  {
    arbitrary: fc
      .record({ k: fc.constantFrom(...MAP_KEYS), v: small })
      .map((r): Op => ({ t: 'mapPut', ...r })),
    weight: 3,
  },
  { arbitrary: fc.constantFrom(...MAP_KEYS).map((k): Op => ({ t: 'mapRemove', k })), weight: 2 },
  { arbitrary: fc.constant<Op>({ t: 'mapClear' }), weight: 1 },
  { arbitrary: small.map((v): Op => ({ t: 'reduce', v })), weight: 2 },
  { arbitrary: fc.constant<Op>({ t: 'reduceClear' }), weight: 1 },
  { arbitrary: small.map((v): Op => ({ t: 'agg', v })), weight: 2 },
  { arbitrary: fc.constant<Op>({ t: 'capture' }), weight: 4 },
  { arbitrary: fc.nat(3).map((i): Op => ({ t: 'materialize', i })), weight: 2 },
  { arbitrary: fc.nat(3).map((i): Op => ({ t: 'release', i })), weight: 2 },
  { arbitrary: fc.nat(3).map((i): Op => ({ t: 'restore', i })), weight: 1 },
  { arbitrary: fc.constant<Op>({ t: 'check' }), weight: 2 },
);

/** The expected state: per state, per key. */
interface Model {
  value: Map<string, number>;
  list: Map<string, number[]>;
  map: Map<string, Map<string, number>>;
  reducing: Map<string, number>;
  aggregating: Map<string, Avg>;
}

const emptyModel = (): Model => ({
  value: new Map(),
  list: new Map(),
  map: new Map(),
  reducing: new Map(),
  aggregating: new Map(),
});

function cloneModel(m: Model): Model {
  return {
    value: new Map(m.value),
    list: new Map([...m.list].map(([k, v]) => [k, v.slice()])),
    map: new Map([...m.map].map(([k, v]) => [k, new Map(v)])),
    reducing: new Map(m.reducing),
    aggregating: new Map([...m.aggregating].map(([k, v]) => [k, { ...v }])),
  };
}

function modelDump(m: Model): Dump {
  const per = <V>(map: Map<string, V>, f: (v: V) => unknown): Record<string, unknown> =>
    Object.fromEntries([...map].map(([k, v]) => [JSON.stringify(k), f(v)]));
  return {
    value: per(m.value, (v) => v),
    list: per(m.list, (v) => v),
    map: per(m.map, (v) => [...v].sort(([a], [b]) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1))),
    reducing: per(m.reducing, (v) => v),
    aggregating: per(m.aggregating, (v) => v.sum / v.count),
  };
}

/**
 * Random sequences of operations over a few keys and all five kinds, with captures (several alive),
 * materializations, releases in any order and restores into a fresh backend, against a plain model.
 */
export function modelCases(make: MakeKeyedStateBackend, caps: KeyedStateBackendCapabilities): void {
  const d = descriptors();
  const maxCaptures = caps.concurrentCaptures === false ? 1 : 4;

  test('random operations with captures and restores agree with a plain model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 120, size: 'max' }), async (ops) => {
        let f = new Fixture(await make());
        let model = emptyModel();
        let live: { capture: KeyedStateCapture; model: Model }[] = [];
        let checkpointId = 0;
        try {
          for (const o of ops) {
            const h = handles(f, d);
            const key = f.key;
            switch (o.t) {
              case 'key':
                f.at(o.key);
                break;
              case 'value':
                h.value.update(o.v);
                model.value.set(key, o.v);
                break;
              case 'valueClear':
                h.value.clear();
                model.value.delete(key);
                break;
              case 'listAdd':
                h.list.add(o.v);
                model.list.set(key, [...(model.list.get(key) ?? []), o.v]);
                break;
              case 'listUpdate':
                h.list.update(o.vs);
                if (o.vs.length === 0) model.list.delete(key);
                else model.list.set(key, o.vs.slice());
                break;
              case 'listClear':
                h.list.clear();
                model.list.delete(key);
                break;
              case 'mapPut': {
                h.map.put(o.k, o.v);
                const m = new Map(model.map.get(key));
                m.set(o.k, o.v);
                model.map.set(key, m);
                break;
              }
              case 'mapRemove': {
                h.map.remove(o.k);
                const m = new Map(model.map.get(key));
                m.delete(o.k);
                if (m.size === 0) model.map.delete(key);
                else model.map.set(key, m);
                break;
              }
              case 'mapClear':
                h.map.clear();
                model.map.delete(key);
                break;
              case 'reduce':
                h.reducing.add(o.v);
                model.reducing.set(key, (model.reducing.get(key) ?? 0) + o.v);
                break;
              case 'reduceClear':
                h.reducing.clear();
                model.reducing.delete(key);
                break;
              case 'agg': {
                h.aggregating.add(o.v);
                const acc = model.aggregating.get(key) ?? { sum: 0, count: 0 };
                model.aggregating.set(key, { sum: acc.sum + o.v, count: acc.count + 1 });
                break;
              }
              case 'capture':
                if (live.length < maxCaptures) {
                  live.push({ capture: f.backend.capture(++checkpointId), model: cloneModel(model) });
                }
                break;
              case 'materialize': {
                if (live.length === 0) break;
                const [c] = live.splice(o.i % live.length, 1);
                const snapshot = await c!.capture.materialize();
                c!.capture.release();
                assert.deepEqual(
                  await dumpOfSnapshot(make, snapshot, d),
                  modelDump(c!.model),
                  'snapshot = model at capture',
                );
                break;
              }
              case 'release': {
                if (live.length === 0) break;
                const [c] = live.splice(o.i % live.length, 1);
                c!.capture.release();
                break;
              }
              case 'restore': {
                const source =
                  live.length === 0
                    ? { capture: f.backend.capture(++checkpointId), model: cloneModel(model) }
                    : live.splice(o.i % live.length, 1)[0]!;
                const snapshot = await source.capture.materialize();
                source.capture.release();
                for (const c of live) c.capture.release();
                live = [];
                await f.backend.close();
                f = new Fixture(await make());
                await f.backend.restore(snapshot);
                model = cloneModel(source.model);
                f.at(key);
                break;
              }
              case 'check':
                assert.deepEqual(dump(f, d), modelDump(model));
                break;
            }
          }
          assert.deepEqual(dump(f, d), modelDump(model), 'live state = model');
          for (const c of live) {
            const snapshot = await c.capture.materialize();
            c.capture.release();
            assert.deepEqual(await dumpOfSnapshot(make, snapshot, d), modelDump(c.model));
          }
          live = [];
        } finally {
          for (const c of live) c.capture.release();
          await f.backend.close();
        }
      }),
      { numRuns: caps.modelRuns ?? 150 },
    );
  });
}
