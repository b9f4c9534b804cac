import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { CustomerTotal } from '../../../../examples/orders/job.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { readCommitted, sendWhenReady } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const ORDERS = fileURLToPath(new URL('../../../../examples/orders/service.ts', import.meta.url));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function until<T>(what: string, ms: number, f: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** What the test reads of /status.json (connectors/kafka/cli/status.ts, StatusJson). */
interface StatusView {
  tasks: { taskId: string; owner: { pid: number; worker?: number; memberId?: string } }[];
  checkpoints: Record<string, unknown[]>;
  lag: unknown[];
  totals: { inPerSec: number; outPerSec: number };
  scope: string;
  instance: { workers?: number };
}

/** The inner markup of the element with this tag and id in a DOM dump. */
const element = (dom: string, tag: string, id: string) =>
  new RegExp(`<${tag} id="${id}"[^>]*>([\\s\\S]*?)</${tag}>`).exec(dom)?.[1] ?? '';

/** The data-value numbers of the cells with this class, in order. */
const numberIn = (html: string, cls: string) =>
  [...html.matchAll(new RegExp(`class="n? ?${cls}" data-value="([^"]+)"`, 'g'))].map((m) => Number(m[1]));

/** Orders produced every 100 ms from id `from` on, until `stop()` (which resolves with the count). */
function keepProducing(topic: string, from: number): { stop(): Promise<number> } {
  const producer = kafkaClient('service-flow').producer({ idempotent: true, maxInFlightRequests: 1 });
  let next = from;
  let stopped = false;
  const loop = (async () => {
    await producer.connect();
    while (!stopped) {
      const messages = Array.from({ length: 50 }, () => {
        const j = next++;
        const customer = `c${j % 29}`;
        return { key: customer, value: JSON.stringify({ id: j, customer, amount: 1 + (j % 20), ts: j }) };
      });
      await sendWhenReady(() => producer.send({ topic, messages }));
      await new Promise((r) => setTimeout(r, 100));
    }
    await producer.disconnect();
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return next - from;
    },
  };
}

