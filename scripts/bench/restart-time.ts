/**
 * Restart time of a `kstate run` service: from the start of its process to the first committed
 * checkpoint of every task, after the previous instance was killed (SIGKILL) or stopped (SIGTERM).
 *
 *     node scripts/kafka/with-broker.ts node scripts/bench/restart-time.ts
 *     node scripts/kafka/with-broker.ts node scripts/bench/restart-time.ts --rounds=5 --partitions=4
 *
 * The job is examples/orders (KafkaSource -> keyBy -> keyed totals in LevelDB -> exactly-once
 * KafkaSink), `--partitions` input partitions holding `--records` orders. A first instance processes
 * them and commits a checkpoint in every task; then, `--rounds` times, the instance is killed (SIGKILL,
 * as a crash, and SIGTERM, as a deploy) and a new one started at once, as a supervisor would. Each
 * restart is split into phases read from the service's own log lines (times relative to the spawn):
 *
 *   load      process start, module loading and building the job ('starting', its loadedMs)
 *   connect   HTTP, admin connection and topic metadata ('service running')
 *   join      consumer-group join and assignment (first 'task started')
 *   restore   every task restored: producers fenced, pointer read, state loaded ('task restored')
 *   commit    every task's first checkpoint committed ('checkpoint committed', debug level)
 *
 * `--session-timeout=<ms>` sets the consumer's session timeout (KSTATE_SESSION_TIMEOUT_MS; the
 * framework's default is 10000). KSTATE_GROUP_INSTANCE_ID in the environment (passed on to the
 * service) makes the instance a static member of its group. Uses KAFKA_BROKERS (the harness sets it). A benchmark, not a test:
 * figures depend on the machine; docs/kafka.md ("Restart time") records a run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKafka } from '../../connectors/kafka/index.ts';

const CLI = fileURLToPath(new URL('../../connectors/kafka/cli/cli.ts', import.meta.url));
const ORDERS = fileURLToPath(new URL('../../examples/orders/service.ts', import.meta.url));

function flag(name: string, fallback: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  const v = a === undefined ? fallback : Number(a.slice(name.length + 3));
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer`);
  return v;
}

const ROUNDS = flag('rounds', 3);
const PARTITIONS = flag('partitions', 2);
const RECORDS = flag('records', 20_000);
const INTERVAL_MS = flag('interval', 1000);
const SESSION_TIMEOUT = process.argv.find((x) => x.startsWith('--session-timeout='))?.split('=')[1];

const say = (line: string) => process.stdout.write(`${line}\n`);

interface Run {
  readonly child: ChildProcess;
  readonly spawnedAt: number;
  readonly lines: { at: number; msg: string; task?: string; loadedMs?: number }[];
  readonly exit: Promise<void>;
  waitFor(check: () => boolean, what: string, ms?: number): Promise<void>;
}

function start(env: Record<string, string>): Run {
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, [CLI, 'run', ORDERS], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Run['lines'] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      try {
        const j = JSON.parse(l) as { time: number; msg: string; task?: string; loadedMs?: number };
        lines.push({ at: j.time - spawnedAt, msg: j.msg, task: j.task, loadedMs: j.loadedMs });
      } catch {
        // not a log line
      }
    }
    for (const w of waiters) w();
  });
  const exit = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    spawnedAt,
    lines,
    exit,
    waitFor(check, what, ms = 120_000) {
      return new Promise<void>((resolve, reject) => {
        const done = () => {
          if (!check()) return;
          waiters.delete(done);
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(() => {
          waiters.delete(done);
          reject(new Error(`no ${what} within ${ms} ms`));
        }, ms);
        waiters.add(done);
        done();
      });
    },
  };
}

const tasksWith = (r: Run, msg: string) => new Set(r.lines.filter((l) => l.msg === msg).map((l) => l.task));
const first = (r: Run, msg: string) => r.lines.find((l) => l.msg === msg)?.at ?? Number.NaN;
/** When the last task logged `msg` for the first time. */
const lastFirst = (r: Run, msg: string) => {
  const seen = new Map<string | undefined, number>();
  for (const l of r.lines) if (l.msg === msg && !seen.has(l.task)) seen.set(l.task, l.at);
  return Math.max(...seen.values());
};

