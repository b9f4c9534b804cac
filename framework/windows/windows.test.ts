import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../api/errors.ts';
import { type KeyedProcessFunction, outputTag } from '../api/functions.ts';
import type { AggregateFunction } from '../api/state.ts';
import { MemoryCheckpointStorage } from '../checkpoint/storage/memory.ts';
import { StreamJob } from '../datastream/index.ts';
import { runJob } from '../runtime/job.ts';
import { levelBackend } from '../state/backends/level/level.ts';
import { temporaryDirectory } from '../state/backends/level/testing.ts';
import { ManualClock } from '../testing/clock.ts';
import { plannedFaults } from '../testing/faults.ts';
import { KeyedOperatorHarness } from '../testing/harness.ts';
import { CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import {
  sessionEventTime,
  sessionProcessingTime,
  slidingEventTime,
  slidingProcessingTime,
  tumblingEventTime,
  tumblingProcessingTime,
  type WindowAssigner,
} from './assigners.ts';
import {
  aggregateWindows,
  processWindows,
  reduceWindows,
  type WindowOptions,
  windowOperator,
} from './operator.ts';
import { type RefAssigner, ReferenceWindows } from './testing/reference.ts';
import { countTrigger, eventTimeTrigger, processingTimeTrigger } from './triggers.ts';

interface Ev {
  readonly k: string;
  readonly v: number;
}

const sum: AggregateFunction<Ev, number, number> = {
  createAccumulator: () => 0,
  add: (e, acc) => acc + e.v,
  getResult: (acc) => acc,
  merge: (a, b) => a + b,
};

type Row = { key: string; start: number; end: number; sum: number };

function sumOperator(assigner: WindowAssigner, options: WindowOptions<Ev> = {}, uid = 'win') {
  return windowOperator(
    assigner,
    options,
    aggregateWindows<string, Ev, number, number, Row>(sum, (s, ctx) => ({
      key: ctx.key,
      ...ctx.window,
      sum: s,
    })),
    uid,
  ) as KeyedProcessFunction<string, Ev, Row>;
}

const rows = (h: { output: { value: Row }[] }) =>
  h.output.map((r) => `${r.value.key} [${r.value.start},${r.value.end}) ${r.value.sum}`);

describe('windows: semantics Flink users expect', () => {
  test('tumbling event time: fires when the watermark reaches end - 1, result timestamp end - 1, state then empty', async () => {
    const h = await KeyedOperatorHarness.create(
      sumOperator(tumblingEventTime({ sizeMs: 10 })),
      (e: Ev) => e.k,
    );
    h.processElement({ k: 'a', v: 1 }, 3);
    h.processElement({ k: 'a', v: 2 }, 9);
    h.processElement({ k: 'a', v: 4 }, 10);
    h.advanceWatermark(8);
    assert.deepEqual(rows(h), []);
    h.advanceWatermark(9);
    assert.deepEqual(rows(h), ['a [0,10) 3']);
    assert.equal(h.output[0]!.timestamp, 9);
    assert.equal(h.stateEntries('slices'), 1, 'the window [10, 20) is still open');
    h.advanceWatermark(19);
    assert.deepEqual(rows(h), ['a [0,10) 3', 'a [10,20) 4']);
    assert.equal(h.stateEntries('slices'), 0);
    await h.close();
  });

  test('allowed lateness re-fires with the updated result; beyond it records go to the late side output', async () => {
    const late = outputTag<Ev>('late');
    const h = await KeyedOperatorHarness.create(
      sumOperator(tumblingEventTime({ sizeMs: 10 }), { allowedLatenessMs: 5, lateTag: late }),
      (e: Ev) => e.k,
    );
    h.processElement({ k: 'a', v: 1 }, 1);
    h.advanceWatermark(9);
    h.processElement({ k: 'a', v: 10 }, 2); // late, within lateness: re-fires at once
    h.advanceWatermark(13);
    h.processElement({ k: 'a', v: 100 }, 3); // still within (9 + 5 > 13)
    h.advanceWatermark(14); // cleanup time 9 + 5: the window is gone
    h.processElement({ k: 'a', v: 1000 }, 4);
    assert.deepEqual(rows(h), ['a [0,10) 1', 'a [0,10) 11', 'a [0,10) 111']);
    assert.deepEqual(
      h.sideOutputs.get('late')?.map((r) => [r.value, r.timestamp]),
      [[{ k: 'a', v: 1000 }, 4]],
    );
    assert.equal(h.stateEntries('slices'), 0);
    await h.close();
  });

  test('a record without a timestamp fails an event-time window with RECORD_TIMESTAMP_MISSING naming the operator', async () => {
    const h = await KeyedOperatorHarness.create(
      sumOperator(slidingEventTime({ sizeMs: 10, slideMs: 5 }), {}, 'clicks-per-user'),
      (e: Ev) => e.k,
      { uid: 'clicks-per-user' },
    );
    for (const ts of [undefined, Number.NaN]) {
      assert.throws(
        () => h.processElement({ k: 'a', v: 1 }, ts),
        (e: unknown) =>
          isStreamError(e, 'RECORD_TIMESTAMP_MISSING') && /'clicks-per-user'/.test((e as Error).message),
      );
    }
    await h.close();
  });

  test('sliding windows: each record counts in size/slide windows; out-of-order and duplicate records', async () => {
    const h = await KeyedOperatorHarness.create(
      sumOperator(slidingEventTime({ sizeMs: 30, slideMs: 10 })),
      (e: Ev) => e.k,
    );
    h.processElement({ k: 'a', v: 1 }, 25);
    h.processElement({ k: 'a', v: 2 }, 5); // out of order
    h.processElement({ k: 'a', v: 2 }, 5); // duplicate: counted twice, as any record
    h.advanceWatermark(Number.POSITIVE_INFINITY);
    assert.deepEqual(rows(h), ['a [-20,10) 4', 'a [-10,20) 4', 'a [0,30) 5', 'a [10,40) 1', 'a [20,50) 1']);
    await h.close();
  });

  test('session windows merge, also across an out-of-order record that bridges two sessions', async () => {
    const h = await KeyedOperatorHarness.create(sumOperator(sessionEventTime({ gapMs: 5 })), (e: Ev) => e.k);
    h.processElement({ k: 'a', v: 1 }, 0);
    h.processElement({ k: 'a', v: 2 }, 12);
    assert.equal(h.stateEntries('sessions'), 1);
    h.processElement({ k: 'a', v: 4 }, 6); // [6, 11) touches [0, 5)? no: 5 < 6; but overlaps [12,17)? 11 < 12: no
    h.processElement({ k: 'a', v: 8 }, 4); // [4, 9) overlaps [0, 5) and [6, 11): merges them
    h.processElement({ k: 'b', v: 16 }, 3);
    h.advanceWatermark(Number.POSITIVE_INFINITY);
    assert.deepEqual(rows(h).sort(), ['a [0,11) 13', 'a [12,17) 2', 'b [3,8) 16']);
    assert.equal(h.stateEntries('sessions'), 0);
    await h.close();
  });

  test('count trigger: fires every n records of a window, keeps the window until its cleanup', async () => {
    const h = await KeyedOperatorHarness.create(
      sumOperator(tumblingEventTime({ sizeMs: 100 }), { trigger: countTrigger(2) }),
      (e: Ev) => e.k,
    );
    for (const v of [1, 2, 4, 8, 16]) h.processElement({ k: 'a', v }, v);
    h.advanceWatermark(Number.POSITIVE_INFINITY);
    assert.deepEqual(rows(h), ['a [0,100) 3', 'a [0,100) 15']);
    assert.equal(h.stateEntries('counts'), 0);
    assert.equal(h.stateEntries('slices'), 0);
    await h.close();
  });

  test('reduce and process; the input records are never changed by a reduce that changes its first argument', async () => {
    const seen: Ev[] = [];
    const h = await KeyedOperatorHarness.create(
      windowOperator(
        tumblingEventTime({ sizeMs: 10 }),
        {},
        reduceWindows<string, { k: string; v: number }, string>(
          (a, b) => {
            (a as { v: number }).v += b.v;
            return a;
          },
          (r, ctx) => `${ctx.key}:${r.v}@${ctx.window.end}`,
        ),
        'r',
      ) as KeyedProcessFunction<string, Ev, string>,
      (e: Ev) => e.k,
    );
    for (let i = 1; i <= 3; i++) {
      const e = { k: 'a', v: i };
      seen.push(e);
      h.processElement(e, i);
    }
    h.advanceWatermark(100);
    assert.deepEqual(
      h.output.map((r) => r.value),
      ['a:6@10'],
    );
    assert.deepEqual(seen, [
      { k: 'a', v: 1 },
      { k: 'a', v: 2 },
      { k: 'a', v: 3 },
    ]);
    const p = await KeyedOperatorHarness.create(
      windowOperator(
        slidingEventTime({ sizeMs: 4, slideMs: 2 }),
        {},
        processWindows<string, Ev, string>((els, ctx, out) => {
          out.collect(`${ctx.key} ${ctx.window.start}: ${els.map((e) => e.v).join(',')}`);
          out.collect('explicit timestamp', 1234);
        }),
        'p',
      ) as KeyedProcessFunction<string, Ev, string>,
      (e: Ev) => e.k,
    );
    p.processElement({ k: 'x', v: 1 }, 1);
    p.processElement({ k: 'x', v: 2 }, 2);
    p.advanceWatermark(Number.POSITIVE_INFINITY);
    assert.deepEqual(
      p.output.map((r) => [r.value, r.timestamp]),
      [
        ['x -2: 1', 1],
        ['explicit timestamp', 1234],
        ['x 0: 1,2', 3],
        ['explicit timestamp', 1234],
        ['x 2: 2', 5],
        ['explicit timestamp', 1234],
      ],
    );
    await h.close();
    await p.close();
  });

  test('state stays bounded: 20 000 keys of sliding windows leave no entry, no timer once the watermark passes', async () => {
    const h = await KeyedOperatorHarness.create(
      sumOperator(slidingEventTime({ sizeMs: 60, slideMs: 10 }), { allowedLatenessMs: 30 }),
      (e: Ev) => e.k,
    );
    for (let i = 0; i < 20_000; i++) h.processElement({ k: `user-${i}`, v: 1 }, i % 100);
    assert.equal(h.stateEntries('slices'), 20_000);
    // The last window holding a record at 90..99 is [90, 150): cleanup at 149 + 30.
    h.advanceWatermark(149 + 30 - 1);
    assert.equal(h.stateEntries('slices'), 2_000, 'the keys of 90..99 are within their lateness');
    h.advanceWatermark(149 + 30);
    assert.equal(h.stateEntries('slices'), 0);
    assert.deepEqual((await h.snapshot()).operator.timers, { event: [], processing: [] });
    assert.equal(h.output.length, 20_000 * 6);
    await h.close();
  });
});

describe('windows: late records dropped are counted (kstate_late_records_dropped_total)', () => {
  const assigners: [string, WindowAssigner, WindowOptions<Ev>][] = [
    ['tumbling', tumblingEventTime({ sizeMs: 10 }), { allowedLatenessMs: 5 }],
    ['sliding, sliced', slidingEventTime({ sizeMs: 10, slideMs: 5 }), { allowedLatenessMs: 5 }],
    [
      'sliding, naive',
      slidingEventTime({ sizeMs: 10, slideMs: 5 }),
      { allowedLatenessMs: 5, assignment: 'naive' },
    ],
  ];
  for (const [name, assigner, options] of assigners) {
    test(`${name}: on time and within the allowed lateness are not counted; past it, each dropped record is`, async () => {
      const h = await KeyedOperatorHarness.create(sumOperator(assigner, options), (e: Ev) => e.k);
      h.processElement({ k: 'a', v: 1 }, 1);
      h.advanceWatermark(12);
      h.processElement({ k: 'a', v: 2 }, 13); // on time
      h.processElement({ k: 'a', v: 4 }, 8); // late, within the lateness of [0, 10): re-fires it
      assert.equal(h.lateRecordsDropped, 0);
      h.advanceWatermark(30); // every window holding 1 and 8 is past its cleanup time
      const fired = h.output.length;
      h.processElement({ k: 'a', v: 100 }, 8);
      h.processElement({ k: 'b', v: 100 }, 2);
      assert.equal(h.lateRecordsDropped, 2);
      assert.equal(h.output.length, fired, 'nothing fired for them');
      h.processElement({ k: 'a', v: 1 }, 31); // on time again
      assert.equal(h.lateRecordsDropped, 2);
      h.advanceWatermark(Number.POSITIVE_INFINITY);
      assert.ok(
        h.output.every((r) => r.value.sum < 100),
        'no result holds a dropped record',
      );
      await h.close();
    });
  }

  test('with a late side output, late records go there and are not counted as dropped', async () => {
    const late = outputTag<Ev>('late');
    const h = await KeyedOperatorHarness.create(
      sumOperator(tumblingEventTime({ sizeMs: 10 }), { lateTag: late }),
      (e: Ev) => e.k,
    );
    h.advanceWatermark(20);
    h.processElement({ k: 'a', v: 1 }, 3);
    assert.equal(h.sideOutputs.get('late')?.length, 1);
    assert.equal(h.lateRecordsDropped, 0);
    await h.close();
  });

  test('session windows: a record that merges with a live session is not late; one past its cleanup time is dropped and counted', async () => {
    const h = await KeyedOperatorHarness.create(
      sumOperator(sessionEventTime({ gapMs: 5 }), { allowedLatenessMs: 3 }),
      (e: Ev) => e.k,
    );
    h.processElement({ k: 'a', v: 1 }, 10); // session [10, 15), cleanup at 14 + 3
    h.advanceWatermark(16);
    h.processElement({ k: 'a', v: 2 }, 6); // [6, 11) merges with [10, 15): not late
    h.processElement({ k: 'a', v: 4 }, 12); // inside it: not late
    assert.equal(h.lateRecordsDropped, 0);
    h.processElement({ k: 'a', v: 8 }, 0); // [0, 5): merges with nothing, cleanup 4 + 3 <= 16
    assert.equal(h.lateRecordsDropped, 1);
    h.advanceWatermark(Number.POSITIVE_INFINITY);
    assert.deepEqual(
      rows(h),
      ['a [10,15) 1', 'a [6,15) 3', 'a [6,17) 7'],
      'the dropped record is in no result',
    );
    await h.close();
  });

  test('processing-time windows never count late records', async () => {
    const h = await KeyedOperatorHarness.create(
      sumOperator(tumblingProcessingTime({ sizeMs: 10 })),
      (e: Ev) => e.k,
    );
    h.setProcessingTime(100);
    h.advanceWatermark(1000);
    h.processElement({ k: 'a', v: 1 }, 1);
    assert.equal(h.lateRecordsDropped, 0);
    await h.close();
  });
});

describe('windows: processing time', () => {
  const opArb = fc.oneof(
    { weight: 3, arbitrary: fc.record({ k: fc.constantFrom('a', 'b'), v: fc.integer({ min: 1, max: 9 }) }) },
    fc.record({ advance: fc.integer({ min: 0, max: 8 }) }),
  );
  // Even clock values and odd window ends (end - 1): no record arrives in the very millisecond its window fires.
  const assignerArb = fc.oneof(
    fc
      .record({ slide: fc.integer({ min: 1, max: 6 }), mult: fc.integer({ min: 1, max: 4 }) })
      .map(({ slide, mult }): [WindowAssigner, RefAssigner] => [
        mult === 1
          ? tumblingProcessingTime({ sizeMs: 2 * slide })
          : slidingProcessingTime({ sizeMs: 2 * slide * mult, slideMs: 2 * slide }),
        { kind: 'fixed', size: 2 * slide * mult, slide: 2 * slide, offset: 0 },
      ]),
    fc
      .integer({ min: 1, max: 8 })
      .map((g): [WindowAssigner, RefAssigner] => [
        sessionProcessingTime({ gapMs: 2 * g + 1 }),
        { kind: 'session', gap: 2 * g + 1 },
      ]),
  );

  test('windows on the task clock equal the model (processing-time trigger and count trigger)', async () => {
    await fc.assert(
      fc.asyncProperty(
        assignerArb,
        fc.oneof(fc.constant(undefined), fc.integer({ min: 1, max: 3 })),
        fc.constantFrom<'sliced' | 'naive'>('sliced', 'naive'),
        fc.array(opArb, { maxLength: 60, size: 'large' }),
        async ([assigner, refAssigner], count, assignment, ops) => {
          const options: WindowOptions<Ev> = {
            ...(count ? { trigger: countTrigger(count) } : {}),
            ...(assigner.kind !== 'session' ? { assignment } : {}),
          };
          const clock = new ManualClock(0);
          const h = await KeyedOperatorHarness.create(sumOperator(assigner, options), (e: Ev) => e.k, {
            clock,
          });
          const ref = new ReferenceWindows<Ev>({
            assigner: refAssigner,
            lateness: 0,
            processing: true,
            ...(count ? { count } : {}),
          });
          let now = 0;
          for (const op of ops) {
            if ('advance' in op) {
              now += 2 * op.advance;
              h.setProcessingTime(now);
              ref.advance(now);
            } else {
              h.processElement(op, 1_000_000); // event timestamps are ignored
              ref.record(op.k, now, op);
            }
          }
          now += 1000;
          h.setProcessingTime(now);
          ref.advance(now);
          const want = ref.fired.map(
            (f) => `${f.key} [${f.start},${f.end}) ${f.elements.reduce((s, e) => s + e.v, 0)}`,
          );
          assert.deepEqual(rows(h).sort(), want.sort());
          for (const r of h.output) assert.equal(r.timestamp, r.value.end - 1);
          for (const s of ['slices', 'windows', 'counts', 'sessions']) assert.equal(h.stateEntries(s), 0);
          await h.close();
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('windows: configuration errors name the operator and the fix', () => {
  const cases: [string, () => unknown, RegExp][] = [
    ['size 0', () => tumblingEventTime({ sizeMs: 0 }), /sizeMs must be a positive integer/],
    ['slide > size', () => slidingEventTime({ sizeMs: 5, slideMs: 10 }), /must not exceed sizeMs/],
    ['offset >= slide', () => slidingEventTime({ sizeMs: 10, slideMs: 5, offsetMs: 5 }), /offsetMs/],
    ['gap', () => sessionEventTime({ gapMs: -1 }), /gapMs/],
    ['count 0', () => countTrigger(0), /positive integer/],
    [
      'lateness in processing time',
      () => sumOperator(tumblingProcessingTime({ sizeMs: 10 }), { allowedLatenessMs: 5 }, 'q'),
      /'q'.*event-time windows only/,
    ],
    [
      'event-time trigger on processing-time windows',
      () => sumOperator(tumblingProcessingTime({ sizeMs: 10 }), { trigger: eventTimeTrigger() }, 'q'),
      /'q'.*event-time trigger cannot fire processing-time windows/,
    ],
    [
      'processing-time trigger on event-time windows',
      () => sumOperator(tumblingEventTime({ sizeMs: 10 }), { trigger: processingTimeTrigger() }, 'q'),
      /processing-time trigger cannot fire event-time windows/,
    ],
    [
      'negative lateness',
      () => sumOperator(tumblingEventTime({ sizeMs: 10 }), { allowedLatenessMs: -1 }, 'q'),
      /allowedLatenessMs must be an integer >= 0/,
    ],
    [
      'assignment on sessions',
      () => sumOperator(sessionEventTime({ gapMs: 10 }), { assignment: 'naive' }, 'q'),
      /session windows do not overlap/,
    ],
    [
      'aggregate without merge on sliced sliding windows',
      () =>
        windowOperator(
          slidingEventTime({ sizeMs: 10, slideMs: 5 }),
          {},
          aggregateWindows(
            { createAccumulator: () => 0, add: (_: Ev, a: number) => a + 1, getResult: (a) => a },
            undefined,
          ),
          'q',
        ),
      /'q'.*needs merge\(a, b\).*assignment: 'naive'/,
    ],
    ['not an assigner', () => sumOperator({ kind: 'hopping' } as never, {}, 'q'), /not a window assigner/],
  ];
  for (const [name, fn, message] of cases) {
    test(name, () => {
      assert.throws(
        fn,
        (e: unknown) => isStreamError(e, 'CONFIG_INVALID') && message.test((e as Error).message),
      );
    });
  }

  test('without merge, tumbling windows and naive sliding windows work', async () => {
    // An aggregate function without merge(a, b): windows that never merge accumulators need none.
    const count: AggregateFunction<Ev, number, number> = {
      createAccumulator: () => 0,
      add: (_, a) => a + 1,
      getResult: (a) => a,
    };
    const counting = (assigner: WindowAssigner, options: WindowOptions<Ev>) =>
      windowOperator(
        assigner,
        options,
        aggregateWindows<string, Ev, number, number, Row>(count, (n, ctx) => ({
          key: ctx.key,
          ...ctx.window,
          sum: n,
        })),
        'q',
      ) as KeyedProcessFunction<string, Ev, Row>;
    const cases: [WindowAssigner, WindowOptions<Ev>, string[]][] = [
      [tumblingEventTime({ sizeMs: 10 }), {}, ['a [0,10) 2', 'a [10,20) 1', 'b [0,10) 1']],
      [
        slidingEventTime({ sizeMs: 10, slideMs: 5 }),
        { assignment: 'naive' },
        ['a [-5,5) 2', 'a [0,10) 2', 'a [10,20) 1', 'a [5,15) 1', 'b [0,10) 1', 'b [5,15) 1'],
      ],
    ];
    for (const [assigner, options, want] of cases) {
      const h = await KeyedOperatorHarness.create(counting(assigner, options), (e: Ev) => e.k);
      for (const [k, t] of [
        ['a', 1],
        ['a', 2],
        ['b', 6],
        ['a', 11],
      ] as const)
        h.processElement({ k, v: 0 }, t);
      h.advanceWatermark(100);
      assert.deepEqual(rows(h).sort(), want, `${assigner.kind} ${options.assignment ?? ''}`);
      for (const r of h.output) assert.equal(r.timestamp, r.value.end - 1);
      for (const s of ['slices', 'windows'])
        assert.equal(h.stateEntries(s), 0, `${s} left after the windows fired`);
      await h.close();
    }
  });

  test('a window operator without uid is refused when the job is built', () => {
    const job = new StreamJob('no-uid');
    const s = job.source(new TestSource<Ev>('s', [[]])).keyBy((e) => e.k);
    assert.throws(
      () => s.window(tumblingEventTime({ sizeMs: 10 })).aggregate(sum, {} as never),
      (e: unknown) => isStreamError(e, 'GRAPH_INVALID') && /needs \{ uid \}/.test((e as Error).message),
    );
  });
});

describe('windows in a job (DataStream API), with failures and restarts', () => {
  for (const backend of ['heap', 'level'] as const) {
    test(`sliding counts and sessions equal a batch recomputation despite injected failures (${backend})`, async () => {
      const partitions = 2;
      const records: { value: Ev & { n: number }; timestamp: number }[] = [];
      // 4 000 clicks of 40 users, up to 300 ms out of order (the watermark allows 400).
      for (let n = 0; n < 4000; n++) {
        const ts = n * 5 + ((n * 7919) % 300);
        records.push({ value: { k: `u${n % 40}`, v: 1 + (n % 3), n }, timestamp: ts });
      }
      const faults = plannedFaults({ seed: 7, probability: { user: 0.004 }, max: 12 });
      const source = TestSource.byKey('clicks', records, (e) => e.k, partitions);
      const job = new StreamJob(`windows-${backend}`);
      const keyed = job.source(source, { watermarks: { maxOutOfOrdernessMs: 400 } }).keyBy((e) => e.k);
      const counting: AggregateFunction<Ev, number, number> = {
        ...sum,
        add: (e, acc) => {
          faults.maybe('add');
          return acc + e.v;
        },
      };
      const slidingSink = new CollectingSink<string>('sliding-out');
      keyed
        .window(slidingEventTime({ sizeMs: 1000, slideMs: 250 }))
        .aggregate(counting, (s, w) => `${w.key} ${w.window.start} ${s}`, { uid: 'sliding-sum' })
        .sinkTo(slidingSink);
      const sessionSink = new CollectingSink<string>('sessions-out');
      keyed
        .window(sessionEventTime({ gapMs: 190 }))
        .process<string>(
          (els, w, out) => out.collect(`${w.key} ${w.window.start}-${w.window.end} ${els.length}`),
          { uid: 'sessions' },
        )
        .sinkTo(sessionSink);
      const running = runJob(job.build(), {
        storage: new MemoryCheckpointStorage(),
        checkpoints: { intervalMs: 10 },
        restart: { kind: 'fixed-delay', attempts: 1000, delayMs: 0 },
        ...(backend === 'level' ? { backend: levelBackend(temporaryDirectory()) } : {}),
      });
      await running.done;
      assert.ok(faults.total() > 0, 'some failures were injected');

      // Batch recomputation.
      const sliding = new Map<string, number>();
      const byKey = new Map<string, number[]>();
      for (const r of records) {
        for (let s = r.timestamp - (r.timestamp % 250); s > r.timestamp - 1000; s -= 250) {
          const id = `${r.value.k} ${s}`;
          sliding.set(id, (sliding.get(id) ?? 0) + r.value.v);
        }
        byKey.set(r.value.k, [...(byKey.get(r.value.k) ?? []), r.timestamp]);
      }
      const sessions: string[] = [];
      for (const [k, tss] of byKey) {
        tss.sort((a, b) => a - b);
        let start = tss[0]!;
        let end = start + 190;
        let n = 0;
        for (const t of tss) {
          if (t > end) {
            sessions.push(`${k} ${start}-${end} ${n}`);
            start = t;
            n = 0;
          }
          end = Math.max(end, t + 190);
          n++;
        }
        sessions.push(`${k} ${start}-${end} ${n}`);
      }
      assert.deepEqual(
        [...slidingSink.output.committed].sort(),
        [...sliding].map(([id, s]) => `${id} ${s}`).sort(),
      );
      assert.deepEqual([...sessionSink.output.committed].sort(), sessions.sort());
    });
  }
});
