import assert from 'node:assert/strict';
import { test } from 'node:test';
import { valueState } from '../../api/descriptors.ts';
import { isStreamError } from '../../api/errors.ts';
import type { Collector, KeyedContext, KeyedProcessFunction } from '../../api/functions.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import type { CheckpointMetadata, Scope } from '../../checkpoint/storage/storage.ts';
import { StreamJob } from '../../datastream/index.ts';
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

/** Memory storage whose file writes of checkpoint 1 wait for `release()`; records the commit order. */
class FirstCheckpointHeld extends MemoryCheckpointStorage {
  readonly committed: number[] = [];
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => {
    this.#release = r;
  });
  #held!: () => void;
  /** Resolves once a write of checkpoint 1 waits at the gate. */
  readonly held = new Promise<void>((r) => {
    this.#held = r;
  });

  release(): void {
    this.#release();
  }

  override async writeFile(scope: Scope, checkpointId: number, name: string, bytes: Uint8Array) {
    if (checkpointId === 1) {
      this.#held();
      await this.#gate;
    }
    return super.writeFile(scope, checkpointId, name, bytes);
  }

  override async commit(meta: CheckpointMetadata): Promise<void> {
    await super.commit(meta);
    if (meta.savepoint === undefined && meta.taskId !== '_topology') this.committed.push(meta.checkpointId);
  }
}

class Count implements KeyedProcessFunction<string, string, string> {
  processElement(v: string, ctx: KeyedContext<string>, out: Collector<string>): void {
    const n = ctx.getState(valueState<number>('n'));
    n.update((n.value() ?? 0) + 1);
    out.collect(`${v}:${n.value()}`);
  }
}

test("a stop's final checkpoint waits for the checkpoint in flight: commits stay in checkpoint order", async () => {
  // Checkpoint 1 (periodic) is slow to write; the stop asks for a checkpoint meanwhile. Triggered
  // at once, that one would finish its asynchronous part first and commit before checkpoint 1 (with
  // a Kafka sink, checkpoint 1's offsets would then replace its newer ones: issue 12).
  const storage = new FirstCheckpointHeld();
  const source = new TestSource<string>('in', [[{ value: 'a' }, { value: 'b' }, { value: 'a' }]], {
    bounded: false,
  });
  const job = new StreamJob('stop-in-order');
  job
    .source(source)
    .keyBy((v) => v)
    .process(() => new Count(), { uid: 'count' })
    .sinkTo(new CollectingSink<string>('out'));
  const running = runJob(job.build(), { storage, checkpoints: { intervalMs: 10 } });
  await storage.held;
  const stopped = running.stop({ finalCheckpoint: true, timeoutMs: 30_000 });
  // Let checkpoint 1 go once a later checkpoint committed (the defect) or after a while (no later
  // checkpoint may start before checkpoint 1 is done).
  const later = until(() => storage.committed.length > 0, 500, 'a later checkpoint').catch(() => {});
  await later;
  storage.release();
  assert.deepEqual(await stopped, { checkpointed: 1, uncheckpointed: 0 });
  await running.done;
  assert.deepEqual(storage.committed, [1, 2], 'committed checkpoint ids, in commit order');
});
