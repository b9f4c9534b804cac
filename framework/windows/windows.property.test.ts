import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type KeyedProcessFunction, outputTag } from '../api/functions.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';
import { LevelKeyedStateBackend } from '../state/backends/level/level.ts';
import { type HarnessSnapshot, KeyedOperatorHarness } from '../testing/harness.ts';
import { sessionEventTime, slidingEventTime, tumblingEventTime, type WindowAssigner } from './assigners.ts';
import { aggregateWindows, processWindows, reduceWindows, windowOperator } from './operator.ts';
import { type RefAssigner, ReferenceWindows } from './testing/reference.ts';
import { countTrigger } from './triggers.ts';

/**
 * Window outputs against a brute-force model (testing/reference.ts) over random event sequences:
 * out of order, duplicated, late within and beyond the allowed lateness, with watermarks; tumbling,
 * sliding (sliced and naive) and session windows; time and count triggers; and snapshot -> restore
 * into a fresh operator and backend at random points, on the heap and the level backend.
 */

interface Ev {
  readonly k: string;
  readonly v: number;
  readonly id: number;
}

type Op = { kind: 'r'; k: string; ts: number; v: number } | { kind: 'w'; d: number } | { kind: 'dup' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('r' as const),
      k: fc.constantFrom('a', 'b', 'c'),
      ts: fc.integer({ min: 0, max: 90 }),
      v: fc.integer({ min: 1, max: 9 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('w' as const), d: fc.integer({ min: 0, max: 12 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'dup' as const }) },
);

interface Case {
  readonly assigner: WindowAssigner;
  readonly ref: RefAssigner;
  readonly lateness: number;
  readonly count: number | undefined;
  readonly ops: Op[];
}

const fixedArb = fc
  .record({ slide: fc.integer({ min: 1, max: 12 }), mult: fc.integer({ min: 1, max: 4 }), extra: fc.nat(5) })
  .chain(({ slide, mult, extra }) =>
    fc.record({
      size: fc.constant(Math.max(slide, slide * mult + (extra % slide))),
      slide: fc.constant(slide),
      offset: fc.integer({ min: 0, max: slide - 1 }),
    }),
  );

const assignerArb: fc.Arbitrary<[WindowAssigner, RefAssigner]> = fc.oneof(
  fixedArb.map(({ size, slide, offset }): [WindowAssigner, RefAssigner] => [
    size === slide
      ? tumblingEventTime({ sizeMs: size, offsetMs: offset })
      : slidingEventTime({ sizeMs: size, slideMs: slide, offsetMs: offset }),
    { kind: 'fixed', size, slide, offset },
  ]),
  fc
    .integer({ min: 1, max: 15 })
    .map((gap): [WindowAssigner, RefAssigner] => [
      sessionEventTime({ gapMs: gap }),
      { kind: 'session', gap },
    ]),
);

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    pair: assignerArb,
    lateness: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 20 })),
    count: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, fc.integer({ min: 1, max: 4 })),
    ops: fc.array(opArb, { minLength: 1, maxLength: 80, size: 'large' }),
  })
  .map(({ pair, lateness, count, ops }) => ({ assigner: pair[0], ref: pair[1], lateness, count, ops }));

const late = outputTag<Ev>('late');

type Fn = 'process' | 'aggregate' | 'reduce';
type Out = { key: string; start: number; end: number; ids?: number[]; sum: number; n?: number };

function makeOperator(c: Case, fn: Fn, assignment: 'sliced' | 'naive' | undefined) {
  const options = {
    allowedLatenessMs: c.lateness,
    lateTag: late,
    ...(c.count !== undefined ? { trigger: countTrigger(c.count) } : {}),
    ...(assignment && c.assigner.kind !== 'session' ? { assignment } : {}),
  };
  const spec =
    fn === 'process'
      ? processWindows<string, Ev, Out>((els, ctx, out) =>
          out.collect({
            key: ctx.key,
            ...ctx.window,
            ids: els.map((e) => e.id).sort((a, b) => a - b),
            sum: els.reduce((s, e) => s + e.v, 0),
          }),
        )
      : fn === 'aggregate'
        ? aggregateWindows<string, Ev, { sum: number; n: number }, { sum: number; n: number }, Out>(
            {
              // Changes its accumulator in place, as Flink allows.
              createAccumulator: () => ({ sum: 0, n: 0 }),
              add: (e, acc) => {
                acc.sum += e.v;
                acc.n++;
                return acc;
              },
              merge: (a, b) => {
                a.sum += b.sum;
                a.n += b.n;
                return a;
              },
              getResult: (acc) => acc,
            },
            (r, ctx) => ({ key: ctx.key, ...ctx.window, sum: r.sum, n: r.n }),
          )
        : reduceWindows<string, Ev, Out>(
            // Changes its first argument in place.
            (a, b) => {
              (a as { v: number }).v += b.v;
              return a;
            },
            (r, ctx) => ({ key: ctx.key, ...ctx.window, sum: r.v }),
          );
  return windowOperator(c.assigner, options, spec as never, 'win') as KeyedProcessFunction<string, Ev, Out>;
}