interface Phases {
  load: number;
  connect: number;
  join: number;
  restore: number;
  commit: number;
  total: number;
}

function phases(r: Run): Phases {
  const loaded = r.lines.find((l) => l.msg === 'starting')?.loadedMs ?? first(r, 'starting');
  const running = first(r, 'service running');
  const joined = first(r, 'task started');
  const restored = lastFirst(r, 'task restored');
  const committed = lastFirst(r, 'checkpoint committed');
  return {
    load: loaded,
    connect: running - loaded,
    join: joined - running,
    restore: restored - joined,
    commit: committed - restored,
    total: committed,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};

async function main(): Promise<void> {
  const brokers = process.env.KAFKA_BROKERS?.trim();
  if (!brokers) throw new Error('KAFKA_BROKERS is not set: run it under scripts/kafka/with-broker.ts');
  const stem = `restart-bench-${Date.now().toString(36)}`;
  const input = `${stem}.orders`;
  const output = `${stem}.totals`;
  const kafka = createKafka({ brokers: brokers.split(',') }, '-bench');
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [input, output].map((topic) => ({ topic, numPartitions: PARTITIONS })),
    waitForLeaders: true,
  });
  await admin.disconnect();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (let i = 0; i < RECORDS; i += 1000) {
    const messages = [];
    for (let j = i; j < Math.min(RECORDS, i + 1000); j++) {
      const customer = `c${j % 37}`;
      messages.push({
        key: customer,
        value: JSON.stringify({ id: j, customer, amount: 1 + (j % 50), ts: j }),
      });
    }
    await producer.send({ topic: input, messages });
  }
  await producer.disconnect();

  const dir = mkdtempSync(join(tmpdir(), 'restart-bench-'));
  const env = {
    ORDERS_INPUT: input,
    ORDERS_OUTPUT: output,
    ORDERS_JOB_ID: `${stem}.job`,
    KSTATE_BROKERS: brokers,
    KSTATE_STATE_DIR: join(dir, 'state'),
    KSTATE_CHECKPOINT_DIR: join(dir, 'checkpoints'),
    KSTATE_CHECKPOINT_INTERVAL_MS: String(INTERVAL_MS),
    KSTATE_HTTP_PORT: '0',
    KSTATE_LOG_LEVEL: 'debug',
    ...(SESSION_TIMEOUT ? { KSTATE_SESSION_TIMEOUT_MS: SESSION_TIMEOUT } : {}),
  };
  say(
    `node ${process.version}, ${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}; ${PARTITIONS} partitions, ${RECORDS} records, checkpoints every ${INTERVAL_MS} ms${SESSION_TIMEOUT ? `, session timeout ${SESSION_TIMEOUT} ms` : ''}`,
  );
  const allCommitted = (r: Run) => tasksWith(r, 'checkpoint committed').size === PARTITIONS;
  let current = start(env);
  await current.waitFor(() => allCommitted(current), 'first checkpoint of every task');
  const rows: { how: string; p: Phases; load: number }[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const how of ['SIGKILL', 'SIGTERM'] as const) {
        current.child.kill(how);
        await current.exit;
        current = start(env);
        await current.waitFor(() => allCommitted(current), 'first checkpoint of every task');
        const p = phases(current);
        rows.push({ how, p, load: loadavg()[0]! });
        say(
          `round ${round} after ${how}: load ${p.load} connect ${p.connect} join ${p.join} restore ${p.restore} commit ${p.commit} = ${p.total} ms (machine load ${loadavg()[0]!.toFixed(1)})`,
        );
      }
    }
  } finally {
    current.child.kill('SIGKILL');
    await current.exit;
    rmSync(dir, { recursive: true, force: true });
  }
  say('');
  say('| restart after | load | connect | join | restore | first commit | total |');
  say('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const how of ['SIGKILL', 'SIGTERM']) {
    const ps = rows.filter((r) => r.how === how).map((r) => r.p);
    const m = (k: keyof Phases) => median(ps.map((p) => p[k]));
    say(
      `| ${how} (median of ${ps.length}) | ${m('load')} | ${m('connect')} | ${m('join')} | ${m('restore')} | ${m('commit')} | ${m('total')} |`,
    );
  }
}

await main();
