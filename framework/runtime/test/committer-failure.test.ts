/**
 * A task whose sink commits checkpoints itself (a CheckpointCommitter, as the Kafka sink: output,
 * input positions and the pointer in one transaction) must not commit any checkpoint after one of
 * its checkpoints failed: the failed checkpoint's transaction holds the output of its interval and
 * is aborted when the task restarts, so a later commit would carry the input positions (and state)
 * past records whose output is lost. Seen in connectors/kafka/test/crash/s3-crash.test.ts: checkpoint 9
 * failed while the S3 store refused connections, the task removed it from its pending checkpoints
 * and then awaited the storage's discard of its files (seconds, against a store that is down) before
 * it recorded the failure; meanwhile checkpoint 10 was triggered and committed; 256 orders had no
 * output while the counts of 57 users jumped past them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KeyedContext, KeyedProcessFunction } from '../../api/functions.ts';
import type { CheckpointCommitter, CheckpointPointer, Sink, SinkWriter } from '../../api/sink.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import type { FileRef, Scope } from '../../checkpoint/storage/storage.ts';
import { StreamJob } from '../../datastream/index.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';
import { until } from './helpers.ts';

/** Memory storage whose writes of checkpoint 2 fail once, and whose discard of 2 waits for `release()`. */
class FailingSecondCheckpoint extends MemoryCheckpointStorage {
  #failed = false;
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => {
    this.#release = r;
  });
  discardHeld = false;

  release(): void {
    this.#release();
  }

  override async writeFile(
    scope: Scope,
    checkpointId: number,
    name: string,
    bytes: Uint8Array,
  ): Promise<FileRef> {
    if (checkpointId === 2 && !this.#failed) {
      this.#failed = true;
      throw new Error('the store refused the write of checkpoint 2');
    }
    return super.writeFile(scope, checkpointId, name, bytes);
  }

  override async discard(scope: Scope, checkpointId: number): Promise<void> {
    if (checkpointId === 2) {
      this.discardHeld = true;
      await this.#gate;
    }
    return super.discard(scope, checkpointId);
  }
}

/** A sink that commits checkpoints itself and records which ones it committed. */
class CommittingSink implements Sink<string> {
  readonly uid = 'out';
  readonly commits: number[] = [];
  #latest: CheckpointPointer | undefined;
  createWriter(): SinkWriter<string> {
    const committer: CheckpointCommitter = {
      commitCheckpoint: async (request) => {
        this.commits.push(request.checkpointId);
        this.#latest = request.pointer;
      },
      latestCheckpoint: async () => this.#latest,
    };
    return {
      committer,
      write() {},
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

test('after a failed checkpoint, a task with a checkpoint committer commits no later checkpoint before it restarts', async () => {
  const storage = new FailingSecondCheckpoint();
  const sink = new CommittingSink();
  const source = new TestSource<string>('in', [[{ value: 'a' }, { value: 'b' }]], { bounded: false });
  const job = new StreamJob('committer-failure');
  job
    .source(source)
    .keyBy((v) => v)
    .process(() => new PassOn(), { uid: 'pass' })
    .sinkTo(sink);
  const failures: { code?: string; committed: number[] }[] = [];
  const reported: number[] = [];
  const running = runJob(job.build(), {
    storage,
    checkpoints: { intervalMs: 10, whenIdle: 'checkpoint' },
    restart: { kind: 'fixed-delay', delayMs: 10, attempts: 5 },
    listener: {
      checkpointFailed: (f) => reported.push(f.checkpointId),
      taskFailed: (f) =>
        failures.push({ code: (f.error as { code?: string }).code, committed: [...sink.commits] }),
    },
  });
  try {
    await until(() => storage.discardHeld, 10_000, 'the discard of the failed checkpoint 2');
    // While the failed checkpoint's files are being discarded, input keeps arriving: the task fails,
    // or (the defect) goes on and commits checkpoint 3 past checkpoint 2's lost transaction.
    const feed = setInterval(() => source.append(0, [{ value: 'c' }]), 5);
    try {
      await until(
        () => failures.length > 0 || sink.commits.some((id) => id > 2),
        10_000,
        'the task to fail, or a later checkpoint to commit',
      );
    } finally {
      clearInterval(feed);
    }
    assert.deepEqual(sink.commits, [1], 'checkpoints committed by the first incarnation');
    assert.equal(failures[0]?.code, 'CHECKPOINT_DECLINED');
    // Reported when it failed (the service logs 'checkpoint failed' with the storage's error), not
    // after the discard, which a failed task never waits for.
    assert.deepEqual(reported, [2], 'checkpointFailed reported for checkpoint 2');
  } finally {
    storage.release();
    await running.stop({ finalCheckpoint: false, timeoutMs: 10_000 }).catch(() => {});
    await running.done.catch(() => {});
  }
});
