import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import { outputTag } from '../api/functions.ts';
import { drive, type Ev, runs, type Step } from '../joins/test-support/driver.ts';
import { KeyedOperatorHarness } from '../testing/harness.ts';
import { Deduplicate } from './dedup.ts';

describe('dedup', () => {
  const dup = outputTag<Ev>('dup');
  const late = outputTag<Ev>('late');

  test('event time: keeps a record iff its key kept none within the horizon; late ones aside; across restores on heap and level', async () => {
    await fc.assert(
      fc.asyncProperty(
        runs({ maxLen: 50, disorder: 30, lateness: true }),
        fc.integer({ min: 1, max: 120 }),
        fc.integer({ min: 0, max: 1000 }),
        async (steps, horizonMs, seed) => {
          const r = await drive(
            () => new Deduplicate<string, Ev>({ horizonMs, duplicates: dup, late }),
            steps,
            {
              restoreAt: new Set([seed % steps.length, (seed * 3) % steps.length]),
              level: (n) => (n + seed) % 2 === 1,
              states: ['dedup.kept'],
            },
          );
          // Reference, in arrival order.
          const kept = new Map<string, number>();
          const expected = { out: [] as number[], dup: [] as number[], late: [] as number[] };
          let wm = Number.NEGATIVE_INFINITY;
          for (const s of steps) {
            if (s.kind === 'watermark') {
              wm = s.wm;
              continue;
            }
            const { key, t, id } = s.ev;
            if (t < wm) expected.late.push(id);
            else if (kept.has(key) && Math.abs(t - kept.get(key)!) < horizonMs) expected.dup.push(id);
            else {
              kept.set(key, t);
              expected.out.push(id);
            }
          }
          assert.deepEqual(
            r.output.map((o) => o.value.id),
            expected.out,
          );
          assert.deepEqual(
            (r.side.get('dup') ?? []).map((o) => (o.value as Ev).id),
            expected.dup,
          );
          assert.deepEqual(
            (r.side.get('late') ?? []).map((o) => (o.value as Ev).id),
            expected.late,
          );
          assert.equal(r.finalEntries['dedup.kept'], 0, 'the final watermark cleared every key');
          assert.equal(r.lateRecordsDropped, 0, 'late records sent to a side output are not dropped');
        },
      ),
      { numRuns: 200 },
    );
  });

  test('event time without a late output: each late record is counted as dropped; duplicates are not late', async () => {
    const h = await KeyedOperatorHarness.create(
      new Deduplicate<string, Ev>({ horizonMs: 10 }),
      (e: Ev) => e.key,
    );
    h.processElement({ side: 0, key: 'a', t: 100, id: 1 }, 100);
    h.advanceWatermark(100);
    h.processElement({ side: 0, key: 'a', t: 105, id: 2 }, 105); // a duplicate, not late
    h.processElement({ side: 0, key: 'b', t: 100, id: 3 }, 100); // at the watermark: on time
    assert.equal(h.lateRecordsDropped, 0);
    h.processElement({ side: 0, key: 'c', t: 99, id: 4 }, 99);
    assert.equal(h.lateRecordsDropped, 1);
    assert.deepEqual(
      h.output.map((o) => o.value.id),
      [1, 3],
    );
    await h.close();
  });

  test('event time: state stays bounded over 100 000 distinct keys (timers clear it as the watermark moves)', async () => {
    const steps: Step[] = [];
    for (let i = 0; i < 100_000; i++) {
      steps.push({ kind: 'record', ev: { side: 0, key: `id-${i}`, t: i, id: i } });
      if (i % 100 === 99) steps.push({ kind: 'watermark', wm: i - 1 });
    }
    const r = await drive(() => new Deduplicate<string, Ev>({ horizonMs: 1000 }), steps, {
      states: ['dedup.kept'],
    });
    assert.equal(r.output.length, 100_000);
    // Keys of the last horizon (1000 ms, a key per ms) plus one watermark step stay; the rest are gone.
    assert.ok(r.finalEntries['dedup.kept']! <= 1100, `state entries: ${r.finalEntries['dedup.kept']}`);
  });

  test('processing time: duplicates within the TTL are dropped; after it a key is new again', async () => {
    const h = await KeyedOperatorHarness.create(
      new Deduplicate<string, Ev>({ horizonMs: 100, time: 'processing', duplicates: dup }),
      (e: Ev) => e.key,
    );
    h.setProcessingTime(1000);
    h.processElement({ side: 0, key: 'a', t: 0, id: 1 });
    h.setProcessingTime(1050);
    h.processElement({ side: 0, key: 'a', t: 0, id: 2 });
    h.setProcessingTime(1100);
    h.processElement({ side: 0, key: 'a', t: 0, id: 3 });
    assert.deepEqual(
      h.output.map((o) => o.value.id),
      [1, 3],
    );
    assert.deepEqual(
      h.sideOutputs.get('dup')?.map((o) => (o.value as Ev).id),
      [2],
    );
  });

  test('bad input: no timestamp in event time, a horizon <= 0', async () => {
    const h = await KeyedOperatorHarness.create(
      new Deduplicate<string, Ev>({ horizonMs: 10 }),
      (e: Ev) => e.key,
    );
    assert.throws(
      () => h.processElement({ side: 0, key: 'a', t: 0, id: 0 }),
      (e) => isStreamError(e) && /timestamp/.test(String((e as Error).cause ?? e.message)),
    );
    assert.throws(
      () => new Deduplicate({ horizonMs: 0 }),
      (e) => isStreamError(e, 'CONFIG_INVALID'),
    );
  });
});
