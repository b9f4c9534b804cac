import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import { outputTag } from '../api/functions.ts';
import { KeyedOperatorHarness } from '../testing/harness.ts';
import { IntervalJoin } from './interval-join.ts';
import { TableJoin, type TableUpdate } from './table-join.ts';
import { drive, type Ev, runs, type Step, sorted } from './test-support/driver.ts';
import { WindowJoin } from './window-join.ts';

const records = (steps: readonly Step[]) =>
  steps.flatMap((s, i) => (s.kind === 'record' ? [{ ev: s.ev, index: i }] : []));

/** The watermark in force when each step runs (before it). */
function watermarkBefore(steps: readonly Step[]): number[] {
  let wm = Number.NEGATIVE_INFINITY;
  return steps.map((s) => {
    const before = wm;
    if (s.kind === 'watermark') wm = s.wm;
    return before;
  });
}

const pair = (l: Ev, r: Ev) => `${l.id}-${r.id}`;

describe('interval join', () => {
  const late = { left: outputTag<Ev>('late-left'), right: outputTag<Ev>('late-right') };
  const make = (lowerMs: number, upperMs: number) => () =>
    new IntervalJoin<string, Ev, Ev, string>({
      lowerMs,
      upperMs,
      join: pair,
      lateLeft: late.left,
      lateRight: late.right,
    });

  test('equals the brute-force join of the records that were not late, across restores on heap and level', async () => {
    await fc.assert(
      fc.asyncProperty(
        runs({ maxLen: 40, disorder: 30, lateness: true }),
        fc.integer({ min: -12, max: 4 }).map((x) => x * 5),
        fc.integer({ min: 0, max: 16 }).map((x) => x * 5),
        fc.integer({ min: 0, max: 1000 }),
        async (steps, lower, width, seed) => {
          const upper = lower + width;
          const restoreAt = new Set([seed % steps.length, (seed * 7) % steps.length]);
          const r = await drive(make(lower, upper), steps, {
            restoreAt,
            level: (n) => (n + seed) % 3 === 0,
            states: ['interval-join.left', 'interval-join.right'],
          });
          const wm = watermarkBefore(steps);
          const onTime = records(steps).filter(({ ev, index }) => ev.t >= wm[index]!);
          const lateIds = records(steps)
            .filter(({ ev, index }) => ev.t < wm[index]!)
            .map(({ ev }) => ev.id);
          const expected: string[] = [];
          for (const { ev: l } of onTime.filter((x) => x.ev.side === 0))
            for (const { ev: rr } of onTime.filter((x) => x.ev.side === 1))
              if (l.key === rr.key && rr.t >= l.t + lower && rr.t <= l.t + upper) expected.push(pair(l, rr));
          assert.deepEqual(sorted(r.output.map((o) => o.value)), sorted(expected));
          for (const o of r.output) {
            const [a, b] = (o.value as string).split('-').map(Number);
            const ts = Math.max(
              ...records(steps)
                .filter((x) => x.ev.id === a || x.ev.id === b)
                .map((x) => x.ev.t),
            );
            assert.equal(o.timestamp, ts, 'an output carries the later timestamp of its pair');
          }
          const sideIds = [...(r.side.get('late-left') ?? []), ...(r.side.get('late-right') ?? [])].map(
            (x) => (x.value as Ev).id,
          );
          assert.deepEqual(
            sideIds.sort((a, b) => a - b),
            lateIds.sort((a, b) => a - b),
          );
          assert.equal(r.lateRecordsDropped, 0, 'late records sent to a side output are not dropped');
          // The final watermark passed everything: no buffered record is left.
          assert.deepEqual(r.finalEntries, { 'interval-join.left': 0, 'interval-join.right': 0 });
        },
      ),
      { numRuns: 150 },
    );
  });

  test('without late outputs, each late record (either side) is counted as dropped and no on-time one is', async () => {
    const h = await KeyedOperatorHarness.createTwoInput(
      new IntervalJoin<string, Ev, Ev, string>({ lowerMs: 0, upperMs: 10, join: pair }),
      (e: Ev) => e.key,
      (e: Ev) => e.key,
    );
    h.processElement({ side: 0, key: 'a', t: 100, id: 0 }, 100);
    h.advanceWatermark(100);
    h.processElement2({ side: 1, key: 'a', t: 100, id: 1 }, 100); // at the watermark: on time
    assert.equal(h.lateRecordsDropped, 0);
    h.processElement({ side: 0, key: 'a', t: 99, id: 2 }, 99);
    h.processElement2({ side: 1, key: 'a', t: 95, id: 3 }, 95);
    assert.equal(h.lateRecordsDropped, 2);
    assert.deepEqual(
      h.output.map((o) => o.value),
      ['0-1'],
    );
    await h.close();
    await fc.assert(
      fc.asyncProperty(runs({ maxLen: 40, disorder: 30, lateness: true }), async (steps) => {
        const r = await drive(
          () => new IntervalJoin<string, Ev, Ev, string>({ lowerMs: -10, upperMs: 10, join: pair }),
          steps,
          { restoreAt: new Set([Math.floor(steps.length / 2)]) },
        );
        const wm = watermarkBefore(steps);
        const late = records(steps).filter(({ ev, index }) => ev.t < wm[index]!).length;
        assert.equal(r.lateRecordsDropped, late);
      }),
      { numRuns: 50 },
    );
  });

  test('state holds only the records that can still match (bounded by the interval)', async () => {
    const steps: Step[] = [];
    for (let i = 0; i < 2000; i++) {
      steps.push({
        kind: 'record',
        ev: { side: (i % 2) as 0 | 1, key: `k${Math.floor(i / 2) % 50}`, t: i * 10, id: i },
      });
      if (i % 10 === 9) steps.push({ kind: 'watermark', wm: i * 10 - 1 });
    }
    const r = await drive(make(-100, 100), steps.slice(0, -1), {
      states: ['interval-join.left', 'interval-join.right'],
    });
    // With a 200 ms interval and 10 ms between records, only the keys of the last ~20 records hold state.
    assert.ok(r.finalEntries['interval-join.left']! <= 20, JSON.stringify(r.finalEntries));
    assert.ok(r.output.length > 0);
  });

  test('a record without a timestamp is RECORD_TIMESTAMP_MISSING; bad bounds are CONFIG_INVALID', async () => {
    const h = await KeyedOperatorHarness.createTwoInput(
      make(0, 10)(),
      (e: Ev) => e.key,
      (e: Ev) => e.key,
    );
    assert.throws(
      () => h.processElement({ side: 0, key: 'a', t: 0, id: 0 }),
      (e) => isStreamError(e) && /without a timestamp/.test(String(e.cause ?? e.message)),
    );
    assert.throws(
      () => make(10, 0)(),
      (e) => isStreamError(e, 'CONFIG_INVALID'),
    );
  });
});

