/**
 * /readyz follows the broker (issue 16, docs/service.md "/readyz"): `kstate run` on a broker of this
 * test's own, KSTATE_BROKER_LOSS_TIMEOUT_MS=3000. The broker is paused (SIGSTOP of its java process):
 * /readyz turns 503 naming the lost brokers, no sooner than the timeout allows and within seconds
 * after it; the broker resumes (SIGCONT): /readyz is 200 again. Before, /readyz stayed 200 while the
 * broker was gone (the issue saw 200 at +10 s and +30 s).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createKafka } from '../../client.ts';
import { type RunningBroker, startBroker } from '../../local/broker.ts';
import { sendWhenReady } from '../support/eos-helpers.ts';
import { names } from '../support/names.ts';

const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const ORDERS = fileURLToPath(new URL('../../../../examples/orders/service.ts', import.meta.url));
const LOSS_MS = 3000;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** /readyz: status and reason (undefined when the service does not answer). */
async function readyz(base: string): Promise<{ status: number; reason: string } | undefined> {
  try {
    const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, reason: String(((await res.json()) as { reason?: unknown }).reason) };
  } catch {
    return undefined;
  }
}

/** Polls /readyz every 100 ms until `ok` holds; the answer and when (ms since `since`). */
async function waitFor(
  base: string,
  what: string,
  ms: number,
  since: number,
  ok: (a: { status: number; reason: string }) => boolean,
  seen: string[],
): Promise<{ status: number; reason: string; at: number }> {
  const end = Date.now() + ms;
  for (;;) {
    const a = await readyz(base);
    if (a !== undefined) {
      if (seen[seen.length - 1] !== `${a.status} ${a.reason}`) seen.push(`${a.status} ${a.reason}`);
      if (ok(a)) return { ...a, at: Date.now() - since };
    }
    if (Date.now() > end)
      throw new Error(`timed out after ${ms} ms waiting for ${what}; /readyz said: ${seen.join(' | ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let broker: RunningBroker;
let dir: string;
before(async () => {
  broker = await startBroker(); // its own: pausing it disturbs no other test
  dir = await mkdtemp(join(tmpdir(), 'readyz-broker-'));
});
after(async () => {
  try {
    process.kill(broker.pid, 'SIGCONT');
  } catch {
    // already stopped
  }
  await broker.stop();
  await rm(dir, { recursive: true, force: true });
});

test('/readyz turns 503 when the broker is paused past the timeout, and 200 when it is back', async () => {
  const n = names('readyz broker');
  const input = n.topic('orders');
  const output = n.topic('totals');
  const client = createKafka({ brokers: [broker.brokers], clientId: 'readyz-broker' });
  const admin = client.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [input, output].map((topic) => ({ topic, numPartitions: 2 })),
    waitForLeaders: true,
  });
  await admin.disconnect();
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = Array.from({ length: 50 }, (_, j) => ({
    key: `c${j % 5}`,
    value: JSON.stringify({ id: j, customer: `c${j % 5}`, amount: 1, ts: j }),
  }));
  await sendWhenReady(() => producer.send({ topic: input, messages }));
  await producer.disconnect();

  const port = await freePort();
  const child = spawn(process.execPath, [CLI, 'run', ORDERS], {
    env: {
      ...process.env,
      ORDERS_INPUT: input,
      ORDERS_OUTPUT: output,
      ORDERS_JOB_ID: n.group('job'),
      KSTATE_BROKERS: broker.brokers,
      KSTATE_STATE_DIR: join(dir, 'state'),
      KSTATE_CHECKPOINT_STORAGE: join(dir, 'checkpoints'),
      KSTATE_HTTP_PORT: String(port),
      KSTATE_BROKER_LOSS_TIMEOUT_MS: String(LOSS_MS),
      KSTATE_SESSION_TIMEOUT_MS: '10000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
  child.stderr!.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
  const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const base = `http://127.0.0.1:${port}`;
  const seen: string[] = [];
  let paused = false;
  try {
    await waitFor(base, '/readyz 200', 120_000, Date.now(), (a) => a.status === 200, seen);

    process.kill(broker.pid, 'SIGSTOP');
    paused = true;
    const pausedAt = Date.now();
    const lost = await waitFor(
      base,
      '/readyz 503 naming the lost brokers',
      30_000,
      pausedAt,
      (a) => a.status === 503 && /lost the Kafka brokers/.test(a.reason),
      seen,
    );
    // The last answered probe may be up to one probe interval (1 s) before the pause.
    assert.ok(lost.at >= LOSS_MS - 1500, `503 after ${lost.at} ms, before the ${LOSS_MS} ms timeout`);
    console.log(`# paused: /readyz 503 after ${lost.at} ms (timeout ${LOSS_MS} ms): ${lost.reason}`);
    // Still 503 a while later (the broker is still paused), and the metric says so.
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await readyz(base))?.status, 503);
    assert.match(await (await fetch(`${base}/metrics`)).text(), /^kstate_brokers_reachable\{[^}]*\} 0$/m);

    process.kill(broker.pid, 'SIGCONT');
    paused = false;
    const resumedAt = Date.now();
    const back = await waitFor(base, '/readyz 200 again', 120_000, resumedAt, (a) => a.status === 200, seen);
    console.log(`# resumed: /readyz 200 after ${back.at} ms; /readyz said: ${seen.join(' | ')}`);
    assert.match(await (await fetch(`${base}/metrics`)).text(), /^kstate_brokers_reachable\{[^}]*\} 1$/m);
    const logged = out.map((l) => {
      try {
        return (JSON.parse(l) as { msg?: string }).msg ?? '';
      } catch {
        return '';
      }
    });
    assert.ok(logged.includes('lost the brokers: /readyz is 503'), out.slice(-20).join('\n'));
    assert.ok(logged.includes('the brokers answer again'), out.slice(-20).join('\n'));
  } finally {
    if (paused) process.kill(broker.pid, 'SIGCONT');
    child.kill('SIGTERM');
    assert.equal(await exit, 0, out.slice(-10).join('\n'));
  }
});
