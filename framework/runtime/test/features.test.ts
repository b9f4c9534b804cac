import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { listState, valueState } from '../../api/descriptors.ts';
import type {
  InitContext,
  KeyedBroadcastProcessFunction,
  KeyedProcessFunction,
  ProcessFunction,
} from '../../api/functions.ts';
import { outputTag } from '../../api/functions.ts';
import type { ListState } from '../../api/state.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../datastream/index.ts';
import { ManualClock } from '../../testing/clock.ts';
import { KeyedOperatorHarness } from '../../testing/harness.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';
import { sorted, turn, until } from './helpers.ts';

interface Ev {
  readonly k: string;
  readonly v: number;
}

describe('broadcast state', () => {
  test('rules broadcast to every task filter a keyed stream; broadcast state is checkpointed', async () => {
    const events = Array.from({ length: 300 }, (_, i) => ({ value: { k: `k${i % 7}`, v: i }, timestamp: i }));
    const job = new StreamJob('bcast');
    const rules = job
      .source(new TestSource<number>('rules', [[{ value: 3 }], [{ value: 5 }]]))
      .broadcast('divisors');
    const sink = new CollectingSink<string>('out');
    // Each task sees every rule (both partitions of the broadcast source).
    let rulesTaken = 0;
    const fn: KeyedBroadcastProcessFunction<string, Ev, number, string> = {
      processElement(e, ctx, out) {
        const divisors = ctx
          .broadcastState<number, boolean>('divisors')
          .entries()
          .map(([d]) => d);
        if (divisors.length === 2 && divisors.some((d) => e.v % d === 0)) out.collect(`${e.k}:${e.v}`);
      },
      processBroadcastElement(d, ctx) {
        ctx.broadcastState<number, boolean>('divisors').put(d, true);
        rulesTaken++;
      },
    };
    // Events are held back until the rules arrived (a rule set is loaded before events flow).
    const src = TestSource.byKey('events', events, (e) => e.k, 2);
    job
      .source(src)
      .keyBy((e) => e.k)
      .connect(rules)
      .process(fn, { uid: 'filter' })
      .sinkTo(sink);
    const running = runJob(job.build(), { storage: new MemoryCheckpointStorage() });
    running.hold('events', true);
    // Both rules reached both tasks (one per partition of the events).
    await until(() => rulesTaken === 4, 5000, 'both rules in both tasks');
    running.hold('events', false);
    await running.done;
    const expected = events
      .filter((e) => e.value.v % 3 === 0 || e.value.v % 5 === 0)
      .map((e) => `${e.value.k}:${e.value.v}`);
    assert.deepEqual(sorted(sink.output.committed), sorted(expected));
  });
});