describe('window join', () => {
  const tags = { left: outputTag<Ev>('late-left'), right: outputTag<Ev>('late-right') };
  const make = (sizeMs: number, slideMs: number) => () =>
    new WindowJoin<string, Ev, Ev, string>({
      sizeMs,
      slideMs,
      join: (l, r, _k, w) => `${l.id}-${r.id}@${w.start}`,
      lateLeft: tags.left,
      lateRight: tags.right,
    });

  /** Reference: each window fires at the first watermark >= end - 1 and joins what arrived before, on time for it. */
  function reference(steps: readonly Step[], size: number, slide: number): string[] {
    const wm = watermarkBefore(steps);
    const out: string[] = [];
    const starts = new Set<number>();
    for (const { ev } of records(steps))
      for (let s = Math.floor(ev.t / slide) * slide; s + size > ev.t; s -= slide) starts.add(s);
    for (const start of starts) {
      const end = start + size;
      const fire = steps.findIndex((s) => s.kind === 'watermark' && s.wm >= end - 1);
      const inside = records(steps).filter(
        ({ ev, index }) =>
          index < fire &&
          ev.t >= start &&
          ev.t < end &&
          // accepted: its last window had not fired when it arrived
          Math.floor(ev.t / slide) * slide + size - 1 > wm[index]!,
      );
      for (const l of inside.filter((x) => x.ev.side === 0))
        for (const r of inside.filter((x) => x.ev.side === 1))
          if (l.ev.key === r.ev.key) out.push(`${l.ev.id}-${r.ev.id}@${start}`);
    }
    return out;
  }

  test('tumbling and sliding: equal a per-window brute-force join, across restores on heap and level', async () => {
    await fc.assert(
      fc.asyncProperty(
        runs({ maxLen: 40, disorder: 30, lateness: true }),
        fc.constantFrom([50, 50], [60, 20], [100, 30], [40, 40]),
        fc.integer({ min: 0, max: 1000 }),
        async (steps, [size, slide], seed) => {
          const r = await drive(make(size!, slide!), steps, {
            restoreAt: new Set([seed % steps.length]),
            level: (n) => (n + seed) % 3 === 0,
            states: ['window-join.left', 'window-join.right'],
          });
          assert.deepEqual(sorted(r.output.map((o) => o.value)), sorted(reference(steps, size!, slide!)));
          for (const o of r.output) {
            const start = Number((o.value as string).split('@')[1]);
            assert.equal(o.timestamp, start + size! - 1);
          }
          assert.deepEqual(r.finalEntries, { 'window-join.left': 0, 'window-join.right': 0 });
          assert.equal(r.lateRecordsDropped, 0, 'late records sent to a side output are not dropped');
        },
      ),
      { numRuns: 150 },
    );
  });

  test('without late outputs, each record whose windows all fired is counted as dropped and no other', async () => {
    await fc.assert(
      fc.asyncProperty(
        runs({ maxLen: 40, disorder: 30, lateness: true }),
        fc.constantFrom([50, 50], [60, 20]),
        async (steps, [size, slide]) => {
          const r = await drive(
            () =>
              new WindowJoin<string, Ev, Ev, string>({
                sizeMs: size!,
                slideMs: slide!,
                join: (l, rr) => `${l.id}-${rr.id}`,
              }),
            steps,
            { restoreAt: new Set([Math.floor(steps.length / 2)]) },
          );
          const wm = watermarkBefore(steps);
          const late = records(steps).filter(
            ({ ev, index }) => Math.floor(ev.t / slide!) * slide! + size! - 1 <= wm[index]!,
          ).length;
          assert.equal(r.lateRecordsDropped, late);
        },
      ),
      { numRuns: 50 },
    );
  });

  test('a record is stored once, not once per overlapping window', async () => {
    const steps: Step[] = [{ kind: 'record', ev: { side: 0, key: 'a', t: 5, id: 0 } }];
    const h = await KeyedOperatorHarness.createTwoInput(
      make(100, 10)(),
      (e: Ev) => e.key,
      (e: Ev) => e.key,
    );
    for (const s of steps) if (s.kind === 'record') h.processElement(s.ev, s.ev.t);
    // 10 windows contain t = 5, one slice holds it.
    assert.equal(h.stateEntries('window-join.left'), 1);
    const snap = await h.snapshot();
    const stored = JSON.stringify([...Object.values(snap.keyed)]);
    assert.equal(stored.split('"id":0').length - 1 <= 1, true);
  });
});

