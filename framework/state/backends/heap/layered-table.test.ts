import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { StateMeta } from '../../backend.ts';
import { HeapKeyedStateBackend } from './heap.ts';
import { forEachChangeAsync, LayeredTable, readView } from './layered-table.ts';

const META: StateMeta = { name: 's', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };

describe('LayeredTable', () => {
  test('capture() adds one layer and copies nothing; an unchanged table gets no new layer', () => {
    const t = new LayeredTable();
    for (let i = 0; i < 1000; i++) t.put(`k${i}`, i);
    const c1 = t.capture();
    assert.equal(t.depth, 2);
    assert.equal(c1.layers.length, 1, 'the capture holds the base layer itself');
    const c2 = t.capture();
    assert.equal(t.depth, 2, 'nothing written since c1: c2 shares its layers');
    t.put('k1', 'new');
    const c3 = t.capture();
    assert.equal(t.depth, 3);
    for (const c of [c1, c2, c3]) t.release(c);
    assert.equal(t.depth, 2, 'at rest: the base and the (empty) changes since the last capture');
    assert.equal(t.get('k1'), 'new');
    assert.equal(t.size, 1000);
  });

  test('with captures overlapping forever, the depth stays at live captures + 2', () => {
    const t = new LayeredTable();
    let previous = t.capture();
    for (let round = 0; round < 1000; round++) {
      t.put(`k${round % 17}`, round);
      if (round % 5 === 0) t.delete(`k${(round + 3) % 17}`);
      const next = t.capture();
      t.release(previous);
      previous = next;
      assert.ok(t.depth <= 3, `depth ${t.depth} at round ${round}`);
    }
    t.release(previous);
    assert.equal(t.depth, 2);
  });

  test('against a Map: size, get and every live capture after random puts, deletes, captures and releases', () => {
    // The one-operation put (a key the top layer holds had a value, unless it holds tombstones) must
    // count exactly as a lookup before each write would: checked against a plain Map at every step.
    let seed = 11;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 20; round++) {
      const t = new LayeredTable();
      const model = new Map<string, number>();
      const live: { view: ReturnType<LayeredTable['capture']>; saw: Map<string, number> }[] = [];
      for (let step = 0; step < 2000; step++) {
        const key = `k${rnd(12)}`;
        const op = rnd(20);
        if (op < 10) {
          t.put(key, step);
          model.set(key, step);
        } else if (op < 16) {
          t.delete(key);
          model.delete(key);
        } else if (op < 18) {
          live.push({ view: t.capture(), saw: new Map(model) });
        } else if (live.length > 0) {
          t.release(live.splice(rnd(live.length), 1)[0]!.view);
        }
        assert.equal(t.size, model.size, `round ${round} step ${step}: size`);
        assert.equal(t.get(key), model.get(key), `round ${round} step ${step}: get(${key})`);
      }
      assert.deepEqual(new Map(t.entries()), model, `round ${round}: entries`);
      for (const { view, saw } of live) assert.deepEqual(new Map(readView(view.layers)), saw, 'a capture');
    }
  });

  test('tombstones hide lower layers until merged, and merging keeps every capture view intact', () => {
    const t = new LayeredTable();
    t.put('a', 1);
    t.put('b', 1);
    const c1 = t.capture();
    t.delete('a');
    t.put('c', 2);
    const c2 = t.capture();
    t.put('a', 3);
    t.delete('b');
    const c3 = t.capture();
    t.delete('c');
    assert.deepEqual(new Map(t.entries()), new Map([['a', 3]]));
    assert.equal(t.size, 1);
    t.release(c2); // merges c2's end into the layer below it while c1 and c3 live
    assert.deepEqual(
      new Map(readView(c1.layers)),
      new Map([
        ['a', 1],
        ['b', 1],
      ]),
    );
    assert.deepEqual(
      new Map(readView(c3.layers)),
      new Map([
        ['a', 3],
        ['c', 2],
      ]),
    );
    t.release(c1);
    assert.deepEqual(
      new Map(readView(c3.layers)),
      new Map([
        ['a', 3],
        ['c', 2],
      ]),
    );
    t.release(c3);
    assert.equal(t.depth, 2);
    assert.deepEqual(t.entries(), [['a', 3]]);
  });

  test('a capture knows what changed since the capture before it, also after releases', () => {
    const t = new LayeredTable();
    t.put('a', 1);
    t.put('b', 1);
    const changesOf = (v: ReturnType<LayeredTable['capture']>) => {
      const out: [string, unknown][] = [];
      return forEachChangeAsync(
        v,
        1,
        async () => {},
        (k, x) => {
          out.push([k, x]);
        },
      ).then(() => new Map(out));
    };
    const c1 = t.capture();
    t.release(c1);
    t.put('a', 2);
    t.delete('b');
    t.put('c', 3);
    t.delete('c'); // added and removed since c1: no change
    const c2 = t.capture();
    t.put('d', 4);
    t.release(c2);
    const c3 = t.capture();
    const c4 = t.capture(); // nothing written since c3
    return Promise.all([changesOf(c2), changesOf(c3), changesOf(c4)]).then(([d2, d3, d4]) => {
      assert.deepEqual(
        d2,
        new Map<string, unknown>([
          ['a', 2],
          ['b', undefined],
        ]),
      );
      assert.deepEqual(d3, new Map([['d', 4]]));
      assert.equal(d4.size, 0);
      t.release(c3);
      t.release(c4);
      assert.deepEqual(
        new Map(t.entries()),
        new Map([
          ['a', 2],
          ['d', 4],
        ]),
      );
    });
  });

  test('getForUpdate copies only values a live capture sees; others move to the top as they are', () => {
    const t = new LayeredTable();
    const value = { n: 1 };
    t.put('a', value);
    t.release(t.capture()); // 'a' now lies below the top, seen by no capture
    let copies = 0;
    const copy = (x: { n: number }) => {
      copies++;
      return { ...x };
    };
    assert.equal(t.getForUpdate('a', copy), value);
    assert.equal(copies, 0);
    const c = t.capture(); // the top (holding 'a') is frozen and seen by c
    const mine = t.getForUpdate('a', copy)!;
    assert.notEqual(mine, value);
    assert.equal(copies, 1);
    mine.n = 2;
    assert.deepEqual(readView(c.layers), [['a', { n: 1 }]]);
    t.release(c);
  });
});

