import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import type { Scope } from '../../checkpoint/storage/storage.ts';
import type { KeyedStateBackend } from '../../state/backend.ts';
import { plannedFaults } from '../../testing/faults.ts';
import { runJob } from '../job.ts';
import { finalKeyedState, sorted } from './helpers.ts';
import { buildJob, makeInput } from './jobs.ts';

/**
 * (b) and (e) of the runtime issue: a keyed job with timers and a two-input operator, run with at
 * least 50 injected failures at random points, ends with the same committed output and the same
 * keyed state as an uninterrupted run: no duplicates, no gaps.
 */
const input = makeInput(8000, 25);
const PARTITIONS = 3;

export interface FailureSuiteOptions {
  /** Backend of the runs with failures (the reference run uses the heap backend). */
  readonly backend?: (scope: Scope) => KeyedStateBackend | Promise<KeyedStateBackend>;
  readonly incremental?: boolean;
  readonly modes?: readonly ('aligned' | 'unaligned' | 'alignment-timeout')[];
}

async function reference() {
  const j = buildJob('ref', input, PARTITIONS);
  const storage = new MemoryCheckpointStorage();
  const job = runJob(j.graph, { storage, checkpoints: { intervalMs: 0 } });
  await job.done;
  return { output: sorted(j.sink.output.committed), state: await finalKeyedState(storage, 'ref', job.plan) };
}

/** Register the failure-injection tests for one backend configuration. */
export function failureInjectionSuite(name: string, o: FailureSuiteOptions = {}): void {
  for (const mode of o.modes ?? (['aligned', 'unaligned', 'alignment-timeout'] as const)) {
    describe(`failure injection (${name}), ${mode} checkpoints`, () => {
      test('50+ failures at random points end with output and state equal to an uninterrupted run', async () => {
        const ref = await reference();
        const faults = plannedFaults({
          seed: mode.length * 7919,
          probability: {
            user: 0.0015,
            'snapshot.capture': 0.08,
            'snapshot.write': 0.08,
            'checkpoint.after-commit': 0.08,
          },
          max: 80,
        });
        const j = buildJob('faulty', input, PARTITIONS);
        j.totals.fault = faults.maybe;
        j.match.fault = faults.maybe;
        // Slow the readers a little so that checkpoints interleave with processing.
        let polls = 0;
        const slow = async () => {
          if (++polls % 4 === 0) await new Promise((r) => setImmediate(r));
        };
        j.orders.beforePoll = slow;
        j.payments.beforePoll = slow;
        const storage = new MemoryCheckpointStorage();
        let completed = 0;
        let unalignedCompleted = 0;
        let inflightRecords = 0;
        const job = runJob(j.graph, {
          storage,
          channelCapacity: 64,
          pollBatch: 16,
          ...(o.backend ? { backend: o.backend } : {}),
          checkpoints: {
            intervalMs: 1,
            incremental: o.incremental ?? false,
            tolerableFailures: 1_000,
            unaligned: mode === 'unaligned',
            alignmentTimeoutMs: mode === 'alignment-timeout' ? 0 : undefined,
          },
          restart: { kind: 'fixed-delay', attempts: 10_000, delayMs: 0 },
          faults: faults.injector,
          listener: {
            checkpointCompleted: (s) => {
              completed++;
              if (s.unaligned) unalignedCompleted++;
              inflightRecords += s.inflightRecords;
            },
          },
        });
        // A barrier goes in after the batch being taken, so alignment rarely lasts a round of the
        // loop: in alignment-timeout mode the payments input is held back every other millisecond,
        // so that barriers wait in it and the timeout switches checkpoints to unaligned.
        let held = false;
        const toggler =
          mode === 'alignment-timeout'
            ? setInterval(() => {
                held = !held;
                job.hold(j.payments.uid, held);
              }, 1)
            : undefined;
        try {
          await job.done;
        } finally {
          clearInterval(toggler);
        }
        const injected = Object.fromEntries(faults.injected);
        console.log(
          `${mode}: injected ${faults.total()} faults ${JSON.stringify(injected)}, restarts ${job.restarts()}, checkpoints ${completed} (unaligned ${unalignedCompleted})`,
        );
        assert.ok(faults.total() >= 50, `only ${faults.total()} faults were injected`);
        for (const point of ['user', 'snapshot.capture', 'snapshot.write', 'checkpoint.after-commit']) {
          assert.ok((faults.injected.get(point) ?? 0) > 0, `no fault at ${point}`);
        }
        const output = sorted(j.sink.output.committed);
        assert.equal(new Set(output).size, output.length, 'duplicates in the committed output');
        assert.deepEqual(output, ref.output);
        assert.deepEqual(await finalKeyedState(storage, 'faulty', job.plan), ref.state);
        if (mode !== 'aligned') {
          assert.ok(unalignedCompleted > 0, 'no unaligned checkpoint completed');
          // With a zero alignment timeout the barriers may all arrive before the switch; in unaligned
          // mode every checkpoint overtakes whatever is queued.
          if (mode === 'unaligned')
            assert.ok(inflightRecords > 0, 'no unaligned checkpoint stored in-flight records');
        }
      });
    });
  }
}