describe('side outputs, processing time, operator and raw state', () => {
  test('late records go to a side output; processing-time timers fire on the manual clock', async () => {
    const late = outputTag<number>('late');
    const clock = new ManualClock(1_000);
    const job = new StreamJob('side');
    const src = new TestSource<number>(
      'n',
      [
        [
          { value: 1, timestamp: 100 },
          { value: 2, timestamp: 5_000 },
        ],
      ],
      { bounded: false },
    );
    const fn: KeyedProcessFunction<string, number, string> = {
      processElement(v, ctx, out) {
        if (ctx.timestamp! <= ctx.currentWatermark()) ctx.output(late, v);
        else out.collect(`on-time ${v}`);
        ctx.timerService.registerProcessingTimeTimer(ctx.currentProcessingTime() + 500);
      },
      onTimer(ts, ctx, out) {
        out.collect(`${ctx.timeDomain} timer ${ts}`);
      },
    };
    const main = job
      .source(src, { watermarks: { maxOutOfOrdernessMs: 0 } })
      .keyBy(() => 'one')
      .process(fn, { uid: 'p' });
    const out = new CollectingSink<string>('main');
    const lateSink = new CollectingSink<number>('late');
    main.sinkTo(out);
    main.getSideOutput(late).sinkTo(lateSink);
    const running = runJob(job.build(), {
      storage: new MemoryCheckpointStorage(),
      clock,
      checkpoints: { intervalMs: 100 },
    });
    try {
      await until(() => out.written === 2, 2000, 'two records');
      // The watermark is now 4999: a record at 200 is late.
      src.append(0, [{ value: 3, timestamp: 200 }]);
      await until(() => lateSink.written === 1, 2000, 'the late record');
      clock.advance(600);
      clock.advance(200); // a checkpoint commits the timer output
      await until(
        () => out.output.committed.includes('processing timer 1500'),
        2000,
        'processing timer output committed',
      );
      assert.deepEqual(sorted(out.output.committed), ['on-time 1', 'on-time 2', 'processing timer 1500']);
      assert.deepEqual(lateSink.output.committed, [3]);
    } finally {
      await running.stop();
    }
  });

  test('operator list state and raw state survive a failure and restore', async () => {
    const seen: number[] = [];
    let failOnce = true;
    class Counter implements ProcessFunction<number, string> {
      state!: ListState<number>;
      rawCount = 0;
      initializeState(ctx: InitContext) {
        this.state = ctx.operatorState.getListState<number>('count');
      }
      snapshotRawState() {
        return new TextEncoder().encode(String(this.rawCount));
      }
      restoreRawState(bytes: Uint8Array) {
        this.rawCount = Number(new TextDecoder().decode(bytes));
      }
      processElement(v: number, _ctx: unknown, out: { collect(s: string): void }) {
        if (v === 150 && failOnce) {
          failOnce = false;
          throw new Error('once');
        }
        const n = (this.state.get()[0] ?? 0) + 1;
        this.state.update([n]);
        this.rawCount++;
        seen.push(v);
        out.collect(`${v}:${n}:${this.rawCount}`);
      }
    }
    const job = new StreamJob('opstate');
    const sink = new CollectingSink<string>('out');
    const src = new TestSource<number>('n', [Array.from({ length: 300 }, (_, i) => ({ value: i }))]);
    src.beforePoll = () => new Promise((r) => setImmediate(r));
    job.source(src).process(new Counter(), { uid: 'count' }).sinkTo(sink);
    let failures = 0;
    await runJob(job.build(), {
      storage: new MemoryCheckpointStorage(),
      listener: { taskFailed: () => failures++ },
      pollBatch: 10,
      checkpoints: { intervalMs: 1 },
      restart: { kind: 'fixed-delay', attempts: 1, delayMs: 0 },
    }).done;
    assert.deepEqual(
      sink.output.committed,
      Array.from({ length: 300 }, (_, i) => `${i}:${i + 1}:${i + 1}`),
    );
    assert.equal(failures, 1, 'the task should have failed once and been restored');
    assert.ok(seen.length >= 300);
  });

  test('at-least-once mode completes checkpoints without blocking and loses nothing', async () => {
    const job = new StreamJob('alo');
    const sink = new CollectingSink<number>('out');
    const a = new TestSource<number>('a', [Array.from({ length: 500 }, (_, i) => ({ value: i }))]);
    const b = new TestSource<number>('b', [Array.from({ length: 500 }, (_, i) => ({ value: 1000 + i }))]);
    job.source(a).union(job.source(b)).sinkTo(sink);
    let completed = 0;
    await runJob(job.build(), {
      storage: new MemoryCheckpointStorage(),
      pollBatch: 8,
      checkpoints: { intervalMs: 1, guarantee: 'at-least-once' },
      listener: { checkpointCompleted: () => completed++ },
    }).done;
    assert.equal(new Set(sink.output.committed).size, 1000);
    assert.ok(completed > 0);
  });
});

describe('operator harness', () => {
  test('snapshot, new instance, restore, continue', async () => {
    const fn = (): KeyedProcessFunction<string, Ev, string> => ({
      processElement(e, ctx, out) {
        const s = ctx.getState(valueState<number>('sum'));
        s.update((s.value() ?? 0) + e.v);
        ctx.getListState(listState<number>('all')).add(e.v);
        ctx.timerService.registerEventTimeTimer(100);
        out.collect(`${e.k}=${s.value()}`);
      },
      onTimer(ts, ctx, out) {
        out.collect(`timer ${ctx.key}@${ts} ${ctx.getListState(listState<number>('all')).get().join(',')}`);
      },
    });
    const h1 = await KeyedOperatorHarness.create(fn(), (e: Ev) => e.k);
    h1.processElement({ k: 'a', v: 1 }, 10);
    h1.processElement({ k: 'b', v: 2 }, 20);
    const snap = await h1.snapshot();
    h1.processElement({ k: 'a', v: 100 }, 30); // after the snapshot: must not be in it
    const h2 = await KeyedOperatorHarness.create(fn(), (e: Ev) => e.k, { restore: snap });
    h2.processElement({ k: 'a', v: 5 }, 40);
    h2.advanceWatermark(100);
    assert.deepEqual(
      h2.output.map((r) => r.value),
      ['a=6', 'timer a@100 1,5', 'timer b@100 2'],
    );
  });
});

