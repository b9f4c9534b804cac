import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStreamError } from '../../api/errors.ts';
import type { Collector, KeyedContext, KeyedProcessFunction } from '../../api/functions.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../graph/builder.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';
import { until } from './helpers.ts';

/** Passes records on; throws on 'poison' (every incarnation of its task fails on it again). */
class FailOnPoison implements KeyedProcessFunction<string, string, string> {
  processElement(v: string, _ctx: KeyedContext<string>, out: Collector<string>): void {
    if (v === 'poison') throw new Error('poison record');
    out.collect(v);
  }
}

test('stop() does not wait for a task in its restart delay: it stops at once, the others take their final checkpoint', async () => {
  // Partition 1 fails on its first record and waits a minute to restart; partition 0 runs.
  const source = new TestSource<string>('in', [[{ value: 'a' }, { value: 'b' }], [{ value: 'poison' }]], {
    bounded: false,
  });
  const sink = new CollectingSink<string>('out');
  const job = new StreamJob('stop-in-backoff');
  job
    .source(source)
    .keyBy((v) => v)
    .process(() => new FailOnPoison(), { uid: 'fail' })
    .sinkTo(sink);
  const failures: { taskId: string; delayMs: number }[] = [];
  const running = runJob(job.build(), {
    storage: new MemoryCheckpointStorage(),
    checkpoints: { intervalMs: 50 },
    restart: { kind: 'exponential-backoff', initialDelayMs: 60_000, maxDelayMs: 60_000, multiplier: 2 },
    listener: { taskFailed: (f) => failures.push(f) },
  });
  await until(() => failures.length === 1, 10_000, 'the poisoned task to fail');
  assert.deepEqual(
    failures.map((f) => [f.taskId, f.delayMs]),
    [['in-p1', 60_000]],
  );
  await until(() => sink.output.committed.length === 2, 10_000, 'the healthy task to commit its records');

  // A savepoint cannot include a task that waits to restart: refused, not hung.
  await assert.rejects(running.savepoint('sp'), (e: unknown) => {
    assert.ok(isStreamError(e, 'CHECKPOINT_DECLINED'), String(e));
    assert.match(e.message, /wait to restart after a failure/);
    return true;
  });

  const started = performance.now();
  const report = await running.stop({ finalCheckpoint: true, timeoutMs: 30_000 });
  const took = performance.now() - started;
  assert.deepEqual(report, { checkpointed: 1, uncheckpointed: 1 });
  assert.ok(took < 10_000, `stop took ${Math.round(took)} ms`);
  await running.done;
  assert.equal(failures.length, 1, 'no restart after the stop');
});
