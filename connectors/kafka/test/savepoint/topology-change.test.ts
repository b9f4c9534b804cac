/**
 * Job changes on the real broker (docs/savepoints.md, "Job changes"): a windowed page-view count is
 * stopped with windows pending and started again as another version whose stages differ. Every
 * window's result must be committed exactly once with the right count (kcat, read_committed, per key
 * in offset order): the pending windows' state is found by the operator's uid in the old stage's
 * checkpoints and moved into its new stage. A version without the window refuses to start
 * (STATE_NOT_RESTORED, exit 78) unless --allow-non-restored-state drops the state.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { keyGroupOf, keyId } from '../../../../framework/index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { kafkaJobChangeHooks } from '../../job-change.ts';
import { type View, WINDOW_MS, type WindowCount } from '../jobs/topology-job.ts';
import { type JobProcess, openTransactions, startJobProcess } from '../support/crash-helpers.ts';
import { sendWhenReady } from '../support/eos-helpers.ts';
import { brokersFromEnv, eventually, KEEP_OLD_TIMESTAMPS, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { kcatRecords, readCommittedRecords } from '../support/sequence-check.ts';

const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const JOB = fileURLToPath(new URL('../jobs/topology-job.ts', import.meta.url));
const PARTITIONS = 3;
const KEYS = 30;
const STEP_MS = 50;
/** Windows aligned on 10 s; an hour ago, so no retention question arises (topics keep everything anyway). */
const T0 = Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS - 3_600_000;

const view = (i: number): View => ({ k: `u${i % KEYS}`, n: i, t: T0 + i * STEP_MS });
const partitionOf = (k: string) => keyGroupOf(keyId(k), PARTITIONS);
/** One key per partition, for the records that end the test's event time (their windows never fire). */
const SENTINELS = Array.from({ length: PARTITIONS }, (_, p) => {
  for (let i = 0; ; i++) if (partitionOf(`end${i}`) === p) return `end${i}`;
});

/** Per key, every window of `events`: start, count, first and last n; in window order. */
function windowsOf(events: readonly View[]): Map<string, Omit<WindowCount, 'k'>[]> {
  const m = new Map<string, Map<number, { w: number; count: number; first: number; last: number }>>();
  for (const e of events) {
    const w = Math.floor(e.t / WINDOW_MS) * WINDOW_MS;
    const byW = m.get(e.k) ?? new Map();
    m.set(e.k, byW);
    const c = byW.get(w) ?? { w, count: 0, first: e.n, last: e.n };
    byW.set(w, { w, count: c.count + 1, first: Math.min(c.first, e.n), last: Math.max(c.last, e.n) });
  }
  return new Map([...m].map(([k, byW]) => [k, [...byW.values()].sort((a, b) => a.w - b.w)]));
}

/**
 * The windows that have fired once `events` are processed: a task's watermark is the largest event
 * time of its partition - 1 (one input channel, no out-of-orderness), and a window fires when the
 * watermark reaches its end - 1. In every version, the task holding key k reads k's input partition
 * (the repartition topic has as many partitions and the same murmur2 placement).
 */
function firedOf(events: readonly View[]): Map<string, Omit<WindowCount, 'k'>[]> {
  const maxT = new Map<number, number>();
  for (const e of events) maxT.set(partitionOf(e.k), Math.max(maxT.get(partitionOf(e.k)) ?? 0, e.t));
  const out = new Map<string, Omit<WindowCount, 'k'>[]>();
  for (const [k, ws] of windowsOf(events)) {
    const fired = ws.filter((w) => w.w + WINDOW_MS <= maxT.get(partitionOf(k))!);
    if (fired.length > 0) out.set(k, fired);
  }
  return out;
}

const total = (m: Map<string, unknown[]>) => [...m.values()].reduce((n, l) => n + l.length, 0);

/**
 * Per key, the committed window results in offset order must be exactly `expected`'s: none missing,
 * none twice, every count right. Returns how many keys differ and the first differences (for a
 * failing run's figures).
 */
