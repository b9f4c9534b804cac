import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_CHECKPOINTS } from '../runtime/config.ts';
import {
  checkpointPhase,
  decideOnCheckpointFailure,
  decideRestart,
  decideRestore,
  decideTrigger,
  firstCheckpointId,
  isDamagedCheckpoint,
  type RestoreFacts,
} from './decisions.ts';

const c = { ...DEFAULT_CHECKPOINTS, intervalMs: 100, minPauseMs: 50, maxConcurrent: 2 };
const facts = { now: 1000, lastTriggerAt: 950, lastCompletedAt: undefined, inFlight: 0, aligning: false };

describe('checkpoint trigger decisions', () => {
  test('interval, minimum pause, concurrency and alignment', () => {
    assert.deepEqual(decideTrigger(facts, c), { trigger: false, retryAt: 1050 });
    assert.deepEqual(decideTrigger({ ...facts, now: 1050 }, c), { trigger: true });
    // The pause after the last completion wins over the interval.
    assert.deepEqual(decideTrigger({ ...facts, now: 1050, lastCompletedAt: 1040 }, c), {
      trigger: false,
      retryAt: 1090,
    });
    assert.deepEqual(decideTrigger({ ...facts, now: 2000, inFlight: 2 }, c), {
      trigger: false,
      retryAt: undefined,
    });
    assert.deepEqual(decideTrigger({ ...facts, now: 2000, inFlight: 1 }, c), { trigger: true });
    assert.deepEqual(decideTrigger({ ...facts, now: 2000, aligning: true }, c), {
      trigger: false,
      retryAt: undefined,
    });
    assert.deepEqual(decideTrigger({ ...facts, now: 9999 }, { ...c, intervalMs: 0 }), {
      trigger: false,
      retryAt: undefined,
    });
  });

  test('nothing happened since the last completed checkpoint: no trigger, look again an interval later', () => {
    assert.deepEqual(decideTrigger({ ...facts, now: 1050, unchanged: true }, c), {
      trigger: false,
      retryAt: 1150,
    });
    assert.deepEqual(decideTrigger({ ...facts, now: 1050, unchanged: false }, c), { trigger: true });
    // Not yet due: the usual answer.
    assert.deepEqual(decideTrigger({ ...facts, unchanged: true }, c), { trigger: false, retryAt: 1050 });
  });

  test('the phase spreads tasks over the interval', () => {
    const phases = Array.from({ length: 256 }, (_, p) => checkpointPhase(`orders.0.${p}`));
    for (const x of phases) assert.ok(x >= 0 && x < 1);
    assert.equal(checkpointPhase('orders.0.7'), checkpointPhase('orders.0.7'));
    // Every tenth of the interval gets some of the 256 tasks, none more than twice its share.
    const tenths = new Array<number>(10).fill(0);
    for (const x of phases) tenths[Math.floor(x * 10)]!++;
    for (const n of tenths) assert.ok(n > 0 && n < 52, `tenths ${tenths.join(' ')}`);
  });

  test('the partitions of one stage fall evenly over the interval, whatever their count', () => {
    for (const n of [2, 3, 4, 8, 16, 64]) {
      const phases = Array.from({ length: n }, (_, p) =>
        checkpointPhase(`kafka-peers-mxc1z3xj.in-p${p}`),
      ).sort((a, b) => a - b);
      // The smallest gap between neighbours, around the circle.
      let gap = 1 - phases.at(-1)! + phases[0]!;
      for (let i = 1; i < n; i++) gap = Math.min(gap, phases[i]! - phases[i - 1]!);
      assert.ok(
        gap >= 0.3 / n,
        `${n} partitions: smallest gap ${gap.toFixed(4)} (${phases.map((x) => x.toFixed(3)).join(' ')})`,
      );
    }
  });

  test('tolerable consecutive failures', () => {
    assert.equal(decideOnCheckpointFailure(3, { ...c, tolerableFailures: 3 }), 'continue');
    assert.equal(decideOnCheckpointFailure(4, { ...c, tolerableFailures: 3 }), 'fail-task');
  });
});