describe('table join', () => {
  type S = { key: string; n: number };
  test('joins each record with the latest table value of its key; tombstones delete; state survives restore', async () => {
    const make = (kind: 'inner' | 'left') =>
      new TableJoin<string, S, number, string>({
        join: (s, v, k) => `${k}:${s.n}:${v}`,
        kind,
      });
    for (const kind of ['inner', 'left'] as const) {
      let h = await KeyedOperatorHarness.createTwoInput(
        make(kind),
        (s: S) => s.key,
        (u: TableUpdate<number>) => u.key,
      );
      h.processElement({ key: 'a', n: 1 });
      h.processElement2({ key: 'a', value: 10 });
      h.processElement({ key: 'a', n: 2 });
      h.processElement2({ key: 'b', value: 20 });
      const snap = await h.snapshot();
      const out1 = h.output.map((o) => o.value);
      await h.close();
      h = await KeyedOperatorHarness.createTwoInput(
        make(kind),
        (s: S) => s.key,
        (u: TableUpdate<number>) => u.key,
        { restore: snap },
      );
      h.processElement({ key: 'b', n: 3 });
      h.processElement2({ key: 'a', value: 11 });
      h.processElement({ key: 'a', n: 4 });
      h.processElement2({ key: 'a', value: null });
      h.processElement({ key: 'a', n: 5 });
      const out = [...out1, ...h.output.map((o) => o.value)];
      assert.equal(h.stateEntries('table-join.value'), 1, 'the tombstone removed key a');
      await h.close();
      const expected = ['a:2:10', 'b:3:20', 'a:4:11'];
      if (kind === 'left') expected.unshift('a:1:undefined');
      if (kind === 'left') expected.push('a:5:undefined');
      assert.deepEqual(out, expected);
    }
  });
});
