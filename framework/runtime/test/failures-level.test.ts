import assert from 'node:assert/strict';
import * as nodeFs from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type CheckpointFs, FilesystemCheckpointStorage } from '../../checkpoint/storage/filesystem.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { levelBackend } from '../../state/backends/level/level.ts';
import { temporaryDirectory } from '../../state/backends/level/testing.ts';
import { runJob } from '../job.ts';
import { taskScope } from '../task.ts';
import { failureInjectionSuite } from './failure-suite.ts';
import { finalKeyedState, sorted } from './helpers.ts';
import { buildJob, makeInput } from './jobs.ts';

// The failure-injection suite on the level backend: every task restarts on its own local database,
// which it reuses when it matches the checkpoint restored and rebuilds otherwise.
failureInjectionSuite('level incremental', {
  backend: levelBackend(temporaryDirectory()),
  incremental: true,
});
failureInjectionSuite('level full', { backend: levelBackend(temporaryDirectory()), modes: ['aligned'] });

describe('level backend: a full disk during checkpoints', () => {
  test('the checkpoints fail with ENOSPC; processing and the last good checkpoint survive; the next is full', async () => {
    const input = makeInput(3000, 20);
    const ref = buildJob('enospc', input, 2);
    const refStorage = new MemoryCheckpointStorage();
    const refJob = runJob(ref.graph, { storage: refStorage, checkpoints: { intervalMs: 0 } });
    await refJob.done;

    let diskFull = false;
    const fs: CheckpointFs = {
      ...nodeFs,
      open: async (path, flags, mode) => {
        const handle = await nodeFs.open(path, flags, mode);
        if (diskFull && String(path).includes(`${join('files', '.tmp-')}`)) {
          handle.writeFile = async () => {
            throw Object.assign(new Error(`ENOSPC: no space left on device, write '${String(path)}'`), {
              code: 'ENOSPC',
            });
          };
        }
        return handle;
      },
    };
    const storage = new FilesystemCheckpointStorage({ directory: temporaryDirectory(), retain: 100, fs });
    const j = buildJob('enospc', input, 2);
    // The sources wait at record 500 of each partition until the disk has been full for a while,
    // so that the job cannot end (its final checkpoint must succeed) while it is.
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const gate = async (_partition: number, position: number) => {
      if (position >= 500) await released;
    };
    j.orders.beforePoll = gate;
    j.payments.beforePoll = gate;
    const completed: { taskId: string; checkpointId: number }[] = [];
    const failures: {
      taskId: string;
      checkpointId: number;
      error: unknown;
      lastGood: number | undefined;
      latest: Promise<number | undefined>;
    }[] = [];
    const job = runJob(j.graph, {
      storage,
      backend: levelBackend(temporaryDirectory()),
      // Checkpoints go on while the sources wait at the gate (idle): they are what fails.
      checkpoints: { intervalMs: 1, incremental: true, tolerableFailures: 1_000, whenIdle: 'checkpoint' },
      restart: { kind: 'none' },
      listener: {
        checkpointCompleted: (s) => {
          completed.push({ taskId: s.taskId, checkpointId: s.checkpointId });
          if (completed.length === 4) diskFull = true;
        },
        checkpointFailed: ({ taskId, checkpointId, error }) => {
          const scope = { jobId: 'enospc', taskId };
          const latest = storage.latest(scope).then((m) => m?.checkpointId);
          const mine = completed.filter((c) => c.taskId === taskId).map((c) => c.checkpointId);
          const lastGood = mine.length === 0 ? undefined : Math.max(...mine);
          failures.push({ taskId, checkpointId, error, lastGood, latest });
          if (failures.length === 6) {
            diskFull = false;
            release();
          }
        },
      },
    });
    await job.done; // no restart: a failed checkpoint does not fail the task
    assert.ok(failures.length >= 6, `${failures.length} checkpoints failed`);
    for (const [i, f] of failures.entries()) {
      assert.match(String((f.error as Error).message), /ENOSPC/);
      assert.match(String((f.error as Error).message), /disk is full/);
      // The last good checkpoint is still the latest one while the disk is full.
      if (i < 5) assert.equal(await f.latest, f.lastGood);
    }
    assert.deepEqual(sorted(j.sink.output.committed), sorted(ref.sink.output.committed));
    assert.deepEqual(
      await finalKeyedState(storage, 'enospc', job.plan),
      await finalKeyedState(refStorage, 'enospc', refJob.plan),
    );
    // After a failed checkpoint the chain starts again with a full one.
    const scopes = job.plan.stages.flatMap((s) =>
      [...Array(s.partitions).keys()].map((p) => taskScope('enospc', job.plan, s, p)),
    );
    for (const scope of scopes) {
      const failed = failures.filter((f) => f.taskId === scope.taskId).map((f) => f.checkpointId);
      if (failed.length === 0) continue;
      const next = (await storage.list(scope)).find((m) => m.checkpointId > Math.max(...failed));
      assert.equal(
        next?.type,
        'full',
        `task ${scope.taskId}: checkpoint ${next?.checkpointId} after the failures`,
      );
    }
  });
});
