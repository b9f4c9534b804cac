import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PollingSourceReader, PullSourceReader, SourceBatch } from '../../api/source.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../index.ts';
import { ManualClock } from '../../testing/clock.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { BARRIER_BUDGET, type ChannelElement, InputChannel } from '../channel.ts';
import { runJob } from '../job.ts';
import { until } from './helpers.ts';

function channel(capacity: number, wake: () => void = () => {}): InputChannel {
  return new InputChannel({ index: 0, sourceUid: 's', partition: 0, capacity, position: 0, wake });
}

/** Everything queued now, as the task takes it. */
function drain(c: InputChannel): string[] {
  const out: string[] = [];
  while (c.length > 0) {
    const e = c.take() as ChannelElement;
    out.push(e.kind === 'record' ? String(e.value) : e.kind === 'barrier' ? `barrier@${e.position}` : 'end');
  }
  return out;
}

/** A pull reader over 0..n-1 that always has data now; records each `max` it was asked for. */
function counting(n: number): PullSourceReader<number> & { asked: number[] } {
  let next = 0;
  const asked: number[] = [];
  return {
    asked,
    pollNext(max) {
      asked.push(max);
      if (next >= n) return 'end';
      const records = [];
      for (let i = 0; i < max && next < n; i++) records.push({ value: next++ });
      return { records, position: next };
    },
    onAvailable(l) {
      l();
    },
    async close() {},
  };
}

