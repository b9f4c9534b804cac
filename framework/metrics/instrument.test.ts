import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryCheckpointStorage } from '../checkpoint/storage/memory.ts';
import { StreamJob } from '../datastream/index.ts';
import { type RunningJob, runJob } from '../runtime/job.ts';
import { ManualClock } from '../testing/clock.ts';
import { CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { tumblingEventTime } from '../windows/assigners.ts';
import { combineListeners, instrumentJob } from './instrument.ts';
import { createPrometheusMetrics } from './prometheus.ts';

/** What the sampler reads of a Task. */
interface FakeTask {
  scope: { taskId: string };
  recordsIn: number;
  late: Record<string, number>;
  lateRecordsDropped(): { uid: string; records: number }[];
}

const fakeTask = (taskId: string): FakeTask => ({
  scope: { taskId },
  recordsIn: 0,
  late: {},
  lateRecordsDropped() {
    return Object.entries(this.late).map(([uid, records]) => ({ uid, records }));
  },
});

const value = async (
  m: ReturnType<typeof createPrometheusMetrics>,
  series: string,
): Promise<number | undefined> => {
  const line = (await m.render()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

test('readiness: not ready until every assigned task restored; a restarting or failed task makes it not ready', () => {
  const i = instrumentJob(createPrometheusMetrics({ defaultMetrics: false }), 'j');
  assert.deepEqual(i.readiness(), {
    ready: false,
    reason: 'no task assigned yet',
    tasks: { assigned: 0, running: 0, restarting: 0 },
  });
  i.taskStarted?.({ taskId: 'a-p0', partition: 0 });
  i.taskStarted?.({ taskId: 'a-p1', partition: 1 });
  i.restored?.({ taskId: 'a-p0', checkpointId: undefined, ms: 3 });
  assert.equal(i.readiness().ready, false);
  assert.match(i.readiness().reason, /1 of 2 tasks are restoring/);
  i.restored?.({ taskId: 'a-p1', checkpointId: 4, ms: 3 });
  assert.equal(i.readiness().ready, true);
  i.taskFailed?.({ taskId: 'a-p1', error: new Error('x'), restarting: true, delayMs: 10 });
  assert.match(i.readiness().reason, /restarting/);
  i.taskStarted?.({ taskId: 'a-p1', partition: 1 });
  assert.equal(i.readiness().ready, false);
  i.restored?.({ taskId: 'a-p1', checkpointId: 4, ms: 3 });
  assert.equal(i.readiness().ready, true);
  i.taskStopped?.({ taskId: 'a-p1', partition: 1 });
  assert.deepEqual(i.readiness().tasks, { assigned: 1, running: 1, restarting: 0 });
  i.taskFailed?.({ taskId: 'a-p0', error: new Error('x'), restarting: false, delayMs: 0 });
  assert.match(i.readiness().reason, /gave up/);
});

test('records in are counted per task incarnation across samples, restarts and stops', async () => {
  const m = createPrometheusMetrics({ defaultMetrics: false });
  const i = instrumentJob(m, 'j');
  let tasks: FakeTask[] = [];
  const job = { tasks: () => tasks, done: new Promise<void>(() => {}) } as unknown as RunningJob;
  const detach = i.attach(job, { intervalMs: 60_000 });
  const first = fakeTask('a-p0');
  tasks = [first];
  i.taskStarted?.({ taskId: 'a-p0', partition: 0 });
  first.recordsIn = 5;
  const series = 'kstate_records_in_total{job_id="j",task="a-p0",partition="0"}';
  assert.equal(await value(m, series), 5);
  first.recordsIn = 7; // then it fails: the last 2 are counted at the failure
  tasks = [];
  i.taskFailed?.({ taskId: 'a-p0', error: new Error('x'), restarting: true, delayMs: 0 });
  const second = fakeTask('a-p0');
  tasks = [second];
  i.taskStarted?.({ taskId: 'a-p0', partition: 0 });
  second.recordsIn = 3;
  assert.equal(await value(m, series), 10);
  second.recordsIn = 4;
  i.taskStopped?.({ taskId: 'a-p0', partition: 0 });
  tasks = [];
  assert.equal(await value(m, series), 11);
  assert.equal(await value(m, 'kstate_task_restarts_total{job_id="j",task="a-p0"}'), 1);
  assert.equal(await value(m, 'kstate_task_assignment_changes_total{job_id="j",change="assigned"}'), 1);
  detach();
});

test('checkpoint stats become gauges in base units, a histogram and counters', async () => {
  const m = createPrometheusMetrics({ defaultMetrics: false, prefix: 'x_' });
  const calls: string[] = [];
  const l = combineListeners(instrumentJob(m, 'j'), {
    checkpointCompleted: (s) => calls.push(`user ${s.checkpointId}`),
  });
  l.checkpointCompleted?.({
    taskId: 't',
    checkpointId: 9,
    savepoint: undefined,
    backend: 'heap',
    final: false,
    unaligned: false,
    alignmentMs: 10,
    syncMs: 20,
    asyncMs: 30,
    bytes: 1234,
    inflightRecords: 0,
  });
  l.checkpointFailed?.({ taskId: 't', checkpointId: 10, error: new Error('x') });
  assert.deepEqual(calls, ['user 9']);
  assert.equal(await value(m, 'x_checkpoint_last_duration_seconds{job_id="j",task="t"}'), 0.06);
  assert.equal(await value(m, 'x_checkpoint_last_alignment_seconds{job_id="j",task="t"}'), 0.01);
  assert.equal(await value(m, 'x_checkpoint_last_size_bytes{job_id="j",task="t"}'), 1234);
  assert.equal(await value(m, 'x_checkpoints_completed_total{job_id="j",task="t"}'), 1);
  assert.equal(await value(m, 'x_checkpoints_failed_total{job_id="j",task="t"}'), 1);
  assert.equal(await value(m, 'x_checkpoint_duration_seconds_count{job_id="j"}'), 1);
  // Same registry, same job again: the metrics are shared, not registered twice.
  instrumentJob(m, 'j');
});

test('late records dropped: a series per task and operator from 0, counted per task incarnation across restarts', async () => {
  const m = createPrometheusMetrics({ defaultMetrics: false });
  const i = instrumentJob(m, 'j');
  let tasks: FakeTask[] = [];
  const job = { tasks: () => tasks, done: new Promise<void>(() => {}) } as unknown as RunningJob;
  const detach = i.attach(job, { intervalMs: 60_000 });
  const first = fakeTask('a-p0');
  first.late = { win: 0 };
  tasks = [first];
  i.taskStarted?.({ taskId: 'a-p0', partition: 0 });
  const series = 'kstate_late_records_dropped_total{job_id="j",task="a-p0",operator="win"}';
  assert.equal(await value(m, series), 0, 'the series exists before the first drop');
  first.late = { win: 2 };
  assert.equal(await value(m, series), 2);
  first.late = { win: 3 }; // then it fails: the last one is counted at the failure
  tasks = [];
  i.taskFailed?.({ taskId: 'a-p0', error: new Error('x'), restarting: true, delayMs: 0 });
  const second = fakeTask('a-p0');
  second.late = { win: 1 };
  tasks = [second];
  i.taskStarted?.({ taskId: 'a-p0', partition: 0 });
  assert.equal(await value(m, series), 4);
  detach();
});

test('a window in a job that drops a late record: kstate_late_records_dropped_total counts it, on-time records do not', async () => {
  const m = createPrometheusMetrics({ defaultMetrics: false });
  const inst = instrumentJob(m, 'late-job');
  type Ev = { k: string; v: number };
  const source = new TestSource<Ev>('events', [[{ value: { k: 'a', v: 1 }, timestamp: 5000 }]], {
    bounded: false,
  });
  const job = new StreamJob('late-job');
  const sink = new CollectingSink<number>('sums');
  job
    .source(source)
    .keyBy((e) => e.k)
    .window(tumblingEventTime({ sizeMs: 1000 }))
    .reduce(
      (a, b) => ({ k: a.k, v: a.v + b.v }),
      (r) => r.v,
      { uid: 'per-second' },
    )
    .sinkTo(sink);
  const running = runJob(job.build(), {
    storage: new MemoryCheckpointStorage(),
    clock: new ManualClock(),
    listener: inst,
  });
  const detach = inst.attach(running, { intervalMs: 60_000 });
  try {
    const task = () => running.tasks()[0];
    const watermark = () =>
      task()
        ?.watermarks()
        .find((w) => w.uid === 'per-second')?.watermark ?? Number.NEGATIVE_INFINITY;
    await until(() => watermark() >= 4999);
    // 100 is late: its window [0, 1000) was cleaned up at 999; 5001 is on time.
    source.append(0, [
      { value: { k: 'a', v: 10 }, timestamp: 100 },
      { value: { k: 'a', v: 100 }, timestamp: 5001 },
    ]);
    await until(() => task()?.recordsIn === 3);
    const series =
      'kstate_late_records_dropped_total{job_id="late-job",task="events-p0",operator="per-second"}';
    assert.equal(await value(m, series), 1);
    assert.deepEqual(task()?.lateRecordsDropped(), [{ uid: 'per-second', records: 1 }]);
  } finally {
    await running.stop();
    detach();
  }
});

/** Wait for a condition the job reaches on its own (event-loop turns, no wall-clock sleep). */
async function until(condition: () => boolean): Promise<void> {
  for (let turns = 0; !condition(); turns++) {
    if (turns > 100_000) throw new Error('condition not reached');
    await new Promise((r) => setImmediate(r));
  }
}

test('combineListeners forwards every listener method, and has none that no listener has', () => {
  const calls: string[] = [];
  const l = combineListeners({ jobNotice: (n) => calls.push(`a ${n.message}`) }, undefined, {
    jobNotice: (n) => calls.push(`b ${n.message}`),
    jobStart: () => calls.push('b start'),
    taskStarted: (t) => calls.push(`b ${t.taskId}`),
  });
  l.jobNotice?.({ level: 'warn', message: 'x' });
  l.jobStart?.({} as Parameters<NonNullable<typeof l.jobStart>>[0]);
  l.taskStarted?.({ taskId: 't', partition: 0 });
  assert.deepEqual(calls, ['a x', 'b x', 'b start', 'b t']);
  assert.equal(l.checkpointFailed, undefined);
});
