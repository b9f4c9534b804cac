import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type FraudTopics, fraudJob, fraudTopics } from '../../../../examples/fraud/job.ts';
import {
  type Alert,
  alertKey,
  type TimedOutAlert,
  type Transaction,
} from '../../../../examples/fraud/model.ts';
import {
  countryHoppingV2,
  initialPatterns,
  malformedCardTesting,
  maxWithin,
} from '../../../../examples/fraud/patterns.ts';
import { alertTxKey, phase, planPhases, plantedAlerts } from '../../../../examples/fraud/plan.ts';
import { publishPatterns, sendTicks, sendTransactions } from '../../../../examples/fraud/produce.ts';
import { referenceAlerts } from '../../../../examples/fraud/reference.ts';
import type { PatternRejection, PatternUpdate } from '../../../../framework/index.ts';
import { runKafkaJob } from '../../index.ts';
import type { Admin, Producer } from '../../internal/kafkajs.ts';
import { checkpointStorage } from '../jobs/count-job.ts';
import { kcatAll, sendWhenReady } from '../support/eos-helpers.ts';
import { brokersFromEnv, KEEP_OLD_TIMESTAMPS, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const PARTITIONS = 3;
const PHASE_MS = 60 * 60_000;

/**
 * Issue 7 (c) on the real broker: the fraud job takes its CEP patterns from a broadcast topic and
 * swaps them while running. Phase 1 runs card-testing, country-hopping v1 (3 countries in 5 min)
 * and decline-retries; then country-hopping v2 (10 min) is published with a malformed card-testing
 * v2 and a record that is not JSON; phase 2 runs on. Every output is read back with kcat.
 */
describe('fraud detection with patterns from a broadcast topic', () => {
  let admin: Admin;
  let producer: Producer;
  let dir: string;
  before(async () => {
    admin = kafkaClient('fraud-admin').admin();
    producer = kafkaClient('fraud-input').producer({ idempotent: true, maxInFlightRequests: 1 });
    await Promise.all([admin.connect(), producer.connect()]);
    dir = await mkdtemp(join(tmpdir(), 'fraud-'));
  });
  after(async () => {
    await Promise.all([admin.disconnect(), producer.disconnect()]);
    await rm(dir, { recursive: true, force: true });
  });

  test('a pattern swap takes effect in the running job: old-version alerts before it, new-version after it, each equal to the brute-force reference; a malformed pattern is rejected and unchanged patterns keep their partial matches', async () => {
    const n = names('fraud');
    const t: FraudTopics = fraudTopics(n.stem);
    await admin.createTopics({
      topics: Object.values(t).map((topic) => ({
        topic,
        numPartitions: topic === t.patterns ? 1 : PARTITIONS,
        configEntries: KEEP_OLD_TIMESTAMPS,
      })),
      waitForLeaders: true,
    });
    const initial = initialPatterns();
    const v2 = countryHoppingV2();
    const [cardTesting, hoppingV1, declines] = initial as [
      (typeof initial)[0],
      (typeof initial)[0],
      (typeof initial)[0],
    ];
    const plan = planPhases({
      start: Date.UTC(2026, 0, 1),
      phaseMs: PHASE_MS,
      partitions: PARTITIONS,
      perPhase: 24,
      quietMs: maxWithin([...initial, v2]),
      cards: 150,
      gapMs: 200,
    });
    const [phase1, phase2] = [phase(plan, 1), phase(plan, 2)];
    const all = plan.generated.transactions;
    const logged: string[] = [];
    const failures: string[] = [];
    const job = await runKafkaJob(
      fraudJob({ jobId: n.group('job'), topics: t, log: (m) => logged.push(m) }),
      {
        connection: { brokers: brokersFromEnv() },
        storage: checkpointStorage(join(dir, n.stem)),
        checkpoints: { intervalMs: 200 },
        listener: { taskFailed: (f) => failures.push(`task ${f.taskId} failed: ${String(f.error)}`) },
      },
    );
    const read = async <T>(topic: string, what: string, ok: (v: T[]) => boolean): Promise<T[]> => {
      const deadline = Date.now() + 40_000;
      for (;;) {
        const v = await kcatAll<T>(topic);
        if (ok(v)) return v;
        if (Date.now() > deadline)
          throw new Error(
            `timed out waiting for ${what}: ${v.length} records on ${topic}; ${failures.join('; ')}`,
          );
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const txKey = (a: Alert) => alertTxKey({ ...a, ids: Object.values(a.tx).flat() });
    const closed = (alerts: Alert[], p: 0 | 1) =>
      plan.closers[p]!.every((c) => alerts.some((a) => a.card === c.card && a.end === c.tx.at(-1)!.ts));

    let beforeSwap: Alert[];
    try {
      await sendWhenReady(() => publishPatterns(producer, t.patterns, initial));
      await read<PatternUpdate>(
        t.updates,
        'the initial patterns at every task',
        (u) => u.length >= 3 * PARTITIONS,
      );

      await sendTransactions(producer, t.transactions, PARTITIONS, phase1);
      await sendTicks(producer, t.transactions, PARTITIONS, plan.swapAt - 1);
      beforeSwap = await read<Alert>(t.alerts, 'the phase-1 closers', (a) => closed(a, 0));

      // The swap, with two records the job must reject.
      await publishPatterns(producer, t.patterns, [
        v2,
        malformedCardTesting(),
        '{"id": "velocity", not json',
      ]);
      await read<PatternUpdate>(
        t.updates,
        'country-hopping v2 at every task',
        (u) => u.length >= 4 * PARTITIONS,
      );
      await read<PatternRejection>(t.rejections, 'the rejections', (r) => r.length >= 2 * PARTITIONS);

      await sendTransactions(producer, t.transactions, PARTITIONS, phase2);
      // Past every `within`: the last partial matches time out.
      await sendTicks(producer, t.transactions, PARTITIONS, plan.end + 2 * PHASE_MS);
      await read<Alert>(t.alerts, 'the phase-2 closers', (a) => closed(a, 1));
    } finally {
      await job.stop();
    }
    const [alerts, updates, rejections, nearMisses, late] = await Promise.all([
      kcatAll<Alert>(t.alerts),
      kcatAll<PatternUpdate>(t.updates),
      kcatAll<PatternRejection>(t.rejections),
      kcatAll<TimedOutAlert>(t.nearMisses),
      kcatAll<Transaction>(t.late),
    ]);

    // Updates: each accepted version once per task; the malformed card-testing v2 never.
    const acks = (id: string, version: number) =>
      updates.filter((u) => u.id === id && u.version === version && u.status === 'active').length;
    for (const r of initial) assert.equal(acks(r.id, 1), PARTITIONS, `${r.id} v1 acknowledged by each task`);
    assert.equal(acks('country-hopping', 2), PARTITIONS);
    assert.equal(updates.length, 4 * PARTITIONS, 'no other update was accepted');

    // Rejections: one per task and record, each naming what is wrong with its JSON path.
    assert.equal(rejections.length, 2 * PARTITIONS, JSON.stringify(rejections));
    const malformed = rejections.filter((r) => r.id === 'card-testing');
    assert.equal(malformed.length, PARTITIONS);
    for (const r of malformed) {
      assert.equal(r.version, 2);
      assert.match(r.message, /^CEP: rejected pattern 'card-testing' version 2: /);
      assert.match(
        r.message,
        /\$\.pattern\.within: must be a positive number of milliseconds, got "10 minutes"/,
      );
      assert.match(r.message, /\$\.pattern\.stages\[0\]\.where\.<: "<" takes an array of two operands/);
      assert.match(r.message, /\$\.pattern\.stages\[1\]\.join: must be one of next, followedBy/);
      assert.match(r.message, /the running patterns stay$/);
    }
    for (const r of rejections.filter((x) => x.id !== 'card-testing'))
      assert.match(r.message, /\$: not JSON/);
    assert.equal(logged.length, 2 * PARTITIONS, 'each rejection logged');

    // Exactly once: no alert twice.
    const keys = alerts.map(alertKey);
    assert.equal(new Set(keys).size, keys.length, 'an alert was committed twice');

    // Per pattern version, the alerts equal the brute-force reference over the transactions that
    // version saw: unchanged patterns all of them, country-hopping v1 phase 1, v2 phase 2.
    const expected = new Map<string, Alert[]>([
      ['card-testing@1', referenceAlerts(cardTesting, all)],
      ['decline-retries@1', referenceAlerts(declines, all)],
      ['country-hopping@1', referenceAlerts(hoppingV1, phase1)],
      ['country-hopping@2', referenceAlerts(v2, phase2)],
    ]);
    const byVersion = (list: Alert[]) => {
      const m = new Map<string, string[]>();
      for (const a of list)
        m.set(`${a.pattern}@${a.version}`, [...(m.get(`${a.pattern}@${a.version}`) ?? []), alertKey(a)]);
      for (const v of m.values()) v.sort();
      return m;
    };
    const got = byVersion(alerts);
    assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort(), 'alerts of exactly these versions');
    for (const [version, want] of expected) {
      assert.ok(want.length >= 3, `${version}: the reference expects alerts`);
      assert.deepEqual(
        got.get(version),
        want.map(alertKey).sort(),
        `${version}: alerts differ from the reference`,
      );
    }
    // The swap matters: over phase 2, v1 and v2 find different alerts (the slow hops).
    const v1OnPhase2 = referenceAlerts(hoppingV1, phase2);
    const v2OnPhase2 = referenceAlerts(v2, phase2);
    assert.ok(v2OnPhase2.length > v1OnPhase2.length, 'v2 finds more than v1 would have on phase 2');
    // The planted scenarios, an independent account of what must be found, agree.
    const swaps = [{ pattern: 'country-hopping', version: 2, at: plan.swapAt }];
    assert.deepEqual(alerts.map(txKey).sort(), plantedAlerts(plan.generated.planted, swaps));

    // Either side of the swap: v1 alerts were all out before it, v2 alerts only after it.
    const before1 = beforeSwap!.filter((a) => a.pattern === 'country-hopping');
    assert.ok(before1.length > 0 && before1.every((a) => a.version === 1), 'only v1 before the swap');
    assert.deepEqual(
      before1.map(alertKey).sort(),
      got.get('country-hopping@1'),
      'every v1 alert was committed before the swap',
    );
    assert.ok(alerts.filter((a) => a.version === 2).every((a) => a.start >= plan.swapAt));
    // Card-testing, whose update was rejected, kept running after the swap.
    assert.ok(alerts.some((a) => a.pattern === 'card-testing' && a.start >= plan.swapAt));

    // Partial matches across the swap: kept for the unchanged patterns (card-testing,
    // decline-retries: begun before, completed after, emitted after), dropped for the changed one.
    for (const s of plan.straddling) {
      const mine = alerts.filter((a) => a.card === s.card && a.start === s.tx[0]!.ts);
      assert.ok(s.tx[0]!.ts < plan.swapAt && s.tx.at(-1)!.ts >= plan.swapAt);
      if (s.kind === 'fast-hop') {
        assert.deepEqual(mine, [], 'the partial match of country-hopping v1 is dropped at the swap');
      } else {
        assert.equal(mine.length, 1, `${s.kind} across the swap: ${JSON.stringify(mine)}`);
        assert.deepEqual(Object.values(mine[0]!.tx).flat().sort(), s.tx.map((x) => x.id).sort());
        assert.ok(!beforeSwap!.some((a) => alertKey(a) === alertKey(mine[0]!)), 'completed after the swap');
      }
    }

    // Near misses: each decline with a single retry, and each slow hop under v1 (two countries in
    // 5 minutes, the third too late), times out with exactly its transactions.
    const misses = new Set(nearMisses.map(txKey));
    let checkedMisses = 0;
    for (const p of plan.generated.planted) {
      if (p.kind === 'decline-once') {
        const k = alertTxKey({
          pattern: 'decline-retries',
          version: 1,
          card: p.card,
          ids: p.tx.map((x) => x.id),
        });
        assert.ok(misses.has(k), `near miss ${k}`);
        checkedMisses++;
      }
      if (p.kind === 'slow-hop' && p.tx.at(-1)!.ts < plan.swapAt) {
        const ids = p.tx.slice(0, 2).map((x) => x.id);
        const k = alertTxKey({ pattern: 'country-hopping', version: 1, card: p.card, ids });
        assert.ok(misses.has(k), `near miss ${k}`);
        checkedMisses++;
      }
    }
    assert.ok(checkedMisses >= 4);
    assert.deepEqual(late, [], 'no transaction was late');
    const count = (v: string) => got.get(v)?.length ?? 0;
    console.log(
      `fraud: ${all.length} transactions (${phase1.length} + ${phase2.length}), ${PARTITIONS} partitions; alerts card-testing@1 ${count('card-testing@1')}, country-hopping@1 ${count('country-hopping@1')} (before the swap), country-hopping@2 ${count('country-hopping@2')} (after), decline-retries@1 ${count('decline-retries@1')}; ${rejections.length} rejections; ${nearMisses.length} near misses; ${failures.length} task failures`,
    );
  });
});
