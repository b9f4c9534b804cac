/**
 * The HTTP surface of `kstate run` as an operator and a hostile web page see it (issue 16, docs/service.md
 * "Exposing the HTTP port"), on the orders job against the harness broker:
 *
 * - without an admin token, POST /savepoint is off: a cross-origin `text/plain` POST (what any web page
 *   can send without a preflight) gets 404 and takes nothing; `kstate savepoint` exits 69 saying so;
 * - with KSTATE_ADMIN_TOKEN: that POST gets 403, one with a foreign Host (DNS rebinding) 403, one
 *   without the token 401, a bad name 400; `kstate savepoint` with the token (from the environment or
 *   KSTATE_ADMIN_TOKEN_FILE) takes it, the same name again is 409 (exit 65) and no answer holds the
 *   checkpoint directory's path; without the token it exits 77;
 * - with KSTATE_HTTP_TLS_CERT / KEY (a self-signed certificate made by openssl here): HTTPS, and
 *   `kstate savepoint` over it; a file that is no certificate exits 78 at start naming the setting.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { NO_OPENSSL, selfSignedFiles } from '../../../../framework/testing/index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { sendWhenReady } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const ORDERS = fileURLToPath(new URL('../../../../examples/orders/service.ts', import.meta.url));
const TOKEN = 'http-admin-test-token-0123456789';

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

interface Answer {
  status: number;
  body: string;
}

/** One request with exactly these headers (Host included), as curl or a browser sends it. */
function send(
  url: string,
  o: { method?: string; headers?: Record<string, string>; body?: string; ca?: string } = {},
): Promise<Answer> {
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: o.method ?? 'GET',
        headers: o.headers ?? {},
        ...(o.ca === undefined ? {} : { ca: o.ca }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

/** `kstate <args>` to its end: exit code and output. */
function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (e, stdout, stderr) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('the HTTP surface of kstate run: actions, token, Origin and Host, TLS', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('http-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'http-admin-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  /** The orders job's topics (a few orders in) and its environment on a free port. */
  async function service(label: string) {
    const n = names(label);
    const input = n.topic('orders');
    const output = n.topic('totals');
    await admin.createTopics({
      topics: [input, output].map((topic) => ({
        topic,
        numPartitions: 2,
        configEntries: [{ name: 'retention.ms', value: '-1' }],
      })),
      waitForLeaders: true,
    });
    const producer = kafkaClient('http-admin-orders').producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const messages = Array.from({ length: 100 }, (_, j) => ({
      key: `c${j % 7}`,
      value: JSON.stringify({ id: j, customer: `c${j % 7}`, amount: 1, ts: j }),
    }));
    await sendWhenReady(() => producer.send({ topic: input, messages }));
    await producer.disconnect();
    const port = await freePort();
    const checkpoints = join(dir, n.stem, 'checkpoints');
    const env: Record<string, string> = {
      ORDERS_INPUT: input,
      ORDERS_OUTPUT: output,
      ORDERS_JOB_ID: n.group('job'),
      KSTATE_BROKERS: brokersFromEnv().join(','),
      KSTATE_STATE_DIR: join(dir, n.stem, 'state'),
      KSTATE_CHECKPOINT_STORAGE: checkpoints,
      KSTATE_CHECKPOINT_INTERVAL_MS: '500',
      KSTATE_HTTP_PORT: String(port),
    };
    return { env, port, checkpoints, stem: n.stem };
  }

  function start(
    env: Record<string, string>,
    args: string[] = [],
  ): {
    child: ChildProcess;
    out: string[];
    exit: Promise<number | null>;
  } {
    const child = spawn(process.execPath, [CLI, 'run', ORDERS, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: string[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
    child.stderr!.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
    return { child, out, exit: new Promise((r) => child.on('exit', (c) => r(c))) };
  }

  async function stop(s: ReturnType<typeof start>): Promise<void> {
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0, s.out.slice(-10).join('\n'));
  }

  const ready = (base: string, ca?: string) =>
    until('/readyz 200', 90_000, async () =>
      (await send(`${base}/readyz`, ca === undefined ? {} : { ca })).status === 200 ? true : undefined,
    );

  /** What a web page the operator visits can send: a cross-origin "simple" POST, no preflight. */
  const fromWebPage = (base: string, port: number, name: string) =>
    send(`${base}/savepoint?name=${name}`, {
      method: 'POST',
      headers: { host: `127.0.0.1:${port}`, origin: 'http://evil.example', 'content-type': 'text/plain' },
      body: 'x',
    });

  test('no admin token: actions are off; a cross-origin POST takes no savepoint', async () => {
    const t = await service('http off');
    const s = start(t.env);
    try {
      const base = `http://127.0.0.1:${t.port}`;
      await ready(base);
      const page = await fromWebPage(base, t.port, 'from-a-page');
      assert.equal(page.status, 404, `a cross-origin text/plain POST got ${page.status}: ${page.body}`);
      assert.match(JSON.parse(page.body).error, /actions are off/);
      const asked = await cli(['savepoint', 'sp-off', '--port', String(t.port)], t.env);
      assert.equal(asked.code, 69, asked.stderr);
      assert.match(asked.stderr, /refused the savepoint \(404\): .*actions are off/);
      // Read-only endpoints stay open.
      assert.equal((await send(`${base}/metrics`)).status, 200);
      assert.equal((await send(`${base}/status.json`)).status, 200);
      const listed = await cli(['checkpoints', t.env.ORDERS_JOB_ID!], t.env);
      assert.doesNotMatch(listed.stdout, /from-a-page|sp-off/);
    } finally {
      await stop(s);
    }
  });

  test('with a token: Origin, Host and token checked; answers by cause; no server path in any body', async () => {
    const t = await service('http token');
    const env = { ...t.env, KSTATE_ADMIN_TOKEN: TOKEN };
    const s = start(env);
    try {
      const base = `http://127.0.0.1:${t.port}`;
      const host = `127.0.0.1:${t.port}`;
      await ready(base);
      const post = (name: string, headers: Record<string, string>) =>
        send(`${base}/savepoint?name=${encodeURIComponent(name)}`, { method: 'POST', headers });
      const bodies: string[] = [];
      const expect = async (what: string, r: Promise<Answer>, status: number) => {
        const a = await r;
        bodies.push(a.body);
        assert.equal(a.status, status, `${what}: ${a.status} ${a.body}`);
        return a;
      };
      await expect('a cross-origin text/plain POST', fromWebPage(base, t.port, 'from-a-page'), 403);
      await expect(
        'a cross-origin POST with the token',
        post('x1', { host, origin: 'http://evil.example', authorization: `Bearer ${TOKEN}` }),
        403,
      );
      await expect(
        'DNS rebinding (a foreign Host)',
        post('x2', { host: `evil.example:${t.port}`, authorization: `Bearer ${TOKEN}` }),
        403,
      );
      await expect('no token', post('x3', { host }), 401);
      await expect('a wrong token', post('x4', { host, authorization: `Bearer ${TOKEN}x` }), 401);
      await expect('a bad name', post('../../etc', { host, authorization: `Bearer ${TOKEN}` }), 400);
      await expect('no name', post('', { host, authorization: `Bearer ${TOKEN}` }), 400);

      const taken = await cli(['savepoint', 'sp1', '--port', String(t.port)], env);
      assert.equal(taken.code, 0, taken.stderr);
      assert.match(taken.stdout, /"savepoint":"sp1"/);
      const again = await expect(
        'the same name again',
        post('sp1', { host, authorization: `Bearer ${TOKEN}` }),
        409,
      );
      assert.match(JSON.parse(again.body).error, /savepoint 'sp1' exists already/);
      const againCli = await cli(['savepoint', 'sp1', '--port', String(t.port)], env);
      assert.equal(againCli.code, 65, againCli.stderr);
      assert.match(againCli.stderr, /refused the savepoint \(409\): savepoint 'sp1' exists already/);

      const tokenFile = join(dir, `${t.stem}.token`);
      await writeFile(tokenFile, `${TOKEN}\n`);
      const fromFile = await cli(['savepoint', 'sp2', '--port', String(t.port)], {
        ...t.env,
        KSTATE_ADMIN_TOKEN_FILE: tokenFile,
      });
      assert.equal(fromFile.code, 0, fromFile.stderr);
      const without = await cli(['savepoint', 'sp3', '--port', String(t.port)], t.env);
      assert.equal(without.code, 77, without.stderr);
      assert.match(without.stderr, /\(401\): .*Set KSTATE_ADMIN_TOKEN/);

      for (const body of [...bodies, again.body]) {
        assert.ok(!body.includes(t.checkpoints), `a body names the checkpoint directory: ${body}`);
        assert.ok(!body.includes(dir), `a body names a server path: ${body}`);
        assert.ok(!body.includes(TOKEN), `a body shows the token: ${body}`);
      }
      const listed = await cli(['checkpoints', t.env.ORDERS_JOB_ID!], t.env);
      const rows = listed.stdout.split('\n').slice(1); // after the header
      const savepoints = new Set(rows.map((l) => l.split('\t')[5]).filter(Boolean));
      assert.deepEqual([...savepoints].sort(), ['sp1', 'sp2']);
    } finally {
      await stop(s);
    }
  });

  test('with --workers 2: the primary takes the savepoint of every task in both workers (kstate savepoint), once', async () => {
    const t = await service('http workers');
    const env = { ...t.env, KSTATE_ADMIN_TOKEN: TOKEN };
    const s = start(env, ['--workers', '2']);
    try {
      const base = `http://127.0.0.1:${t.port}`;
      const host = `127.0.0.1:${t.port}`;
      await ready(base);
      // Ready when every worker is; each of the two partitions' tasks runs in one of them.
      const status = await until('both tasks running', 90_000, async () => {
        const j = JSON.parse((await send(`${base}/status.json`)).body) as {
          tasks: { taskId: string; state: string; owner: { pid: number } }[];
        };
        // Two running tasks in two different workers (the group gives each member one partition).
        const pids = new Set(j.tasks.map((x) => x.owner.pid));
        return j.tasks.length === 2 && pids.size === 2 && j.tasks.every((x) => x.state === 'running')
          ? j
          : undefined;
      });
      const taken = await cli(['savepoint', 'spw', '--port', String(t.port)], env);
      assert.equal(taken.code, 0, `${taken.stdout}${taken.stderr}`);
      const body = JSON.parse(taken.stdout) as { savepoint: string; tasks: string[] };
      assert.equal(body.savepoint, 'spw');
      assert.deepEqual(body.tasks.sort(), status.tasks.map((x) => x.taskId).sort());
      const again = await send(`${base}/savepoint?name=spw`, {
        method: 'POST',
        headers: { host, authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(again.status, 409, again.body);
      assert.match(JSON.parse(again.body).error, /savepoint 'spw' exists already/);
      const noToken = await send(`${base}/savepoint?name=spx`, { method: 'POST', headers: { host } });
      assert.equal(noToken.status, 401, noToken.body);
      const listed = await cli(['checkpoints', t.env.ORDERS_JOB_ID!], t.env);
      const rows = listed.stdout.split('\n').slice(1);
      const withSavepoint = rows.filter((l) => l.split('\t')[5] === 'spw').map((l) => l.split('\t')[0]);
      assert.equal(withSavepoint.length, 2, listed.stdout);
    } finally {
      await stop(s);
    }
  });

  test('HTTPS from a certificate file; kstate savepoint over it; a bad certificate exits 78 at start', async (t) => {
    const files = selfSignedFiles(dir, 'tls');
    if (files === undefined) return t.skip(NO_OPENSSL);
    const { cert, key } = files;
    const pem = await readFile(cert, 'utf8');
    const svc = await service('http tls');
    const env = {
      ...svc.env,
      KSTATE_ADMIN_TOKEN: TOKEN,
      KSTATE_HTTP_TLS_CERT: cert,
      KSTATE_HTTP_TLS_KEY: key,
    };
    const s = start(env);
    try {
      const base = `https://127.0.0.1:${svc.port}`;
      await ready(base, pem);
      await assert.rejects(
        send(`http://127.0.0.1:${svc.port}/readyz`),
        'plain HTTP answered on the TLS port',
      );
      const taken = await cli(['savepoint', 'sp-tls', '--port', String(svc.port)], env);
      assert.equal(taken.code, 0, taken.stderr);
      assert.match(taken.stdout, /"savepoint":"sp-tls"/);
    } finally {
      await stop(s);
    }
    const garbage = join(dir, 'garbage.crt');
    await writeFile(garbage, 'not a certificate\n');
    const bad = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, [CLI, 'run', ORDERS], {
        env: { ...process.env, ...svc.env, KSTATE_HTTP_TLS_CERT: garbage, KSTATE_HTTP_TLS_KEY: key },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      c.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      c.on('exit', (code) => resolve({ code, stderr }));
    });
    assert.equal(bad.code, 78, bad.stderr);
    assert.match(
      bad.stderr,
      /the HTTP TLS certificate .*garbage\.crt and key .* \(KSTATE_HTTP_TLS_CERT \/ KSTATE_HTTP_TLS_KEY\) cannot be used/,
    );
  });
});
