import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CheckpointStorage,
  createPrometheusMetrics,
  instrumentJob,
  isStreamError,
  startServiceHttp,
} from '../../../../framework/index.ts';
import { runKafkaJob } from '../../index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { checkpointStorage, countJob } from '../jobs/count-job.ts';
import { produceInput } from '../support/eos-helpers.ts';
import { brokersFromEnv, eventually, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

/**
 * Issue 6, items 3 and 4 (health half): the count job served with /metrics, /livez and /readyz;
 * readiness flips only after restore (held back by a gate on the checkpoint storage), and a real
 * Prometheus (Debian's `prometheus`) scrapes the service until its query API returns the checkpoint
 * and records-in series.
 */

/** A free TCP port on 127.0.0.1 (listen on 0, read it, close). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function requirePrometheus(): void {
  const probe = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    assert.fail(
      'prometheus is not installed (or not on PATH): `apt-get install prometheus` (Debian package; .ci/run installs it when missing)',
    );
  }
}

interface Prometheus {
  readonly url: string;
  readonly child: ChildProcess;
  readonly log: string[];
  stop(): Promise<void>;
}

/** The command the test runs (docs/metrics.md shows it). */
async function startPrometheus(dir: string, target: string): Promise<Prometheus> {
  const port = await freePort();
  await mkdir(dir, { recursive: true });
  const config = join(dir, 'prometheus.yml');
  await writeFile(
    config,
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: kstate',
      '    metrics_path: /metrics',
      '    static_configs:',
      `      - targets: ['${target}']`,
      '',
    ].join('\n'),
  );
  const child = spawn(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log: string[] = [];
  const keep = (b: Buffer) => {
    log.push(...b.toString().split('\n').filter(Boolean));
    if (log.length > 200) log.splice(0, log.length - 200);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface Sample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

async function query(prometheusUrl: string, promql: string): Promise<Sample[] | undefined> {
  try {
    const res = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(promql)}`);
    if (!res.ok) return undefined;
    const body = (await res.json()) as {
      status: string;
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== 'success') return undefined;
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  } catch {
    return undefined; // not up yet
  }
}

/** A storage whose `latest` for a task (called first by every task restore) waits until `open()`. */
function gatedStorage(inner: CheckpointStorage): {
  storage: CheckpointStorage;
  open(): void;
  waiting(): number;
} {
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  let waiting = 0;
  const storage = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'latest') {
        return async (scope: Parameters<CheckpointStorage['latest']>[0]) => {
          // The job's layout record (scope '_topology') is read before the job joins its group
          // (docs/savepoints.md, "Job changes"): only the tasks' restores wait.
          if (scope.taskId === '_topology') return target.latest(scope);
          waiting++;
          await gate;
          return target.latest(scope);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { storage, open, waiting: () => waiting };
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('metrics and health endpoints of a running job, scraped by a real Prometheus', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('metrics-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'metrics-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test('/readyz is 503 until restore, then 200; Prometheus returns checkpoint and records-in series', async () => {
    requirePrometheus();
    const n = names('metrics');
    const input = n.topic('in');
    const output = n.topic('out');
    const jobId = n.group('job');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 3 },
        { topic: output, numPartitions: 3 },
      ],
      waitForLeaders: true,
    });
    const produced = await produceInput(input, 3000, 40);

    const metrics = createPrometheusMetrics();
    const instrumented = instrumentJob(metrics, jobId);
    const gated = gatedStorage(checkpointStorage(join(dir, 'job')));
    const http = await startServiceHttp({ port: 0, metrics, ready: () => instrumented.readiness() });
    let prometheus: Prometheus | undefined;
    const job = await runKafkaJob(countJob({ jobId, input, output }), {
      connection: { brokers: brokersFromEnv() },
      storage: gated.storage,
      checkpoints: { intervalMs: 200 },
      listener: instrumented,
    });
    const detach = instrumented.attach(job, { intervalMs: 250 });
    try {
      // Before restore: the tasks are assigned and held in restore by the gate.
      assert.equal((await getJson(`${http.url}/livez`)).status, 200);
      const early = await eventually(
        async () => {
          const r = await getJson(`${http.url}/readyz`);
          const tasks = r.body.tasks as { assigned: number } | undefined;
          return gated.waiting() > 0 && (tasks?.assigned ?? 0) > 0 ? r : undefined;
        },
        30_000,
        () => 'no task started restoring (assignment never came?)',
      );
      assert.equal(early.status, 503, `readyz before restore: ${JSON.stringify(early.body)}`);
      assert.equal(early.body.ready, false);
      assert.match(String(early.body.reason), /restoring/);
      // Still 503 a little later: nothing but the gate decides.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await getJson(`${http.url}/readyz`)).status, 503);

      gated.open();
      const ready = await eventually(
        async () => {
          const r = await getJson(`${http.url}/readyz`);
          return r.status === 200 ? r : undefined;
        },
        30_000,
        () => `never ready: ${JSON.stringify(instrumented.readiness())}`,
      );
      assert.equal(ready.body.ready, true);
      const readyTasks = ready.body.tasks as { assigned: number; running: number };
      assert.equal(readyTasks.assigned, 3, 'one consumer-group member owns all 3 partitions');
      assert.equal(readyTasks.running, 3);

      // The exposition itself.
      const res = await fetch(`${http.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.match(text, /^# TYPE kstate_records_in_total counter$/m);
      assert.match(text, /^# TYPE kstate_checkpoint_last_duration_seconds gauge$/m);
      assert.match(text, /^# TYPE kstate_checkpoint_duration_seconds histogram$/m);
      assert.match(text, /^process_cpu_seconds_total /m, 'default process metrics');
      assert.equal((await fetch(`${http.url}/nope`)).status, 404);

      // A real Prometheus scrapes the service.
      prometheus = await startPrometheus(join(dir, 'prometheus'), `127.0.0.1:${http.port}`);
      const prom = prometheus;
      const sel = `{job_id="${jobId}"}`;
      const checkpoints = await eventually(
        async () => {
          const r = await query(prom.url, `kstate_checkpoints_completed_total${sel}`);
          return r && r.length === 3 && r.every((s) => s.value > 0) ? r : undefined;
        },
        60_000,
        () =>
          `Prometheus never returned 3 checkpoint series > 0; its log:\n${prom.log.slice(-20).join('\n')}`,
      );
      const recordsIn = await eventually(
        async () => {
          const r = await query(prom.url, `sum(kstate_records_in_total${sel})`);
          return r && r.length === 1 && r[0]!.value === produced ? r : undefined;
        },
        60_000,
        () => `sum(kstate_records_in_total) never reached ${produced}`,
      );
      const perTask = (await query(prom.url, `kstate_records_in_total${sel}`)) ?? [];
      const duration = (await query(prom.url, `kstate_checkpoint_last_duration_seconds${sel}`)) ?? [];
      const size = (await query(prom.url, `kstate_checkpoint_last_size_bytes${sel}`)) ?? [];
      const running = (await query(prom.url, `kstate_tasks{job_id="${jobId}",state="running"}`)) ?? [];
      const up = (await query(prom.url, `up{job="kstate"}`)) ?? [];
      console.log(
        `prometheus: checkpoints_completed ${checkpoints.map((s) => `${s.metric.task}=${s.value}`).join(' ')}; ` +
          `records_in sum=${recordsIn[0]!.value} (${perTask.map((s) => `p${s.metric.partition}=${s.value}`).join(' ')}); ` +
          `last duration ${duration.map((s) => `${(s.value * 1000).toFixed(1)}ms`).join(' ')}; ` +
          `last size ${size.map((s) => `${s.value}B`).join(' ')}; tasks running ${running[0]?.value}; up ${up[0]?.value}`,
      );
      assert.equal(perTask.length, 3);
      assert.ok(
        perTask.every((s) => s.value > 0 && s.metric.job === 'kstate' && s.metric.instance !== undefined),
      );
      assert.equal(duration.length, 3);
      assert.ok(
        duration.every((s) => s.value > 0 && s.value < 30),
        'checkpoint durations are plausible',
      );
      assert.ok(
        size.every((s) => s.value > 0),
        'checkpoints wrote bytes',
      );
      assert.equal(running[0]?.value, 3);
      assert.equal(up[0]?.value, 1);
    } finally {
      gated.open();
      await prometheus?.stop();
      detach();
      await job.stop();
      await http.close();
    }
    assert.notEqual(prometheus?.child.exitCode ?? prometheus?.child.signalCode, null, 'prometheus exited');
  });

  test('a port in use is one CONFIG_INVALID error naming the port', async () => {
    const metrics = createPrometheusMetrics({ defaultMetrics: false });
    const first = await startServiceHttp({ port: 0, metrics, ready: () => true });
    try {
      await assert.rejects(
        startServiceHttp({ port: first.port, metrics, ready: () => true }),
        (e: unknown) =>
          isStreamError(e, 'CONFIG_INVALID') &&
          e.message.includes(`port ${first.port}`) &&
          /in use/.test(e.message),
      );
    } finally {
      await first.close();
    }
  });
});