describe('restart decisions', () => {
  test('fixed delay gives up after its attempts', () => {
    const s = { kind: 'fixed-delay', attempts: 2, delayMs: 10 } as const;
    assert.deepEqual(decideRestart(s, { restarts: 0, ranForMs: 1 }), {
      restart: true,
      delayMs: 10,
      restarts: 1,
    });
    assert.deepEqual(decideRestart(s, { restarts: 1, ranForMs: 1 }), {
      restart: true,
      delayMs: 10,
      restarts: 2,
    });
    assert.deepEqual(decideRestart(s, { restarts: 2, ranForMs: 1 }), { restart: false });
    assert.deepEqual(decideRestart({ kind: 'none' }, { restarts: 0, ranForMs: 1 }), { restart: false });
  });

  test('exponential backoff grows to its maximum, resets after a quiet run, and honours maxAttempts', () => {
    const s = {
      kind: 'exponential-backoff',
      initialDelayMs: 100,
      maxDelayMs: 1000,
      multiplier: 2,
      maxAttempts: 6,
      resetAfterMs: 5000,
    } as const;
    const delays: number[] = [];
    let restarts = 0;
    for (;;) {
      const d = decideRestart(s, { restarts, ranForMs: 10 });
      if (!d.restart) break;
      delays.push(d.delayMs);
      restarts = d.restarts;
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
    assert.deepEqual(decideRestart(s, { restarts: 6, ranForMs: 6000 }), {
      restart: true,
      delayMs: 100,
      restarts: 1,
    });
  });

  test('a permanent failure is never restarted, whatever the strategy (it would fail the same way forever)', () => {
    const unlimited = {
      kind: 'exponential-backoff',
      initialDelayMs: 1,
      maxDelayMs: 10,
      multiplier: 2,
    } as const;
    for (const s of [unlimited, { kind: 'fixed-delay', attempts: 1000, delayMs: 0 } as const]) {
      assert.deepEqual(decideRestart(s, { restarts: 0, ranForMs: 60_000, permanent: true }), {
        restart: false,
        permanent: true,
      });
      assert.equal(decideRestart(s, { restarts: 0, ranForMs: 60_000, permanent: false }).restart, true);
    }
  });
});

describe('restore decisions', () => {
  const latest = { kind: 'latest' } as const;
  const base: RestoreFacts = { from: latest, committer: false, newest: undefined, restoreFallback: 'refuse' };
  const newest = { checkpointId: 7, fromSavepoint: undefined };

  test('latest: the newest committed checkpoint, or an empty start when there is none', () => {
    assert.deepEqual(decideRestore(base), {
      target: { kind: 'empty' },
      onDamaged: 'refuse-suggest-previous',
      lineage: { kind: 'carried' },
    });
    assert.deepEqual(decideRestore({ ...base, newest }).target, { kind: 'newest' });
    assert.deepEqual(decideRestore({ ...base, newest, committer: true }).target, { kind: 'newest' });
  });

  test('a damaged newest checkpoint: the fallback only where no committed output would be emitted again', () => {
    const plan = (committer: boolean, restoreFallback: 'refuse' | 'previous') =>
      decideRestore({ ...base, newest, committer, restoreFallback }).onDamaged;
    assert.equal(plan(false, 'refuse'), 'refuse-suggest-previous');
    assert.equal(plan(false, 'previous'), 'older');
    // A committer's output up to the newest checkpoint is committed: never an older one.
    assert.equal(plan(true, 'refuse'), 'refuse');
    assert.equal(plan(true, 'previous'), 'refuse-committed');
  });

  test('a savepoint, unless the run has checkpointed past it (its lineage names it)', () => {
    const from = { kind: 'savepoint', name: 'sp' } as const;
    assert.deepEqual(decideRestore({ ...base, from, restoreFallback: 'previous' }), {
      target: { kind: 'savepoint', name: 'sp' },
      onDamaged: 'refuse',
      lineage: { kind: 'savepoint', name: 'sp' },
    });
    assert.deepEqual(decideRestore({ ...base, from, newest }).target, { kind: 'savepoint', name: 'sp' });
    assert.deepEqual(
      decideRestore({ ...base, from, newest: { checkpointId: 9, fromSavepoint: 'other' } }).target,
      { kind: 'savepoint', name: 'sp' },
    );
    const past = decideRestore({ ...base, from, newest: { checkpointId: 9, fromSavepoint: 'sp' } });
    assert.deepEqual(past.target, { kind: 'newest' });
    assert.deepEqual(past.lineage, { kind: 'savepoint', name: 'sp' });
  });

  test('a checkpoint asked for by id: that one, no fallback', () => {
    const from = { kind: 'checkpoint', checkpointId: 3 } as const;
    assert.deepEqual(decideRestore({ ...base, from, newest, restoreFallback: 'previous' }), {
      target: { kind: 'checkpoint', checkpointId: 3 },
      onDamaged: 'refuse',
      lineage: { kind: 'carried' },
    });
  });

  test('damaged means a corrupt or missing file; ids continue above every id the storage holds', () => {
    assert.equal(isDamagedCheckpoint('CHECKPOINT_CORRUPT'), true);
    assert.equal(isDamagedCheckpoint('CHECKPOINT_NOT_FOUND'), true);
    assert.equal(isDamagedCheckpoint('SERIALIZER_MISMATCH'), false);
    assert.equal(isDamagedCheckpoint(undefined), false);
    assert.equal(firstCheckpointId(undefined, undefined), 1);
    assert.equal(firstCheckpointId(4, 9), 10);
    assert.equal(firstCheckpointId(12, 9), 13);
  });
});