async function checkWindows(
  topic: string,
  expected: Map<string, Omit<WindowCount, 'k'>[]>,
): Promise<{ keys: number; broken: string[]; records: number }> {
  const records = await readCommittedRecords<WindowCount>(topic, total(expected), 90_000);
  const seen = new Map<string, Omit<WindowCount, 'k'>[]>();
  const partitions = new Map<string, Set<number>>();
  for (const r of [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    const { k, ...rest } = r.value;
    seen.set(k, [...(seen.get(k) ?? []), rest]);
    partitions.set(k, (partitions.get(k) ?? new Set()).add(r.partition));
  }
  const broken: string[] = [];
  for (const k of new Set([...expected.keys(), ...seen.keys()])) {
    const want = expected.get(k) ?? [];
    const got = seen.get(k) ?? [];
    if ((partitions.get(k)?.size ?? 1) > 1)
      broken.push(`${k}: results in ${partitions.get(k)!.size} partitions`);
    else if (JSON.stringify(got) !== JSON.stringify(want)) {
      const i = want.findIndex((w, j) => JSON.stringify(w) !== JSON.stringify(got[j]));
      broken.push(
        `${k}: ${got.length} results for ${want.length} windows; first difference at #${i < 0 ? want.length : i}: got ${JSON.stringify(got[i < 0 ? want.length : i])}, want ${JSON.stringify(want[i < 0 ? want.length : i])}`,
      );
    }
  }
  return { keys: expected.size, broken, records: records.length };
}

describe('job changes: state follows its operator uid across stage boundaries (real broker, kstate run)', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('topology-change-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'topology-change-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(label: string) {
    const n = names(`topology-${label}`);
    const t = { input: n.topic('in'), output: n.topic('out'), raw: n.topic('raw'), jobId: n.group('job') };
    await admin.createTopics({
      topics: [t.input, t.output, t.raw].map((topic) => ({
        topic,
        numPartitions: PARTITIONS,
        configEntries: KEEP_OLD_TIMESTAMPS,
      })),
      waitForLeaders: true,
    });
    const producer = kafkaClient(`topology-producer-${label}`).producer({
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    const events: View[] = [];
    const processes: JobProcess[] = [];
    const env = (version: number): Record<string, string> => ({
      KSTATE_BROKERS: brokersFromEnv().join(','),
      KSTATE_CHECKPOINT_DIR: join(dir, n.stem, 'checkpoints'),
      KSTATE_STATE_DIR: join(dir, n.stem, 'state'),
      KSTATE_HTTP_PORT: '0',
      KSTATE_CHECKPOINT_INTERVAL_MS: '300',
      KSTATE_SESSION_TIMEOUT_MS: '6000',
      KSTATE_LOG_LEVEL: 'info',
      TC_JOB_ID: t.jobId,
      TC_INPUT: t.input,
      TC_OUTPUT: t.output,
      TC_RAW: t.raw,
      TC_VERSION: String(version),
    });
    const ctx = {
      ...t,
      events,
      /** Views [from, to) into the input, keyed by k (kafkajs: murmur2, like the job's key groups). */
      async produce(from: number, to: number) {
        const batch = Array.from({ length: to - from }, (_, i) => view(from + i));
        events.push(...batch);
        for (let i = 0; i < batch.length; i += 500) {
          const messages = batch.slice(i, i + 500).map((v) => ({ key: v.k, value: JSON.stringify(v) }));
          await sendWhenReady(() => producer.send({ topic: t.input, messages }));
        }
      },
      /** One view per partition far ahead in event time: every window of the views before fires. */
      async produceEnd() {
        const t1 = Math.max(...events.map((e) => e.t)) + 6 * WINDOW_MS;
        const ends = SENTINELS.map((k, p) => ({ k, n: -1 - p, t: t1 }));
        await producer.send({
          topic: t.input,
          messages: ends.map((v) => ({ key: v.k, value: JSON.stringify(v) })),
        });
      },
      start(version: number, flags: string[] = [], extraEnv: Record<string, string> = {}): JobProcess {
        const p = startJobProcess({ ...env(version), ...extraEnv }, CLI, ['run', JOB, ...flags]);
        processes.push(p);
        return p;
      },
      /** Until the group's committed offsets of `topics` reach their ends: the last checkpoint covers every record. */
      async committedToEnd(topics: string[], job: JobProcess) {
        const deadline = Date.now() + 120_000;
        for (;;) {
          let behind = 0;
          for (const topic of topics) {
            const ends = await admin.fetchTopicOffsets(topic);
            const [committed] = await admin.fetchOffsets({ groupId: t.jobId, topics: [topic] });
            for (const e of ends) {
              const c = committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? '-1';
              if (BigInt(c) < BigInt(e.high)) behind++;
            }
          }
          if (behind === 0) return;
          if (Date.now() > deadline)
            throw new Error(
              `${behind} partitions not committed to their end; job output:\n${job.lines.slice(-20).join('\n')}`,
            );
          await new Promise((r) => setTimeout(r, 250));
        }
      },
      /** Kill what a failed test left running. */
      async close() {
        for (const p of processes)
          if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
        await Promise.all(processes.map((p) => p.exited));
        await producer.disconnect();
      },
    };
    return ctx;
  }

  /** Wait until `expected` window results are committed (or 90 s), then require exactly them. */
  async function expectWindows(
    topic: string,
    expected: Map<string, Omit<WindowCount, 'k'>[]>,
    job: JobProcess,
  ) {
    const r = await checkWindows(topic, expected);
    assert.deepEqual(
      r.broken,
      [],
      `${r.broken.length} of ${r.keys} keys have wrong window results (${r.records} committed for ${total(expected)} windows); job output:\n${job.lines.slice(-12).join('\n')}`,
    );
  }

  test('kill -9; a repartition added (the window moves stage); a stateless map inserted; the window removed: refused, then dropped with --allow-non-restored-state', async (t) => {
    const c = await setup('kill');
    const repartition = `${c.jobId}.window.repartition`;
    try {
      // v1: one stage. Windows up to 50 s fire, [50 s, 60 s) is pending when the process is killed.
      await c.produce(0, 1100);
      const v1 = c.start(1);
      await expectWindows(c.output, firedOf(c.events), v1);
      await c.committedToEnd([c.input], v1);
      v1.child.kill('SIGKILL');
      await v1.exited;

      // v2: keyBy(k, { repartition: true }). The pending windows' state must be found in stage 'views'
      // and continue in stage 'window-repartition-in0'.
      await c.produce(1100, 2200);
      const v2 = c.start(2);
      await expectWindows(c.output, firedOf(c.events), v2);
      assert.ok(v2.lines.some((l) => /job changed: state re-cut by operator uid/.test(l)));
      await c.committedToEnd([c.input, repartition], v2);
      v2.child.kill('SIGTERM');
      assert.equal(await v2.exited, 0);

      // v3: a stateless map inserted before the keyed operator: same stages, everything restored.
      await c.produce(2200, 3000);
      await c.produceEnd();
      const v3 = c.start(3);
      await expectWindows(c.output, windowsOf(c.events), v3);
      assert.ok(!v3.lines.some((l) => /job changed/.test(l)), 'v3 has the stages of v2');
      await c.committedToEnd([c.input, repartition], v3);
      v3.child.kill('SIGKILL');
      await v3.exited;

      // v4: the window removed: its state (the sentinels' pending windows) has no operator.
      const refused = c.start(4);
      assert.equal(await refused.exited, 78, refused.lines.join('\n'));
      const message = refused.lines.join('\n');
      t.diagnostic(`v4 refused: ${refused.lines.find((l) => /no operator/.test(l))}`);
      assert.match(message, /has no operator in this version of the job/);
      assert.match(
        message,
        /operator 'window' \(stage window-repartition-in0\): keyed state '[^']+' \(\d+ keys\)/,
      );
      assert.match(message, /--allow-non-restored-state/);

      const v4 = c.start(4, ['--allow-non-restored-state']);
      t.diagnostic(
        `v4 allowed: ${await v4.waitFor(/dropping state of the last run that no operator of this job claims/, 60_000)}`,
      );
      await c.produce(3000, 3300);
      const raw = await readCommittedRecords<View>(c.raw, 300, 90_000);
      const byKey = new Map<string, number[]>();
      for (const r of [...raw].sort((a, b) => a.partition - b.partition || a.offset - b.offset))
        byKey.set(r.value.k, [...(byKey.get(r.value.k) ?? []), r.value.n]);
      for (const [k, ns] of byKey) {
        const want = c.events.filter((e) => e.k === k && e.n >= 3000).map((e) => e.n);
        assert.deepEqual(ns, want, `v4 copies ${k}'s views once, in order`);
      }
      assert.equal(raw.length, 300);
      // The removed stage's transactions were fenced before its state was read: none is left open.
      const txns = await openTransactions(`${c.jobId}.window-repartition-in0-p`);
      assert.deepEqual(txns.open, []);
      // The windows' output is as it was.
      await expectWindows(c.output, windowsOf(c.events.filter((e) => e.n < 3000)), v4);
      v4.child.kill('SIGTERM');
      assert.equal(await v4.exited, 0);
    } finally {
      await c.close();
    }
  });

  test('a changed version is refused while the old one runs (JOB_CHANGE_BLOCKED); --from-savepoint of the old layout is re-cut', async (t) => {
    const c = await setup('savepoint');
    try {
      await c.produce(0, 1100);
      const v1 = c.start(1, ['--savepoint-on-stop', 'before-change']);
      await expectWindows(c.output, firedOf(c.events), v1);
      // v2 while v1 is a member of the group: its committed checkpoints are no consistent cut.
      const blocked = c.start(2);
      assert.equal(await blocked.exited, 78, blocked.lines.join('\n'));
      const line = blocked.lines.find((l) => /still has 1 member/.test(l));
      assert.ok(line, blocked.lines.join('\n'));
      t.diagnostic(`v2 blocked: ${line}`);
      await c.committedToEnd([c.input], v1);
      v1.child.kill('SIGTERM');
      assert.equal(await v1.exited, 0);

      await c.produce(1100, 2200);
      await c.produceEnd();
      const v2 = c.start(2, ['--from-savepoint', 'before-change']);
      await expectWindows(c.output, windowsOf(c.events), v2);
      assert.ok(
        v2.lines.some((l) =>
          /savepoint 'before-change' re-cut by operator uid into savepoint 'before-change\.[0-9a-f]{12}'/.test(
            l,
          ),
        ),
        v2.lines.join('\n'),
      );
      v2.child.kill('SIGTERM');
      assert.equal(await v2.exited, 0);
    } finally {
      await c.close();
    }
  });

  test('SIGTERM with windows pending, then a repartition added: every window once with its count', async () => {
    const c = await setup('term');
    try {
      await c.produce(0, 1100);
      const v1 = c.start(1);
      await expectWindows(c.output, firedOf(c.events), v1);
      await c.committedToEnd([c.input], v1);
      v1.child.kill('SIGTERM');
      assert.equal(await v1.exited, 0);

      await c.produce(1100, 2200);
      await c.produceEnd();
      const v2 = c.start(2);
      await expectWindows(c.output, windowsOf(c.events), v2);
      // And per key, in offset order: kcat sees each key's windows in window order.
      const records = await kcatRecords<WindowCount>(c.output);
      assert.equal(records.length, total(windowsOf(c.events)));
      v2.child.kill('SIGTERM');
      assert.equal(await v2.exited, 0);
    } finally {
      await c.close();
    }
  });

  test('two instances of a changed version started together: both run (neither blocked by the other), every window once', async (t) => {
    const c = await setup('together');
    try {
      await c.produce(0, 1100);
      const v1 = c.start(1);
      await expectWindows(c.output, firedOf(c.events), v1);
      await c.committedToEnd([c.input], v1);
      v1.child.kill('SIGTERM');
      assert.equal(await v1.exited, 0);

      await c.produce(1100, 2200);
      await c.produceEnd();
      const both = [c.start(2), c.start(2)];
      // Running, or why not: the first one joins the group while the other still decides.
      const running = await Promise.all(
        both.map((p) =>
          Promise.race([
            p.waitFor(/"msg":"service running"/, 90_000).then(() => 'running'),
            p.exited.then((code) => `exited ${code}: ${p.lines.slice(-3).join(' | ')}`),
          ]),
        ),
      );
      t.diagnostic(`started together: ${running.join('; ')}`);
      // Which way the second one followed: after losing the record commit, or while waiting (Superseded).
      t.diagnostic(
        `followed the other's record: ${both.flatMap((p) => p.lines.filter((l) => /another instance recorded the job topology/.test(l)).map((l) => JSON.parse(l).msg)).join('; ')}`,
      );
      assert.deepEqual(running, ['running', 'running']);
      await expectWindows(c.output, windowsOf(c.events), both[0]!);
      for (const p of both) p.child.kill('SIGTERM');
      assert.deepEqual(await Promise.all(both.map((p) => p.exited)), [0, 0]);
    } finally {
      await c.close();
    }
  });

  test('--workers 2: a refused start (STATE_NOT_RESTORED) exits 78 once, no worker started again', async (t) => {
    const c = await setup('workers');
    try {
      await c.produce(0, 1100);
      const v1 = c.start(1);
      await expectWindows(c.output, firedOf(c.events), v1);
      await c.committedToEnd([c.input], v1);
      v1.child.kill('SIGTERM');
      assert.equal(await v1.exited, 0);
      // v4 has no window: the pending windows' state has no operator, in every worker.
      const refused = c.start(4, ['--workers', '2'], { KSTATE_HTTP_PORT: String(await freePort()) });
      const code = await Promise.race([
        refused.exited,
        new Promise((r) => setTimeout(() => r('no exit in 90 s'), 90_000).unref()),
      ]);
      const restarts = refused.lines.filter((l) => /worker exited; starting a new one/.test(l)).length;
      const refusals = refused.lines.filter((l) =>
        /has no operator in this version of the job/.test(l),
      ).length;
      t.diagnostic(`exit ${code}, ${refusals} refusal lines, ${restarts} workers started again`);
      assert.equal(
        code,
        78,
        `${restarts} workers started again; output:\n${refused.lines.slice(-12).join('\n')}`,
      );
      assert.equal(restarts, 0);
      assert.ok(refused.lines.some((l) => /job failed permanently in a worker: stopping the others/.test(l)));
    } finally {
      await c.close();
    }
  });

  test("a removed source's backlog counts committed records only: an aborted transaction and the markers are none", async (t) => {
    const n = names('topology-backlog');
    const topic = n.topic('repartition');
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const kafka = kafkaClient('topology-backlog');
    const producer = kafka.producer({ transactionalId: n.stem, idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      const write = async (count: number, commit: boolean) => {
        const tx = await producer.transaction();
        await tx.send({
          topic,
          messages: Array.from({ length: count }, (_, i) => ({ key: `k${i}`, value: 'v' })),
        });
        await (commit ? tx.commit() : tx.abort());
      };
      // What `fence` leaves of a killed upstream's transaction: its records and an abort marker.
      await write(5, false);
      const hooks = kafkaJobChangeHooks({
        kafka,
        jobId: n.group('job'),
        repartitionTopics: new Set(),
        leaveTimeoutMs: 0,
      });
      const source = { uid: 'r', topic, broadcast: false };
      const aborted = await hooks.backlog!(source, 0, { topic, offset: '0' });
      // Then a committed transaction of 3 after it: 3 records not consumed. A commit returns before the
      // broker has written its markers (asynchronously): until then the read_committed end offset, and
      // so the backlog, stops before the transaction. Measured once it covers all 10 offsets (5
      // aborted, a marker, 3, a marker), as a job change comes long after its upstream's last commit.
      await write(3, true);
      await eventually(
        async () => ((await admin.fetchTopicOffsets(topic))[0]!.high === '10' ? true : undefined),
        30_000,
        () => `the committed end offset of ${topic} to reach 10`,
      );
      const hooks2 = kafkaJobChangeHooks({
        kafka,
        jobId: n.group('job'),
        repartitionTopics: new Set(),
        leaveTimeoutMs: 0,
      });
      const committed = await hooks2.backlog!(source, 0, { topic, offset: '0' });
      const ends = await admin.fetchTopicOffsets(topic);
      t.diagnostic(
        `end offset ${ends[0]!.high}; backlog of the aborted range ${aborted}, with 3 committed after it ${committed}`,
      );
      assert.equal(aborted, 0);
      assert.equal(committed, 3);
    } finally {
      await producer.disconnect();
    }
  });
});

/** A TCP port nothing listens on now (for the primary's HTTP server under --workers). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