describe('HeapKeyedStateBackend', () => {
  test('materialize() yields to the event loop so that processing goes on meanwhile', async () => {
    const backend = new HeapKeyedStateBackend({ materializeChunk: 10 });
    backend.register(META);
    for (let i = 0; i < 1000; i++) backend.put('s', `k${i}`, i);
    const capture = backend.capture(1);
    let processedDuringMaterialize = 0;
    let done = false;
    const pending = capture.materialize().then((s) => {
      done = true;
      return s;
    });
    while (!done) {
      backend.put('s', `k${processedDuringMaterialize}`, -1);
      processedDuringMaterialize++;
      await yieldToEventLoop();
    }
    const snapshot = await pending;
    capture.release();
    assert.ok(
      processedDuringMaterialize > 10,
      `only ${processedDuringMaterialize} writes ran during materialize`,
    );
    assert.equal(snapshot.states[0]!.entries.length, 1000);
    assert.equal(backend.layerDepth('s'), 2);
  });

  test('release() during materialize() is deferred until it settles', async () => {
    const backend = new HeapKeyedStateBackend({ materializeChunk: 1 });
    backend.register(META);
    for (let i = 0; i < 50; i++) backend.put('s', `k${i}`, i);
    const capture = backend.capture(1);
    const pending = capture.materialize();
    capture.release();
    assert.equal(backend.layerDepth('s'), 2, 'still frozen for the running materialize');
    backend.put('s', 'k0', 'changed');
    const snapshot = await pending;
    assert.equal(backend.layerDepth('s'), 2);
    assert.equal(snapshot.states[0]!.entries.length, 50);
    await assert.rejects(capture.materialize(), /released/);
  });

  test('a serializer that fails names the checkpoint, state and key', async () => {
    const backend = new HeapKeyedStateBackend();
    backend.register({ ...META, serializerId: 'json' });
    backend.put('s', 'user-1', () => 'not json');
    const capture = backend.capture(4);
    await assert.rejects(capture.materialize(), /checkpoint 4.*'s'.*user-1/);
    capture.release();
  });

  test('rejects a bad materializeChunk', () => {
    assert.throws(() => new HeapKeyedStateBackend({ materializeChunk: 0 }), /materializeChunk/);
  });
});
