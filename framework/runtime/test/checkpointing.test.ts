import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isStreamError } from '../../api/errors.ts';
import { FilesystemCheckpointStorage } from '../../checkpoint/storage/filesystem.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { ManualClock } from '../../testing/clock.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { SlowStorage } from '../../testing/slow-storage.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';
import { sorted, turn, turnsUntil, until } from './helpers.ts';
import { buildJob, makeInput, type Order, type Payment } from './jobs.ts';

const input = makeInput(3000, 20);

async function referenceOutputOf(partitions: number): Promise<string[]> {
  const j = buildJob('ref', input, partitions);
  await runJob(j.graph, { storage: new MemoryCheckpointStorage(), checkpoints: { intervalMs: 0 } }).done;
  return sorted(j.sink.output.committed);
}

async function referenceOutput(): Promise<string[]> {
  const j = buildJob('ref', input, 2);
  await runJob(j.graph, { storage: new MemoryCheckpointStorage(), checkpoints: { intervalMs: 0 } }).done;
  return sorted(j.sink.output.committed);
}

/** The job over unbounded copies of the input's first `n` orders (and their payments). */
function unboundedJob(jobId: string, n: number, sink?: CollectingSink<string>) {
  const j = buildJob(jobId, input, 2, sink);
  const orders = TestSource.byKey('orders', input.orders.slice(0, n), (o: Order) => o.user, 2, {
    bounded: false,
  });
  const payments = TestSource.byKey(
    'payments',
    input.payments.filter((p) => p.value.order < n),
    (p: Payment) => p.user,
    2,
    {
      bounded: false,
    },
  );
  return { ...buildJobWith(jobId, orders, payments, sink ?? j.sink), orders, payments };
}

function buildJobWith(
  jobId: string,
  orders: TestSource<Order>,
  payments: TestSource<Payment>,
  sink: CollectingSink<string>,
) {
  // Same topology as buildJob, over the given sources.
  const j = buildJob(jobId, { orders: [], payments: [] }, 2, sink);
  const nodes = j.graph.nodes.map((n) =>
    n.spec.kind === 'source'
      ? { ...n, spec: { ...n.spec, source: n.uid === 'orders' ? orders : payments } }
      : n,
  );
  return { graph: { ...j.graph, nodes: nodes as typeof j.graph.nodes }, sink };
}

describe('asynchronous and synchronous snapshots', () => {
  test('(c) async mode keeps processing while a slow storage write is in progress; sync mode does not', async () => {
    // Event-loop turns the async mode took to process the new input while the write hung.
    let asyncTurns = 0;
    for (const mode of ['async', 'sync'] as const) {
      const storage = new SlowStorage(new MemoryCheckpointStorage());
      const u = unboundedJob(`slow-${mode}`, 1000);
      storage.hold();
      const job = runJob(u.graph, { storage, checkpoints: { intervalMs: 10, snapshot: mode } });
      try {
        // Both tasks (one per partition) have a checkpoint write hanging at the gate (a task writes
        // its keyed state and operators files at once: two writes of one task are not two tasks).
        await storage.whenTasksWaiting(2);
        const before = u.sink.written;
        const committedBefore = u.sink.output.committed.length;
        // New input arrives while the checkpoint write hangs.
        const more = input.orders.slice(1000, 1500);
        for (let p = 0; p < 2; p++)
          u.orders.append(
            p,
            more.filter((r) => TestSource.byKey('x', [r], (o: Order) => o.user, 2).records(p).length),
          );
        if (mode === 'async') {
          asyncTurns = await turnsUntil(
            () => u.sink.written >= before + 500,
            10_000_000,
            'records to flow during the slow write',
          );
          assert.ok(u.sink.written >= before + 500);
        } else {
          // Four times the event-loop turns the async mode needed for the same input (at least 1000).
          for (let i = 0; i < Math.max(4 * asyncTurns, 1000); i++) await turn();
          assert.equal(
            u.sink.written,
            before,
            'sync mode processed records while the snapshot was being written',
          );
        }
        assert.equal(
          u.sink.output.committed.length,
          committedBefore,
          'output became visible before its checkpoint completed',
        );
        storage.release();
        await until(
          () => u.sink.output.committed.length > committedBefore,
          5000,
          'the checkpoint to complete',
        );
      } finally {
        storage.release();
        await job.stop();
      }
    }
  });
});

