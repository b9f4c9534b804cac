/**
 * A checkpoint whose commit is under way when its timeout passes is decided by the commit, not
 * failed and discarded: for a task whose sink commits checkpoints (a CheckpointCommitter, as the
 * Kafka transaction), the commit may land with a pointer to the checkpoint's files, and a discard
 * would delete the files a committed pointer names (the restore then fails with CHECKPOINT_NOT_FOUND,
 * and a committer's task refuses to fall back). Before the checkpointer (framework/runtime/
 * checkpointer.ts) the timeout failed such a checkpoint, discarded its files and failed the task.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KeyedContext, KeyedProcessFunction } from '../../api/functions.ts';
import type { CheckpointCommitter, CheckpointPointer, Sink, SinkWriter } from '../../api/sink.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import type { Scope } from '../../checkpoint/storage/storage.ts';
import { StreamJob } from '../../datastream/index.ts';
import { ManualClock } from '../../testing/clock.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';
import { readPointedMetadata } from '../snapshot-io.ts';
import { until } from './helpers.ts';

class RecordingStorage extends MemoryCheckpointStorage {
  readonly discarded: number[] = [];
  override async discard(scope: Scope, checkpointId: number): Promise<void> {
    this.discarded.push(checkpointId);
    return super.discard(scope, checkpointId);
  }
}

/** A sink that commits checkpoints itself; the commit of checkpoint 2 waits for `release()`. */
class SlowCommitSink implements Sink<string> {
  readonly uid = 'out';
  readonly commits: number[] = [];
  written = 0;
  latest: CheckpointPointer | undefined;
  held = false;
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => {
    this.#release = r;
  });
  release(): void {
    this.#release();
  }
  createWriter(): SinkWriter<string> {
    const committer: CheckpointCommitter = {
      commitCheckpoint: async (request) => {
        if (request.checkpointId === 2) {
          this.held = true;
          await this.#gate;
        }
        this.commits.push(request.checkpointId);
        this.latest = request.pointer;
      },
      latestCheckpoint: async () => this.latest,
    };
    return {
      committer,
      write: () => {
        this.written++;
      },
      prepareCommit: () => undefined,
      async commit() {},
      async abort() {},
      async close() {},
    };
  }
}

class PassOn implements KeyedProcessFunction<string, string, string> {
  processElement(v: string, _ctx: KeyedContext<string>, out: { collect(v: string): void }): void {
    out.collect(v);
  }
}

test('a checkpoint whose commit is under way at its timeout is decided by the commit: no discard, no failure', async () => {
  const storage = new RecordingStorage();
  const sink = new SlowCommitSink();
  const clock = new ManualClock(0);
  const source = new TestSource<string>('in', [[{ value: 'a' }]], { bounded: false });
  const job = new StreamJob('commit-timeout');
  job
    .source(source)
    .keyBy((v) => v)
    .process(() => new PassOn(), { uid: 'pass' })
    .sinkTo(sink);
  const failures: unknown[] = [];
  const running = runJob(job.build(), {
    storage,
    clock,
    checkpoints: { intervalMs: 0, timeoutMs: 100 },
    restart: { kind: 'fixed-delay', delayMs: 0, attempts: 3 },
    listener: { taskFailed: (f) => failures.push(f.error) },
  });
  try {
    await until(() => running.tasks().length === 1 && sink.written === 1, 10_000, 'the task to run');
    const task = running.tasks()[0]!;
    assert.equal((await task.checkpointNow()).checkpointId, 1);
    const second = task.checkpointNow();
    second.catch(() => {});
    await until(() => sink.held, 10_000, 'the commit of checkpoint 2 to start');
    // The timeout passes while the commit is under way; the task goes on processing meanwhile.
    clock.advance(1000);
    source.append(0, [{ value: 'b' }]);
    await until(
      () => sink.written === 2 || storage.discarded.includes(2),
      10_000,
      'the next record, or a discard of checkpoint 2',
    );
    sink.release();
    assert.equal((await second).checkpointId, 2);
    assert.deepEqual(sink.commits, [1, 2]);
    assert.deepEqual(storage.discarded, [], 'files of a committing checkpoint were discarded');
    assert.deepEqual(failures, []);
    // Every file the committed pointer names is there: a restore can read the checkpoint.
    const meta = await readPointedMetadata(storage, sink.latest!, task.scope.taskId);
    for (const f of meta.files) await storage.readFile(f);
  } finally {
    sink.release();
    await running.stop().catch(() => {});
  }
});