describe('InputChannel', () => {
  test('takes the reader up to its capacity, and again once the task drained it to half', () => {
    const r = counting(100);
    const c = channel(10);
    c.attach(r, 4);
    assert.equal(c.length, 10);
    assert.deepEqual(r.asked, [4, 4, 2], 'at most maxBatch and never beyond the room');
    for (let i = 0; i < 4; i++) c.take();
    assert.equal(c.length, 6, 'above half: not asked');
    c.take();
    assert.equal(c.length, 10, 'at half: filled again');
    assert.equal(c.position, 15);
  });

  test('takeRecords hands out a run of records up to a barrier, counts a record whose handler threw as taken, and refills at half', () => {
    const r = counting(30);
    const c = channel(10);
    c.attach(r, 10);
    c.insertBarrier(1); // after the 10 queued records
    const seen: number[] = [];
    assert.equal(
      c.takeRecords(4, (rec) => seen.push(rec.value as number)),
      4,
    );
    assert.deepEqual(seen, [0, 1, 2, 3]);
    assert.equal(c.length, 7, '6 records and the barrier: above half, not refilled');
    assert.throws(() =>
      c.takeRecords(64, (rec) => {
        if (rec.value === 6) throw new Error('record 6');
        seen.push(rec.value as number);
      }),
    );
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5], 'record 6 was handed out and counts as taken');
    assert.equal(
      c.takeRecords(64, (rec) => seen.push(rec.value as number)),
      3,
      'up to the barrier',
    );
    assert.equal(
      c.takeRecords(64, () => assert.fail('a barrier is no record')),
      0,
    );
    assert.deepEqual(drain(c).slice(0, 2), ['barrier@10', '10'], 'refilled at half, behind the barrier');
  });

  test('a barrier carries the position after the records queued before it', () => {
    const c = channel(5);
    c.attach(counting(7), 10);
    c.insertBarrier(1);
    assert.deepEqual(drain(c), ['0', '1', '2', '3', '4', 'barrier@5', '5', '6', 'end']);
  });

  test('a barrier goes in at the last batch boundary within BARRIER_BUDGET records of the head, not behind a full channel; barriers keep their order', () => {
    const c = channel(2000);
    c.attach(counting(5000), 100); // batches of 100: 0-99, 100-199 ... 1900-1999
    c.take(); // 0: the first batch is being taken
    c.insertBarrier(1);
    const budget = Math.floor((1 + BARRIER_BUDGET) / 100) * 100; // the last boundary within the budget
    c.insertBarrier(2); // after barrier 1: within the budget from the head, so at the same boundary
    const seen = drain(c);
    const at = seen.indexOf(`barrier@${budget}`);
    assert.equal(at, budget - 1, `barrier 1 after record ${budget - 1}: ${seen.slice(at - 2, at + 3)}`);
    assert.equal(seen[at + 1], `barrier@${budget}`, 'barrier 2 right behind barrier 1');
    assert.equal(seen.filter((e) => e.startsWith('barrier')).length, 2);
    // Few records queued: the barrier goes behind all of them, before a queued end.
    const d = channel(8);
    d.attach(counting(8), 4);
    d.take();
    d.insertBarrier(3);
    assert.deepEqual(drain(d), ['1', '2', '3', '4', '5', '6', '7', 'barrier@8', 'end']);
  });

  test('a reader with nothing is not asked again until it signals; a signal from inside pollNext is taken in the same step', () => {
    let data: number[] = [];
    let listener: (() => void) | undefined;
    let polls = 0;
    const reader: PullSourceReader<number> = {
      pollNext(max) {
        polls++;
        if (data.length === 0) return undefined;
        const records = data.splice(0, max).map((value) => ({ value }));
        return { records, position: records.at(-1)!.value + 1 };
      },
      onAvailable(l) {
        listener = l;
      },
      async close() {},
    };
    let wakes = 0;
    const c = channel(100, () => wakes++);
    c.attach(reader, 10);
    assert.equal(polls, 1);
    assert.ok(listener, 'waits for the signal');
    c.take();
    assert.equal(polls, 1, 'an empty channel does not ask a reader that said it has nothing');
    data = [7, 8, 9];
    const l = listener!;
    listener = undefined;
    l();
    assert.deepEqual(drain(c), ['7', '8', '9']);
    assert.equal(c.position, 10);
    assert.equal(wakes, 1, 'records queued outside the loop wake the task');
  });

  test('a reader that signals at once in onAvailable does not loop: asked again in the same fill', () => {
    const batches: (SourceBatch<number> | 'end' | undefined)[] = [
      undefined,
      { records: [{ value: 1 }], position: 2 },
      'end',
    ];
    let i = 0;
    const reader: PullSourceReader<number> = {
      pollNext: () => batches[i++],
      onAvailable: (l) => l(),
      async close() {},
    };
    const c = channel(10);
    c.attach(reader, 10);
    assert.deepEqual(drain(c), ['1', 'end']);
  });

  test('an empty batch moves the position and reports idleness; a second one in a row waits for the signal', () => {
    let listened = 0;
    const reader: PullSourceReader<number> = {
      pollNext: () => ({ records: [], position: 3, idle: true }),
      onAvailable: () => {
        listened++;
      },
      async close() {},
    };
    const c = channel(10);
    c.attach(reader, 10);
    assert.equal(c.position, 3);
    assert.equal(c.sourceIdle, true);
    assert.equal(listened, 1);
  });

  test("unaligned channel state: the records before a barrier, origins in the reader's stored form", () => {
    const reader: PullSourceReader<number> = {
      pollNext: (() => {
        let done = false;
        return () => {
          if (done) return undefined;
          done = true;
          return {
            records: [1, 2].map((value) => ({ value, timestamp: value, origin: { raw: value } })),
            position: 2,
          };
        };
      })(),
      onAvailable() {},
      storedOrigin: (o) => `stored ${(o as { raw: number }).raw}`,
      async close() {},
    };
    const c = channel(10);
    c.attach(reader, 10);
    c.insertBarrier(4);
    assert.deepEqual(c.recordsBefore(4), [
      { value: 1, timestamp: 1, origin: 'stored 1' },
      { value: 2, timestamp: 2, origin: 'stored 2' },
    ]);
  });

  test('a reader that throws fails the channel (the task fails with it)', () => {
    const c = channel(10);
    c.attach(
      {
        pollNext() {
          throw new Error('broken');
        },
        onAvailable() {},
        async close() {},
      },
      10,
    );
    assert.equal((c.failure as Error).message, 'broken');
  });

  describe('a reader of the earlier polling contract (poll(max), adapted)', () => {
    test('records, an empty batch, the end and the positions come through; poll is asked for no more than the room', async () => {
      const asked: number[] = [];
      const polls: ((b: SourceBatch<number> | 'end') => void)[] = [];
      const reader: PollingSourceReader<number> = {
        poll(max) {
          asked.push(max);
          return new Promise((resolve) => polls.push(resolve));
        },
        async close() {},
      };
      let wakes = 0;
      const c = channel(3, () => wakes++);
      c.attach(reader, 8);
      const settle = () => new Promise<void>((r) => setImmediate(r));
      assert.deepEqual(asked, [3], 'one poll, for the room');
      polls.shift()!({ records: [{ value: 1 }, { value: 2 }], position: 2 });
      await settle();
      assert.equal(c.length, 2);
      assert.equal(c.position, 2);
      assert.deepEqual(asked, [3, 1], 'the next poll asks for the room left');
      polls.shift()!({ records: [], position: 2, idle: true });
      await settle();
      assert.equal(c.sourceIdle, true, 'the empty idle batch is reported');
      assert.equal(asked.length, 3, 'and the reader is polled again at once, as before');
      assert.deepEqual(drain(c), ['1', '2']);
      polls.shift()!({ records: [{ value: 3 }], position: 3 });
      await settle();
      assert.equal(c.sourceIdle, false);
      polls.shift()!('end');
      await settle();
      assert.deepEqual(drain(c), ['3', 'end']);
      assert.equal(c.position, 3);
      assert.ok(asked.every((m) => m >= 1 && m <= 3));
      assert.ok(wakes >= 3);
    });

    test('a rejected poll fails the channel', async () => {
      const c = channel(10);
      c.attach({ poll: () => Promise.reject(new Error('down')), async close() {} }, 10);
      await until(() => c.failure !== undefined, 5_000, 'the failure');
      assert.equal((c.failure as Error).message, 'down');
    });
  });
});

describe('an idle source in a running job', () => {
  test('keeps no timer: its channel waits for the reader to signal (no 5 ms pump sleep, no reader wait)', async () => {
    const clock = new ManualClock(0);
    const src = new TestSource<number>('n', [[{ value: 1 }], [{ value: 2 }]], { bounded: false });
    const sink = new CollectingSink<number>('out');
    const job = new StreamJob('idle-timers');
    job.source(src).sinkTo(sink);
    const running = runJob(job.build(), {
      storage: new MemoryCheckpointStorage(),
      clock,
      checkpoints: { intervalMs: 60_000 },
    });
    try {
      await until(() => sink.written === 2, 10_000, 'both records written');
      // Sample the timers over many turns of the event loop (no sleep: setImmediate only).
      let turnsWithTimer = 0;
      for (let i = 0; i < 300; i++) {
        await new Promise<void>((r) => setImmediate(r));
        if (process.getActiveResourcesInfo().includes('Timeout')) turnsWithTimer++;
      }
      assert.equal(turnsWithTimer, 0, `a timer was pending in ${turnsWithTimer} of 300 turns`);
      // And it still takes what comes.
      src.append(1, [{ value: 3 }]);
      await until(() => sink.written === 3, 10_000, 'the appended record');
    } finally {
      await running.stop();
    }
  });
});