describe('the service: status page, savepoints, workers', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('service-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'service-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  /** Topics of the orders job and its environment; `count` orders produced now, or by `produce()`. */
  async function ordersTopics(label: string, count: number, o: { later?: boolean } = {}) {
    const n = names(label);
    const input = n.topic('orders');
    const output = n.topic('totals');
    // Event times of 1970 as Kafka timestamps: no time-based retention, or committed output goes
    // when a transaction marker rolls its segment (docs/kafka.md, "Record timestamps and retention").
    await admin.createTopics({
      topics: [input, output].map((topic) => ({
        topic,
        numPartitions: 4,
        configEntries: [{ name: 'retention.ms', value: '-1' }],
      })),
      waitForLeaders: true,
    });
    const produce = async () => {
      const producer = kafkaClient('service-orders').producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const messages: { key: string; value: string }[] = [];
      for (let j = 0; j < count; j++) {
        const customer = `c${j % 29}`;
        messages.push({
          key: customer,
          value: JSON.stringify({ id: j, customer, amount: 1 + (j % 20), ts: j }),
        });
      }
      await sendWhenReady(() => producer.send({ topic: input, messages }));
      await producer.disconnect();
    };
    if (!o.later) await produce();
    const port = await freePort();
    const env = {
      ORDERS_INPUT: input,
      ORDERS_OUTPUT: output,
      ORDERS_JOB_ID: n.group('job'),
      KSTATE_BROKERS: brokersFromEnv().join(','),
      KSTATE_STATE_DIR: join(dir, n.stem, 'state'),
      KSTATE_CHECKPOINT_DIR: join(dir, n.stem, 'checkpoints'),
      KSTATE_CHECKPOINT_INTERVAL_MS: '300',
      KSTATE_HTTP_PORT: String(port),
      // POST /savepoint is an action: on only with an admin token (docs/service.md).
      KSTATE_ADMIN_TOKEN: 'service-test-admin-token',
    };
    return { input, output, env, port, jobId: env.ORDERS_JOB_ID, produce };
  }

  function start(
    env: Record<string, string>,
    extra: string[] = [],
  ): { child: ChildProcess; out: string[]; exit: Promise<number | null> } {
    const child = spawn(process.execPath, [CLI, 'run', ORDERS, ...extra], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: string[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
    child.stderr!.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
    return { child, out, exit: new Promise((r) => child.on('exit', (c) => r(c))) };
  }

  test('the status page renders live tasks (throughput, watermark, owner, late records, failures), checkpoints per task and lag in headless Chromium; a savepoint is taken on request', async () => {
    const t = await ordersTopics('status page', 4000);
    const s = start(t.env);
    let flowing: { stop(): Promise<number> } | undefined;
    try {
      const base = `http://127.0.0.1:${t.port}`;
      await until('readiness', 30_000, async () =>
        (await fetch(`${base}/readyz`)).status === 200 ? true : undefined,
      );
      await readCommitted<CustomerTotal>(t.output, 4000, 60_000);
      // The service's metrics, with plausible values (before more input flows). The lag of a sample
      // lands when its request to the brokers answers, after the sample's record counts: both waited for.
      const text = await until('records out of all orders, and the lag, in /metrics', 20_000, async () => {
        const m = await (await fetch(`${base}/metrics`)).text();
        const out = [
          ...m.matchAll(/^kstate_records_out_total\{[^}]*operator="customer-totals"[^}]*\} (\d+)/gm),
        ];
        const lagSeries = (m.match(/^kstate_consumer_lag\{/gm) ?? []).length;
        return out.reduce((a, x) => a + Number(x[1]), 0) === 4000 && lagSeries > 0 ? m : undefined;
      });
      assert.match(text, /^kstate_transactions_total\{[^}]*outcome="committed"[^}]*\} [1-9]\d*$/m);
      assert.equal((text.match(/^kstate_consumer_lag\{/gm) ?? []).length, 4);
      assert.match(text, /^kstate_watermark_lag_seconds\{[^}]*operator="customer-totals"[^}]*\} \d/m);
      assert.match(text, /^kstate_state_size_bytes\{[^}]*backend="level"[^}]*\} [1-9]/m);
      assert.match(text, /^kstate_end_to_end_latency_seconds_count\{[^}]*\} [1-9]/m);
      // No order is late (they arrive in time order per customer): one series per task at 0.
      assert.equal(
        (text.match(/^kstate_late_records_dropped_total\{[^}]*operator="customer-totals"[^}]*\} 0$/gm) ?? [])
          .length,
        4,
      );

      // Orders keep flowing while the page is looked at.
      flowing = keepProducing(t.input, 4000);
      const status = await until('records flowing in /status.json', 30_000, async () => {
        const j = (await (await fetch(`${base}/status.json`)).json()) as StatusView;
        return j.lag.length === 4 && j.totals.inPerSec > 0 && j.totals.outPerSec > 0 ? j : undefined;
      });
      assert.equal(status.tasks.length, 4);
      assert.equal(Object.keys(status.checkpoints).length, 4, 'one checkpoint series per task');
      const chromium = [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${join(dir, 'chromium')}`,
        '--virtual-time-budget=5000',
      ];
      const { stdout: dom } = await run('chromium', [...chromium, '--dump-dom', `${base}/status`], {
        timeout: 60_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      assert.match(dom, /data-loaded="true"/, 'the page did not load its data');
      const tasks = element(dom, 'table', 'tasks');
      assert.equal(
        (tasks.match(/<td><span class="running">running<\/span><\/td>/g) ?? []).length,
        4,
        'four running tasks in the table',
      );
      // Throughput while records flow: the totals and every task's records in per second.
      const totals = element(dom, 'table', 'totals');
      assert.ok(numberIn(totals, 'in-rate')[0]! > 0, `records in/s: ${totals}`);
      assert.ok(numberIn(totals, 'out-rate')[0]! > 0, `records out/s: ${totals}`);
      assert.equal(numberIn(totals, 'late')[0], 0);
      assert.equal(numberIn(totals, 'cp-failed')[0], 0);
      // Each task: a watermark (the orders' event times are 1970 ms, so no lag behind the wall clock
      // is shown), its owner (this service's host and pid), no late record, no failed checkpoint.
      const marks = numberIn(tasks, 'watermark');
      assert.equal(marks.length, 4);
      for (const m of marks) assert.ok(m > 0 && m < 1_000_000, `watermark ${m}`);
      assert.equal((tasks.match(/class="n wm-lag" data-value=""/g) ?? []).length, 4);
      assert.equal(tasks.split(`${hostname()}:${s.child.pid}`).length - 1, 4, 'the owner of each task');
      assert.deepEqual(numberIn(tasks, 'late'), [0, 0, 0, 0]);
      assert.deepEqual(numberIn(tasks, 'cp-failed'), [0, 0, 0, 0]);
      const member = /<b class="member-id">([^<]+)<\/b>/.exec(dom)?.[1] ?? '';
      assert.match(member, /^kstate-.+-[0-9a-f-]{36}$|^[^ (]+-[0-9a-f-]{36}$/, `member id ${member}`);
      assert.match(dom, /This page shows this instance's tasks: all 4 tasks of the job run here\./);
      // Checkpoint durations: one line per task, not one line through all tasks' checkpoints.
      const series = [
        ...element(dom, 'svg', 'durations').matchAll(/<polyline class="series" data-task="([^"]+)"/g),
      ].map((m) => m[1]);
      assert.equal(series.length, 4);
      assert.deepEqual(new Set(series), new Set(status.tasks.map((x) => x.taskId)));
      assert.match(dom, new RegExp(`<td>${t.input}</td>`), 'no lag rows');
      const png = join(dir, 'status.png');
      await run(
        'chromium',
        [...chromium, '--window-size=1400,1100', `--screenshot=${png}`, `${base}/status`],
        { timeout: 60_000 },
      );
      assert.ok((await stat(png)).size > 10_000, 'the screenshot is empty');
      await flowing.stop();
      flowing = undefined;
      // A savepoint asked of the running service, then listed.
      const sp = await run(process.execPath, [CLI, 'savepoint', 'before-upgrade', '--port', String(t.port)], {
        env: { ...process.env, ...t.env },
      });
      assert.match(sp.stdout, /"savepoint":"before-upgrade"/);
      const listed = await run(process.execPath, [CLI, 'checkpoints', t.jobId], {
        env: { ...process.env, ...t.env },
      });
      assert.equal(listed.stdout.split('\n').filter((l) => l.endsWith('\tbefore-upgrade')).length, 4);
    } finally {
      await flowing?.stop();
      s.child.kill('SIGTERM');
      assert.equal(await s.exit, 0, s.out.slice(-10).join('\n'));
    }
  });

  test('two workers in one process share the partitions, and the primary serves one /metrics with both', async () => {
    // The input comes once both workers own their partitions: a worker that joined first would
    // otherwise process records it then hands over, and /metrics would count them twice.
    const t = await ordersTopics('workers', 6000, { later: true });
    const s = start(t.env, ['--workers', '2']);
    try {
      const base = `http://127.0.0.1:${t.port}`;
      await until('both workers ready', 45_000, async () =>
        (await fetch(`${base}/readyz`)).status === 200 ? true : undefined,
      );
      await t.produce();
      await readCommitted<CustomerTotal>(t.output, 6000, 60_000);
      const metrics = await until('records of all four tasks in /metrics', 20_000, async () => {
        const text = await (await fetch(`${base}/metrics`)).text();
        const tasks = new Set(
          [...text.matchAll(/^kstate_records_in_total\{[^}]*task="([^"]+)"[^}]*\} (\d+)/gm)].map((m) => m[1]),
        );
        const total = [...text.matchAll(/^kstate_records_in_total\{[^}]*\} (\d+)/gm)].reduce(
          (a, m) => a + Number(m[1]),
          0,
        );
        return tasks.size === 4 && total === 6000 ? text : undefined;
      });
      assert.match(metrics, /^kstate_tasks\{[^}]*state="running"[^}]*\} 4$/m);
      // The four tasks ran in two different workers (their log lines carry the worker id).
      const workersOfTasks = new Set(
        s.out
          .filter((l) => l.includes('"msg":"task restored"'))
          .map((l) => (JSON.parse(l) as { worker: number }).worker),
      );
      assert.equal(workersOfTasks.size, 2, `tasks ran in workers ${[...workersOfTasks]}`);
      // The primary's status page shows the workers' tasks, each with its worker as owner.
      const status = await until('the four tasks in the primary /status.json', 20_000, async () => {
        const j = (await (await fetch(`${base}/status.json`)).json()) as StatusView;
        return j.tasks.length === 4 && j.tasks.every((x) => x.owner.memberId) ? j : undefined;
      });
      assert.equal(status.scope, 'workers');
      assert.equal(status.instance.workers, 2);
      assert.equal(new Set(status.tasks.map((x) => x.owner.worker)).size, 2, 'owned by two workers');
      const pids = new Set(status.tasks.map((x) => x.owner.pid));
      assert.equal(pids.size, 2);
      assert.ok(!pids.has(s.child.pid!), 'the workers own the tasks, not the primary');
      assert.equal(new Set(status.tasks.map((x) => x.owner.memberId)).size, 2, 'two group members');
      const { stdout: dom } = await run(
        'chromium',
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          `--user-data-dir=${join(dir, 'chromium-workers')}`,
          '--virtual-time-budget=5000',
          '--dump-dom',
          `${base}/status`,
        ],
        { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      );
      assert.match(dom, /This page shows the tasks of all workers of this process: 4 of the job's 4 tasks\./);
      assert.equal(
        (element(dom, 'table', 'tasks').match(/<td><span class="running">running<\/span><\/td>/g) ?? [])
          .length,
        4,
      );
      for (const pid of pids)
        assert.ok(element(dom, 'table', 'tasks').includes(`:${pid} worker `), `owner pid ${pid}`);
    } finally {
      s.child.kill('SIGTERM');
      assert.equal(await s.exit, 0, s.out.slice(-10).join('\n'));
    }
  });
});