function expected(c: Case, fn: Fn): { out: string[]; late: number[] } {
  const ref = new ReferenceWindows<Ev>({ assigner: c.ref, lateness: c.lateness, count: c.count });
  let wm = -1;
  let last: [string, number, Ev] | undefined;
  let id = 0;
  for (const op of c.ops) {
    if (op.kind === 'w') {
      wm += op.d;
      ref.advance(wm);
    } else if (op.kind === 'r') {
      last = [op.k, op.ts, { k: op.k, v: op.v, id: id++ }];
      ref.record(...last);
    } else if (last) ref.record(...last);
  }
  ref.advance(Number.POSITIVE_INFINITY);
  assert.equal(ref.open, 0);
  const out = ref.fired.map((f) => {
    const sum = f.elements.reduce((s, e) => s + e.v, 0);
    const o: Out =
      fn === 'process'
        ? {
            key: f.key,
            start: f.start,
            end: f.end,
            ids: f.elements.map((e) => e.id).sort((a, b) => a - b),
            sum,
          }
        : fn === 'aggregate'
          ? { key: f.key, start: f.start, end: f.end, sum, n: f.elements.length }
          : { key: f.key, start: f.start, end: f.end, sum };
    return JSON.stringify([o, f.end - 1]);
  });
  return { out: out.sort(), late: ref.late.map((e) => e.id).sort((a, b) => a - b) };
}

type BackendKind = 'heap' | 'level';

async function newBackend(kind: BackendKind, dirs: string[]): Promise<KeyedStateBackend> {
  if (kind === 'heap') return new HeapKeyedStateBackend();
  const dir = await mkdtemp(join(tmpdir(), 'kstate-windows-'));
  dirs.push(dir);
  return LevelKeyedStateBackend.open({ directory: dir, writeBatchEntries: 7, cacheEntries: 5 });
}

/** Runs the case through the operator; snapshots and restores into a fresh instance after the ops in `restoreAfter`. */
async function actual(
  c: Case,
  fn: Fn,
  assignment: 'sliced' | 'naive' | undefined,
  backend: BackendKind,
  restoreAfter: ReadonlySet<number> = new Set(),
): Promise<{ out: string[]; late: number[] }> {
  const dirs: string[] = [];
  const outs: string[] = [];
  const lates: number[] = [];
  const drain = (h: KeyedOperatorHarness<string, Ev, Out>) => {
    for (const r of h.output) {
      const o = r.value;
      assert.equal(r.timestamp, o.end - 1, 'a window result carries the timestamp end - 1');
      outs.push(JSON.stringify([o, r.timestamp]));
    }
    for (const r of h.sideOutputs.get(late.id) ?? []) lates.push((r.value as Ev).id);
  };
  const open = async (restore?: HarnessSnapshot) =>
    KeyedOperatorHarness.create(makeOperator(c, fn, assignment), (e: Ev) => e.k, {
      uid: 'win',
      backend: await newBackend(backend, dirs),
      ...(restore ? { restore } : {}),
    });
  let h = await open();
  try {
    let wm = -1;
    let last: [Ev, number] | undefined;
    let id = 0;
    for (const [i, op] of c.ops.entries()) {
      if (op.kind === 'w') {
        wm += op.d;
        h.advanceWatermark(wm);
      } else if (op.kind === 'r') {
        last = [{ k: op.k, v: op.v, id: id++ }, op.ts];
        h.processElement({ ...last[0] }, last[1]);
      } else if (last) h.processElement({ ...last[0] }, last[1]);
      if (restoreAfter.has(i)) {
        const snap = await h.snapshot();
        drain(h);
        await h.close();
        h = await open(snap);
        // A restored task's watermark starts over; the source soon re-establishes it.
        h.advanceWatermark(wm);
      }
    }
    h.advanceWatermark(Number.POSITIVE_INFINITY);
    drain(h);
    for (const s of ['slices', 'windows', 'counts', 'sessions'])
      assert.equal(h.stateEntries(s), 0, `state ${s}`);
    const snap = await h.snapshot();
    assert.deepEqual(snap.operator.timers, { event: [], processing: [] }, 'no timers left');
  } finally {
    await h.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
  return { out: outs.sort(), late: lates.sort((a, b) => a - b) };
}

describe('windows equal the brute-force model', () => {
  for (const fn of ['process', 'aggregate', 'reduce'] as const) {
    test(`${fn}: tumbling, sliding (sliced), session; lateness, late side output, count triggers`, async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          assert.deepEqual(await actual(c, fn, undefined, 'heap'), expected(c, fn));
        }),
        { numRuns: 400 },
      );
    });
  }

  test('sliced and naive assignment give equal outputs (and both equal the model)', async () => {
    await fc.assert(
      fc.asyncProperty(
        caseArb.filter((c) => c.assigner.kind !== 'session'),
        fc.constantFrom<Fn>('process', 'aggregate', 'reduce'),
        async (c, fn) => {
          const sliced = await actual(c, fn, 'sliced', 'heap');
          const naive = await actual(c, fn, 'naive', 'heap');
          assert.deepEqual(sliced, naive);
          assert.deepEqual(sliced, expected(c, fn));
        },
      ),
      { numRuns: 400 },
    );
  });

  for (const backend of ['heap', 'level'] as const) {
    test(`snapshot -> restore into a fresh operator at random points (${backend} backend)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          caseArb,
          fc.constantFrom<Fn>('process', 'aggregate', 'reduce'),
          fc.constantFrom<'sliced' | 'naive'>('sliced', 'naive'),
          fc.uniqueArray(fc.nat(70), { maxLength: 4 }),
          async (c, fn, assignment, points) => {
            const got = await actual(c, fn, assignment, backend, new Set(points));
            assert.deepEqual(got, expected(c, fn));
          },
        ),
        { numRuns: backend === 'heap' ? 400 : 100 },
      );
    });
  }
});