describe('watermarks and idle inputs', () => {
  test('an idle partition does not hold the watermark back; without idleness event time would stall', async () => {
    for (const idleTimeoutMs of [50, undefined]) {
      const clock = new ManualClock(0);
      const job = new StreamJob(`idle-${idleTimeoutMs}`);
      // Two sources in one task: `busy` has data, `quiet` never has any and never ends.
      const busy = new TestSource<number>(
        'busy',
        [[1, 2, 3].map((i) => ({ value: i, timestamp: i * 1000 }))],
        { bounded: false },
      );
      const quiet = new TestSource<number>('quiet', [[]], { bounded: false });
      const fn: KeyedProcessFunction<string, number, string> = {
        processElement(_v, ctx) {
          ctx.timerService.registerEventTimeTimer(ctx.timestamp! + 500);
        },
        onTimer(ts, _ctx, out) {
          out.collect(`fired ${ts}`);
        },
      };
      const sink = new CollectingSink<string>('out');
      job
        .source(busy, { watermarks: { idleTimeoutMs } })
        .union(job.source(quiet, { watermarks: { idleTimeoutMs } }))
        .keyBy(() => 'k')
        .process(fn, { uid: 'timers' })
        .sinkTo(sink);
      const completed: number[] = [];
      const running = runJob(job.build(), {
        storage: new MemoryCheckpointStorage(),
        clock,
        // A checkpoint every interval, idle or not: each one shows that the task ran at that time.
        checkpoints: { intervalMs: 10, whenIdle: 'checkpoint' },
        listener: { checkpointCompleted: (s) => completed.push(s.checkpointId) },
      });
      /** Move the clock, then wait until the task completed a checkpoint triggered at the new time. */
      const advance = async (ms: number) => {
        const before = completed.length;
        clock.advance(ms);
        await until(() => completed.length > before, 2000, `a checkpoint after ${ms} ms more`);
      };
      try {
        await until(() => running.tasks()[0]?.recordsIn === 3, 2000, 'the records of `busy`');
        await advance(100); // past the idle timeout of `quiet`
        await advance(20); // a checkpoint commits what fired
        if (idleTimeoutMs === undefined)
          assert.equal(sink.written, 0, 'timers fired although an input without data holds event time');
        else {
          await until(() => sink.output.committed.length >= 2, 2000, 'timers to fire and commit');
          // Watermark = 2999 (highest 3000 - 0 - 1): the timers at 1500 and 2500 fired, 3500 not yet.
          assert.deepEqual(sorted(sink.output.committed), ['fired 1500', 'fired 2500']);
        }
      } finally {
        await running.stop();
      }
    }
  });
});

describe('idle tasks', () => {
  /** A keyed count over an unbounded source; returns what the test drives. */
  function idleJob(whenIdle: 'skip' | 'checkpoint') {
    const clock = new ManualClock(0);
    const job = new StreamJob(`idle-checkpoints-${whenIdle}`);
    const src = new TestSource<number>('n', [[{ value: 1 }]], { bounded: false });
    const out = new CollectingSink<string>('out');
    job
      .source(src)
      .keyBy(() => 'one')
      .process(
        {
          processElement(v: number, _ctx: unknown, o: { collect(s: string): void }) {
            o.collect(`got ${v}`);
          },
        },
        { uid: 'p' },
      )
      .sinkTo(out);
    const completed: number[] = [];
    const running = runJob(job.build(), {
      storage: new MemoryCheckpointStorage(),
      clock,
      checkpoints: { intervalMs: 100, whenIdle },
      listener: { checkpointCompleted: (s) => completed.push(s.checkpointId) },
    });
    return { clock, src, out, completed, running };
  }

  /** Advance the clock an interval at a time, letting the task run between steps (event-loop turns). */
  async function intervals(clock: ManualClock, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      clock.advance(100);
      for (let t = 0; t < 20; t++) await turn();
    }
  }

  test('skip (default): after one checkpoint with nothing new, no more until a record arrives', async () => {
    const { clock, src, out, completed, running } = idleJob('skip');
    try {
      await until(() => out.written === 1, 2000, 'the first record');
      await intervals(clock, 3);
      await until(() => completed.length >= 1, 2000, 'the first checkpoint');
      await intervals(clock, 3);
      const settled = completed.length;
      await intervals(clock, 20);
      assert.equal(completed.length, settled, 'checkpoints while nothing happened');
      src.append(0, [{ value: 2 }]);
      await until(() => out.written === 2, 2000, 'the second record');
      for (let i = 0; i < 50 && completed.length === settled; i++) await intervals(clock, 1);
      assert.equal(completed.length, settled + 1, 'one checkpoint for the new record');
      await until(() => out.output.committed.includes('got 2'), 2000, 'the second record committed');
    } finally {
      await running.stop();
    }
  });

  test('checkpoint: every interval, as Flink does', async () => {
    const { clock, out, completed, running } = idleJob('checkpoint');
    try {
      await until(() => out.written === 1, 2000, 'the first record');
      for (let i = 0; i < 100 && completed.length < 10; i++) await intervals(clock, 1);
      assert.ok(completed.length >= 10, `${completed.length} checkpoints in 100 idle intervals`);
    } finally {
      await running.stop();
    }
  });
});