describe('savepoints', () => {
  test('(d) a savepoint taken from one run restores into a fresh run, on a new storage instance', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sp-'));
    try {
      const ref = await referenceOutput();
      const first = unboundedJob('sp', 1500);
      const job1 = runJob(first.graph, {
        storage: new FilesystemCheckpointStorage({ directory: dir }),
        checkpoints: { intervalMs: 0 },
      });
      await until(() => first.sink.written >= 1500, 5000, 'the first half to be processed');
      const metas = await job1.savepoint('half');
      assert.equal(metas.length, 2);
      assert.ok(metas.every((m) => m.savepoint === 'half'));
      await job1.stop();

      // A fresh run: new storage object, new sink store, full (bounded) input, from the savepoint.
      const second = buildJob('sp', input, 2, new CollectingSink('out', first.sink.output));
      const job2 = runJob(second.graph, {
        storage: new FilesystemCheckpointStorage({ directory: dir }),
        savepoint: 'half',
      });
      await job2.done;
      assert.deepEqual(sorted(second.sink.output.committed), ref);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a partition that comes back after a rebalance continues from the run's checkpoints, not from the savepoint again", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sp-rebalance-'));
    try {
      const first = unboundedJob('sp-rebalance', 1500);
      const job1 = runJob(first.graph, {
        storage: new FilesystemCheckpointStorage({ directory: dir }),
        checkpoints: { intervalMs: 0 },
      });
      await until(() => first.sink.written >= 1500, 5000, 'the first half to be processed');
      await job1.savepoint('half');
      await job1.stop();
      // A run from the savepoint under a (simulated) consumer group: partition 0 is revoked after
      // the run checkpointed past the savepoint, then assigned again, as in a rebalance.
      let change!: (owned: ReadonlyMap<number, ReadonlySet<number>>) => Promise<void>;
      const second = unboundedJob('sp-rebalance', 3000, new CollectingSink('out', first.sink.output));
      const job2 = runJob(second.graph, {
        storage: new FilesystemCheckpointStorage({ directory: dir }),
        savepoint: 'half',
        checkpoints: { intervalMs: 5 },
        assignment: {
          async start(_plan, onChange) {
            change = onChange;
            await onChange(new Map([[0, new Set([0, 1])]]));
          },
          async stop() {},
        },
      });
      const totals = () => second.sink.output.committed.filter((l) => l.startsWith('total '));
      await until(() => totals().length >= 2200, 10_000, 'part of the second half to be committed');
      await change(new Map([[0, new Set([1])]]));
      await change(new Map([[0, new Set([0, 1])]]));
      await until(() => totals().length >= 3000, 10_000, 'every order to be committed');
      // A savepoint of every task commits what each processed by now (a repeated order too).
      await job2.savepoint('settled');
      await job2.stop();
      assert.equal(new Set(totals()).size, totals().length, 'an order was committed twice');
      assert.equal(totals().length, 3000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('restoring from a savepoint that does not exist fails with CHECKPOINT_NOT_FOUND, never starts empty', async () => {
    const j = buildJob('nosp', input, 2);
    const job = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      savepoint: 'missing',
      restart: { kind: 'none' },
    });
    await assert.rejects(job.done, (e: unknown) => isStreamError(e, 'CHECKPOINT_NOT_FOUND'));
    assert.equal(j.sink.written, 0);
  });
});

