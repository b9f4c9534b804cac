import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KeyedProcessFunction } from '../../api/functions.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../datastream/index.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';
import type { TaskPayload } from '../snapshot-io.ts';
import { sorted, until } from './helpers.ts';

/** Per record, an event-time timer 500 ms after it; a fired timer emits its time. */
const timers: KeyedProcessFunction<string, number, string> = {
  processElement(_v, ctx) {
    ctx.timerService.registerEventTimeTimer(ctx.timestamp! + 500);
  },
  onTimer(ts, _ctx, out) {
    out.collect(`fired ${ts}`);
  },
};

function timerJob(source: TestSource<number>, sink: CollectingSink<string>) {
  const job = new StreamJob('event-time-restore');
  job
    .source(source)
    .keyBy(() => 'k')
    .process(timers, { uid: 'timers' })
    .sinkTo(sink);
  return job.build();
}

describe('event time across a restore', () => {
  test('a checkpoint taken before the watermark caught up with its records restores that event time: the timers due fire after the restore, with no new record', async () => {
    const storage = new MemoryCheckpointStorage();
    const records = [1000, 2000, 9000].map((t) => ({ value: t, timestamp: t }));

    // Run 1: the three records and a savepoint's barrier queued in the same step, so the task takes
    // the records and the barrier in one round: the snapshot comes before the watermark moved.
    const source1 = new TestSource<number>('in', [[]], { bounded: false });
    const sink1 = new CollectingSink<string>('out');
    let restored = false;
    const run1 = runJob(timerJob(source1, sink1), {
      storage,
      checkpoints: { intervalMs: 0 },
      listener: { restored: () => (restored = true) },
    });
    await until(() => restored, 5000, 'the task to open');
    source1.append(0, records);
    const [meta] = await run1.savepoint('cut');
    await run1.stop();
    const payload = meta!.payload as TaskPayload;
    // The precondition this test is about: the savepoint holds every record and none of the timers'
    // output (the watermark had not moved when it was taken).
    assert.deepEqual(
      payload.channels.map((c) => c.position),
      [3],
      'the savepoint should be taken after the three records',
    );
    assert.deepEqual(sink1.output.committed, [], 'the savepoint should precede the timers: the test is void');
    assert.equal(payload.channels[0]!.eventTime, 9000);

    // Run 2, from the savepoint, and no record more: event time is 9000 - 1 again, so the timers at
    // 1500 and 2500 fire (9500 does not).
    const source2 = new TestSource<number>('in', [records], { bounded: false });
    // The same sink store: the restore commits the savepoint's prepared transaction in it.
    const sink2 = new CollectingSink<string>('out', sink1.output);
    const run2 = runJob(timerJob(source2, sink2), {
      storage,
      savepoint: 'cut',
      checkpoints: { intervalMs: 5 },
    });
    try {
      await until(() => sink2.output.committed.length >= 2, 5000, 'the due timers to fire and commit');
      assert.deepEqual(sorted(sink2.output.committed), ['fired 1500', 'fired 2500']);
    } finally {
      await run2.stop();
    }
  });
});
