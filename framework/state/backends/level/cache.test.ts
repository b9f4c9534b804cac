import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { StateMeta } from '../../backend.ts';
import { temporaryLevelBackend } from './testing.ts';

const META: StateMeta = { name: 'lists', kind: 'list', serializerId: 'msgpack', serializerVersion: 1 };

describe('level backend: the write-behind cache and its batches', () => {
  test('reads of absent keys make no native call; a miss is one getSync', async () => {
    const b = await temporaryLevelBackend({ cacheEntries: 0, writeBatchEntries: 10 });
    b.register(META);
    for (let i = 0; i < 100; i++) assert.equal(b.get('lists', `absent-${i}`), undefined);
    assert.equal(b.stats.reads, 0);
    for (let i = 0; i < 100; i++) b.put('lists', `k${i}`, [i]);
    await b.flushed();
    const before = b.stats.reads;
    assert.deepEqual(b.get('lists', 'k0'), [0]);
    assert.equal(b.stats.reads, before + 1, 'no cache: one read');
    assert.equal(b.cachedEntries, 0);
    await b.close();
  });

  test('the cache stays within cacheEntries once the batches have landed', async () => {
    const b = await temporaryLevelBackend({ cacheEntries: 100, writeBatchEntries: 50 });
    b.register(META);
    for (let i = 0; i < 5000; i++) {
      b.put('lists', `k${i}`, [i]);
      if (i % 200 === 0) await yieldToEventLoop();
    }
    await b.flushed();
    b.get('lists', 'k1'); // an insert runs the eviction
    assert.ok(b.cachedEntries <= 150, `${b.cachedEntries} entries cached`);
    assert.equal(b.size('lists'), 5000);
    assert.deepEqual(b.get('lists', 'k4321'), [4321]);
    await b.close();
  });

  test('flushes while a batch is pending join it: one pending write job, each key written once', async () => {
    const b = await temporaryLevelBackend({ writeBatchEntries: 10 });
    b.register(META);
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 20; i++) b.put('lists', `k${i}`, [round, i]); // no yield: nothing runs meanwhile
    }
    assert.equal(b.stats.batches, 1, 'a hundred flushes, one job');
    await b.flushed();
    assert.equal(b.stats.written, 20);
    assert.deepEqual(b.get('lists', 'k7'), [49, 7]);
    await b.close();
  });

  test('a value frozen in a capture is copied on update, once; the capture keeps the old one', async () => {
    const b = await temporaryLevelBackend();
    b.register(META);
    b.put('lists', 'a', [1]);
    const capture = b.capture(1); // the batch holding 'a' has not landed: 'a' is in the overlay
    let copies = 0;
    const copy = (xs: number[]) => {
      copies++;
      return xs.slice();
    };
    const mine = b.getForUpdate<number[]>('lists', 'a', copy)!;
    mine.push(2);
    b.put('lists', 'a', mine);
    const again = b.getForUpdate<number[]>('lists', 'a', copy)!;
    again.push(3);
    b.put('lists', 'a', again);
    assert.equal(copies, 1);
    await b.flushed(); // landed: still frozen for the live capture
    const third = b.getForUpdate<number[]>('lists', 'a', copy)!;
    assert.deepEqual(third, [1, 2, 3]);
    const snapshot = await capture.materialize();
    capture.release();
    assert.deepEqual(snapshot.states[0]!.entries.length, 1);
    const restored = await temporaryLevelBackend();
    await restored.restore(snapshot);
    restored.register(META);
    assert.deepEqual(restored.get('lists', 'a'), [1]);
    await restored.close();
    await b.close();
  });
});