describe('unaligned checkpoints under backpressure', () => {
  test('(e) with one input of a two-input operator held back, an aligned checkpoint waits and an unaligned one completes', async () => {
    const ref = await referenceOutput();
    for (const unaligned of [false, true]) {
      const j = buildJob(`held-${unaligned}`, input, 2);
      // The task clock is a manual one: checkpoint intervals and timeouts pass when the test says.
      const clock = new ManualClock(0);
      const completions: { unaligned: boolean; inflight: number }[] = [];
      const timedOut = new Set<string>();
      const job = runJob(j.graph, {
        storage: new MemoryCheckpointStorage(),
        clock,
        channelCapacity: 64,
        checkpoints: { intervalMs: 20, timeoutMs: 200, tolerableFailures: 1000, unaligned },
        listener: {
          checkpointCompleted: (s) =>
            completions.push({ unaligned: s.unaligned, inflight: s.inflightRecords }),
          checkpointFailed: (f) => {
            if (isStreamError(f.error, 'CHECKPOINT_DECLINED') && /timed out/.test(f.error.message))
              timedOut.add(f.taskId);
          },
        },
      });
      job.hold('payments', true);
      // Orders flow (and fill the sink) while payments are held back.
      await until(() => j.sink.written > 0, 5000, 'orders to flow');
      /** Until `done`, let a checkpoint interval pass at each look. */
      const intervalsUntil = (done: () => boolean, what: string) =>
        until(
          () => {
            if (done()) return true;
            clock.advance(20);
            return false;
          },
          10_000,
          what,
        );
      if (unaligned) {
        await intervalsUntil(
          () => completions.some((c) => c.inflight > 0),
          'an unaligned checkpoint storing the held-back records as channel state',
        );
        assert.ok(completions.every((c) => c.unaligned));
      } else {
        // Each task's checkpoint waits for the held input's barrier until its timeout aborts it.
        await intervalsUntil(() => timedOut.size === 2, "each task's aligned checkpoint to time out");
        assert.equal(
          completions.length,
          0,
          'an aligned checkpoint completed although one input never delivered its barrier',
        );
      }
      job.hold('payments', false);
      await job.done;
      assert.deepEqual(sorted(j.sink.output.committed), ref);
    }
  });
});

describe('bad input', () => {
  test('a user function that keeps throwing fails the job with the restart limit and the operator named', async () => {
    const j = buildJob('throws', input, 2);
    j.totals.fault = () => {
      throw new Error('boom');
    };
    const job = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'fixed-delay', attempts: 2, delayMs: 1 },
    });
    await assert.rejects(job.done, (e: unknown) => {
      assert.ok(isStreamError(e, 'RESTART_LIMIT_EXCEEDED'));
      assert.match(e.message, /operator 'totals' failed in processElement: boom/);
      return true;
    });
    // Two tasks (one per partition), each restarted twice before the strategy gives up.
    assert.equal(job.restarts(), 4);
    assert.equal(j.sink.output.committed.length, 0);
  });

  test('a corrupt checkpoint file stops the restore with CHECKPOINT_CORRUPT naming the file', async () => {
    const storage = new MemoryCheckpointStorage();
    const j = buildJob('corrupt', input, 1);
    await runJob(j.graph, { storage }).done;
    const path = storage.paths().find((p) => p.includes('keyed'))!;
    storage.corrupt(path);
    const again = buildJob('corrupt', input, 1);
    const job = runJob(again.graph, { storage, restart: { kind: 'none' } });
    await assert.rejects(job.done, (e: unknown) => {
      const cause = (e as Error).cause;
      assert.ok(isStreamError(cause, 'CHECKPOINT_CORRUPT'), String(cause));
      assert.ok(cause.message.includes(path.split('/').pop()!), cause.message);
      return true;
    });
    assert.equal(again.sink.written, 0);
  });

  test('a key outside the task key group fails the job once with KEY_GROUP_MISMATCH (permanent: never restarted)', async () => {
    const j = buildJob('mispart', { orders: [], payments: [] }, 2);
    const wrong = new TestSource<Order>('orders', [[], input.orders.slice(0, 50)]);
    const g = buildJobWith('mispart', wrong, new TestSource<Payment>('payments', [[], []]), j.sink);
    const job = runJob(g.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'fixed-delay', attempts: 50, delayMs: 0 },
    });
    await assert.rejects(job.done, (e: unknown) => {
      assert.ok(isStreamError(e, 'KEY_GROUP_MISMATCH'), String(e));
      assert.match(
        e.message,
        /came in partition 1 of 2 of source 'orders', but the stage's partitioner \(murmur2\)/,
      );
      return true;
    });
    assert.equal(job.restarts(), 0);
  });
});

