/**
 * Interactive queries across two `kstate run` processes (separate consumer-group members, level
 * backend): every key's latest price, its price as of several times and its history are answered
 * correctly by either instance (the non-owner forwards to the owner), compared with a
 * recomputation from the produced input; bad queries get 404/400 with a clear body. Then one
 * instance is SIGKILLed: until the group rebalances, queries for its partitions are 503 with
 * Retry-After (never a wrong answer), and afterwards the survivor answers every key itself.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { NO_OPENSSL, selfSignedFiles } from '../../../../framework/testing/index.ts';
import { brokersFromEnv, eventually, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const JOB = fileURLToPath(new URL('../jobs/prices-job.ts', import.meta.url));
const PARTITIONS = 4;
const KEYS = 40;

/** The model: per key, time -> price (a later record at the same time replaces the price). */
type Model = Map<string, Map<number, number>>;

interface Instance {
  readonly child: ChildProcess;
  readonly url: string;
  readonly out: string[];
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The certificate the TLS instances serve, which this process trusts for `https://` URLs. */
let tlsCa: string | undefined;

async function get(
  url: string,
): Promise<{ status: number; body: Record<string, unknown>; retryAfter: string | null }> {
  if (url.startsWith('https://')) return getTls(url);
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return {
    status: res.status,
    body: (await res.json()) as Record<string, unknown>,
    retryAfter: res.headers.get('retry-after'),
  };
}

/** `get` over HTTPS, trusting `tlsCa` (fetch takes no CA of its own). */
function getTls(
  url: string,
): Promise<{ status: number; body: Record<string, unknown>; retryAfter: string | null }> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { ca: tlsCa, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
            retryAfter: (res.headers['retry-after'] as string | undefined) ?? null,
          });
        } catch (e) {
          reject(e);
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 10 s`)));
    req.on('error', reject);
  });
}

/** Brute force: the greatest time <= t. */
const asOf = (m: Map<number, number>, t: number) => {
  const at = [...m.keys()]
    .filter((x) => x <= t)
    .sort((a, b) => a - b)
    .pop();
  return at === undefined ? undefined : { time: at, value: m.get(at)! };
};
const PROBES = [-1, 0, 150, 1000.5, 2500, 99_999];

/**
 * Checks every key against the model through `base`. Returns undefined when all are right, else a
 * description of the first difference. Wrong answers are collected in `wrong` (a 200 that differs
 * from the model once the instance has caught up is a failure, see the callers).
 */
async function checkAll(
  base: string,
  model: Model,
  counts: Map<string, number>,
  servedBy: Map<string, number>,
  field: 'servedBy' | 'worker' = 'servedBy',
) {
  for (const [k, m] of model) {
    const q = `${base}/query?operator=prices&state=prices&key=${encodeURIComponent(k)}`;
    const updates = await get(`${base}/query?operator=prices&state=updates&key=${encodeURIComponent(k)}`);
    if (updates.status !== 200) return `${k}: updates ${updates.status} ${JSON.stringify(updates.body)}`;
    if (updates.body.value !== counts.get(k))
      return `${k}: ${updates.body.value} of ${counts.get(k)} updates processed`;
    const latest = await get(q);
    const times = [...m.keys()].sort((a, b) => a - b);
    const last = times[times.length - 1]!;
    assert.equal(latest.status, 200, JSON.stringify(latest.body));
    assert.deepEqual(latest.body.version, { time: last, value: m.get(last) }, `latest of ${k}`);
    const by = String(latest.body[field]);
    servedBy.set(by, (servedBy.get(by) ?? 0) + 1);
    for (const t of PROBES) {
      const a = await get(`${q}&at=${t}`);
      const want = asOf(m, t);
      if (want === undefined) {
        assert.equal(a.status, 404, `${k} at ${t}: ${JSON.stringify(a.body)}`);
        assert.match(String(a.body.error), /no version at or before/);
      } else {
        assert.equal(a.status, 200, JSON.stringify(a.body));
        assert.deepEqual(a.body.version, want, `${k} as of ${t}`);
      }
    }
    const r = await get(`${q}&from=100&to=2500`);
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.body.versions,
      times.filter((t) => t >= 100 && t < 2500).map((t) => ({ time: t, value: m.get(t) })),
      `history of ${k}`,
    );
  }
  return undefined;
}

describe('interactive queries over two instances', { timeout: 240_000 }, () => {
  const n = names('queries');
  const input = n.topic('in');
  const output = n.topic('out');
  const jobId = n.stem;
  const dir = mkdtempSync(join(tmpdir(), 'kstate-queries-'));
  const instances: Instance[] = [];
  const model: Model = new Map();
  const counts = new Map<string, number>();

  const start = async (
    label: string,
    o: { jobId?: string; tls?: { cert: string; key: string }; args?: readonly string[] } = {},
  ): Promise<Instance> => {
    const port = await freePort();
    const child = spawn(process.execPath, [CLI, 'run', JOB, ...(o.args ?? [])], {
      env: {
        ...process.env,
        KSTATE_BROKERS: brokersFromEnv().join(','),
        KSTATE_BACKEND: 'level',
        KSTATE_STATE_DIR: join(dir, `state-${label}`),
        KSTATE_CHECKPOINT_DIR: join(dir, 'checkpoints'),
        KSTATE_CHECKPOINT_INTERVAL_MS: '500',
        KSTATE_HTTP_PORT: String(port),
        // Instance b binds every interface and advertises the loopback address for forwarding.
        ...(label === 'b' ? { KSTATE_HTTP_HOST: '0.0.0.0', KSTATE_ADVERTISED_HOST: '127.0.0.1' } : {}),
        ...(o.tls === undefined
          ? {}
          : {
              KSTATE_HTTP_TLS_CERT: o.tls.cert,
              KSTATE_HTTP_TLS_KEY: o.tls.key,
              // The instances serve one self-signed certificate, which each trusts when it forwards.
              NODE_EXTRA_CA_CERTS: o.tls.cert,
            }),
        KSTATE_LOG_LEVEL: 'warn',
        PRICES_JOB_ID: o.jobId ?? jobId,
        PRICES_INPUT: input,
        PRICES_OUTPUT: output,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: string[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
    child.stderr!.on('data', (d: Buffer) => out.push(d.toString()));
    const inst = { child, url: `${o.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`, out };
    instances.push(inst);
    return inst;
  };

  before(async () => {
    const kafka = kafkaClient('queries-test');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: PARTITIONS },
        { topic: output, numPartitions: PARTITIONS },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    // Versions in event time, produced out of order per key; a few repeat a time (replacing it).
    // Idempotent: a send kafkajs retries after a timeout (a loaded machine) must not write the input twice.
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const messages: { key: string; value: string }[] = [];
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < KEYS; i++) {
        const k = i % 5 === 0 ? `product/${i} é` : `p${i}`;
        const t = Math.floor(rnd() * 3000) + (round === 0 ? 0 : 1);
        const p = Math.round(rnd() * 10_000) / 100;
        messages.push({ key: k, value: JSON.stringify({ k, t, p }) });
        let m = model.get(k);
        if (m === undefined) {
          m = new Map();
          model.set(k, m);
        }
        m.set(t, p);
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
    }
    await producer.send({ topic: input, messages });
    await producer.disconnect();
  });

  after(async () => {
    for (const i of instances) i.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Waits until `inst` answers every key right, served by two instances (`field` servedBy) or two
   * workers (`worker`): until the second member has joined and restored, one serves every key.
   * Returns who served how many.
   */
  const answersEveryKeyFromBoth = async (
    inst: Instance,
    field: 'servedBy' | 'worker' = 'servedBy',
    timeoutMs = 90_000,
  ): Promise<Map<string, number>> => {
    const servedBy = new Map<string, number>();
    let last = '';
    await eventually(
      async () => {
        servedBy.clear();
        const why = await checkAll(inst.url, model, counts, servedBy, field).catch(
          (e: Error) => `${e.message}`,
        );
        if (why === undefined && servedBy.size === 2) return true;
        last = why ?? `every key was served by ${field} ${[...servedBy.keys()].join(', ')} alone`;
        return undefined;
      },
      timeoutMs,
      () =>
        `instance ${inst.url} never answered every key right (${last}):\n${inst.out.join('').slice(-3000)}`,
    );
    return servedBy;
  };

  test('either instance answers every key; after one dies the survivor answers all', async () => {
    const a = await start('a');
    const b = await start('b');
    // Both members joined and every record processed: every key right from both instances.
    for (const inst of [a, b]) {
      const servedBy = await answersEveryKeyFromBoth(inst);
      // Served by both instances: half the keys were forwarded to the other one.
      assert.equal(servedBy.size, 2, `answers came from ${[...servedBy.keys()].join(', ')}`);
    }
    const servedBy = new Map<string, number>();

    // Bad input.
    const q404 = await get(`${a.url}/query?operator=prices&state=prices&key=nope`);
    assert.equal(q404.status, 404);
    assert.match(String(q404.body.error), /no value for key "nope"/);
    const op404 = await get(`${a.url}/query?operator=nope&state=prices&key=p1`);
    assert.equal(op404.status, 404);
    assert.match(String(op404.body.error), /no operator 'nope'.*operators: /);
    const st404 = await get(`${b.url}/query?operator=prices&state=nope&key=p1`);
    assert.equal(st404.status, 404);
    assert.match(
      String(st404.body.error),
      /no keyed state 'nope' \(yet\); its states: (prices, updates|updates, prices)/,
    );
    for (const bad of ['at=yesterday', 'from=1', 'from=5&to=1', 'at=1&from=0&to=2', 'limit=0&from=0&to=1']) {
      const r = await get(`${a.url}/query?operator=prices&state=prices&key=p1&${bad}`);
      assert.equal(r.status, 400, `${bad}: ${JSON.stringify(r.body)}`);
      assert.equal(typeof r.body.error, 'string');
    }
    const cons = await get(`${a.url}/query?operator=prices&state=prices&key=p1&consistency=checkpoint`);
    assert.equal(cons.status, 400);
    // A key range over all partitions: sorted key ids, each with its latest version.
    const range = await get(`${b.url}/query/keys?operator=prices&state=prices&fromKey=p1&toKey=p3&limit=5`);
    assert.equal(range.status, 200, JSON.stringify(range.body));
    const want = [...model.keys()]
      .filter((k) => k >= 'p1' && k < 'p3')
      .sort()
      .slice(0, 5);
    assert.deepEqual(
      (range.body.rows as { keyId: string }[]).map((r) => r.keyId),
      want,
    );

    // SIGKILL b. Until the group notices, b's partitions are 503 + Retry-After, never wrong.
    b.child.kill('SIGKILL');
    let unavailable = 0;
    await eventually(
      async () => {
        for (const [k, m] of model) {
          const r = await get(
            `${a.url}/query?operator=prices&state=prices&key=${encodeURIComponent(k)}&at=2500`,
          );
          if (r.status === 503) {
            unavailable++;
            assert.equal(r.retryAfter, '1');
            assert.match(String(r.body.error), /partition \d+: /);
            return undefined;
          }
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.deepEqual(r.body.version, asOf(m, 2500), `${k} as of 2500 while b is gone`);
        }
        return true;
      },
      90_000,
      () => `the survivor never answered every key:\n${a.out.join('').slice(-3000)}`,
    );
    await eventually(
      async () => {
        servedBy.clear();
        return (await checkAll(a.url, model, counts, servedBy)) === undefined ? true : undefined;
      },
      60_000,
      () => 'the survivor never caught up with every record',
    );
    assert.deepEqual(
      [...servedBy.keys()],
      [a.url.replace('http://', '')],
      'the survivor answers everything itself',
    );
    console.log(`503 answers while the group noticed the kill: ${unavailable}`);
  });
  test('under --workers the primary answers every key, from the worker that owns it', async () => {
    // A job of its own (its own group) over the same input, in one process with two workers: the
    // workers run no HTTP server, the primary serves their queries (query-workers.ts).
    const w = await start('w', { jobId: `${jobId}-workers`, args: ['--workers', '2'] });
    const byWorker = await answersEveryKeyFromBoth(w, 'worker', 120_000);
    assert.deepEqual([...byWorker.keys()].sort(), ['0', '1'], 'answered by both workers');
    // A key range over every partition, gathered from both workers.
    const range = await get(`${w.url}/query/keys?operator=prices&state=prices&fromKey=p&toKey=q&limit=100`);
    assert.equal(range.status, 200, JSON.stringify(range.body));
    assert.deepEqual(
      (range.body.rows as { keyId: string }[]).map((r) => r.keyId),
      [...model.keys()].filter((k) => k >= 'p' && k < 'q').sort(),
    );
    // Bad input gets the same answers as from one instance.
    const q404 = await get(`${w.url}/query?operator=prices&state=prices&key=nope`);
    assert.equal(q404.status, 404, JSON.stringify(q404.body));
    assert.match(String(q404.body.error), /no value for key "nope"/);
    const bad = await get(`${w.url}/query?operator=prices&state=prices&key=p1&at=yesterday`);
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
  });
  test('over HTTPS: an instance forwards to the other over HTTPS, and answers every key', async (t) => {
    const files = selfSignedFiles(dir, 'tls');
    if (files === undefined) return t.skip(NO_OPENSSL);
    tlsCa = readFileSync(files.cert, 'utf8');
    // A job of its own (its own group) over the same input.
    const tlsJob = `${jobId}-tls`;
    const c = await start('c', { jobId: tlsJob, tls: files });
    const d = await start('d', { jobId: tlsJob, tls: files });
    for (const inst of [c, d]) {
      const servedBy = await answersEveryKeyFromBoth(inst);
      // Half the keys were forwarded to the other instance, over HTTPS (endpoints advertise it).
      assert.deepEqual(
        [...servedBy.keys()].sort(),
        [c.url, d.url].sort(),
        `answers came from ${[...servedBy.keys()].join(', ')}`,
      );
    }
  });
});