describe('checkpoint timeouts and tolerable failures', () => {
  test('checkpoints that time out are aborted and, past the tolerance, fail the task', async () => {
    const storage = new SlowStorage(new MemoryCheckpointStorage());
    storage.hold();
    const u = unboundedJob('timeouts', 200);
    const failed: string[] = [];
    const aborted: number[] = [];
    const job = runJob(u.graph, {
      storage,
      checkpoints: { intervalMs: 5, timeoutMs: 30, tolerableFailures: 2 },
      restart: { kind: 'none' },
      listener: {
        checkpointFailed: (f) => {
          failed.push((f.error as Error).message);
          aborted.push(f.checkpointId);
        },
      },
    });
    try {
      await assert.rejects(job.done, (e: unknown) => {
        assert.ok(
          isStreamError((e as Error).cause, 'CHECKPOINT_FAILURES_EXCEEDED'),
          String((e as Error).cause),
        );
        return true;
      });
      assert.ok(
        failed.some((m) => /timed out after 30 ms/.test(m)),
        failed.join('; '),
      );
      assert.equal(
        u.sink.output.committed.length,
        0,
        'nothing may become visible without a completed checkpoint',
      );
    } finally {
      storage.release();
      await job.stop();
    }
  });
});

describe('restore fallback (checkpoints.restoreFallback)', () => {
  /** Runs the job to its end with frequent checkpoints; returns the storage and the newest keyed file per task. */
  async function withCorruptNewest(jobId: string) {
    const storage = new MemoryCheckpointStorage({ retain: 5 });
    const j = buildJob(jobId, input, 1);
    // The last orders wait 30 ms before they come: the checkpoints meanwhile stand before the end of
    // the input, so the one before the newest (the final one) has input after it to replay.
    const last = j.orders.records(0).length;
    let waited = false;
    j.orders.beforePoll = async (_partition, position) => {
      if (waited || position < last - 10) return;
      waited = true;
      await new Promise((r) => setTimeout(r, 30));
    };
    await runJob(j.graph, { storage, checkpoints: { intervalMs: 1 } }).done;
    const keyed = storage.paths().filter((p) => p.includes('keyed'));
    const chk = (p: string) => Number(/files\/(\d+)-/.exec(p)?.[1] ?? -1);
    const newest = keyed.reduce((a, b) => (chk(b) > chk(a) ? b : a));
    assert.ok(
      keyed.some((p) => chk(p) < chk(newest)),
      `only one checkpoint retained: ${keyed.join(', ')}`,
    );
    storage.corrupt(newest);
    return { storage, newest, sink: j.sink };
  }

  test("'refuse' (default): the restore fails naming the file, and says how to fall back", async () => {
    const { storage, newest } = await withCorruptNewest('fallback-refuse');
    const again = buildJob('fallback-refuse', input, 1);
    const job = runJob(again.graph, { storage, restart: { kind: 'none' } });
    await assert.rejects(job.done, (e: unknown) => {
      // Permanent (no restart can help): the job fails at once with the error itself.
      const cause = e;
      assert.ok(isStreamError(cause, 'CHECKPOINT_CORRUPT'), String(cause));
      assert.ok(cause.message.includes(newest.split('/').pop()!), cause.message);
      assert.match(cause.message, /restoreFallback = 'previous'/);
      return true;
    });
  });

  test("'previous': the newest intact older checkpoint is restored, with a warning; no output is lost", async () => {
    const { storage, newest, sink } = await withCorruptNewest('fallback-previous');
    const before = sink.written;
    const warnings: string[] = [];
    const onWarning = (w: Error) => {
      if (w.name === 'CheckpointRestoreWarning') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      const again = buildJob('fallback-previous', input, 1, sink);
      await runJob(again.graph, {
        storage,
        restart: { kind: 'none' },
        checkpoints: { restoreFallback: 'previous' },
      }).done;
      await new Promise((r) => setImmediate(r));
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0]!, /restored the older checkpoint \d+ instead/);
      const chk = Number(/files\/(\d+)-/.exec(newest)![1]);
      assert.ok(warnings[0]!.includes(`checkpoint ${chk} cannot be restored`), warnings[0]);
      // It replayed the input after the older checkpoint: its output is what that checkpoint lacked.
      assert.ok(sink.written > before, 'nothing was replayed from the older checkpoint');
      // Nothing is lost; the output between the two checkpoints is emitted again (at least once).
      assert.deepEqual([...new Set(sorted(sink.output.committed))], await referenceOutputOf(1));
    } finally {
      process.off('warning', onWarning);
    }
  });
});
