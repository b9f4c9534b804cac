/**
 * The service HTTP server's actions (./http.ts, ./admin-auth.ts): off (404) without an admin token;
 * with one, only same-host, same-origin requests carrying the token run them; read-only endpoints
 * stay open; a thrown error's message (a server path) never reaches a body; HTTPS from a
 * certificate made here by openssl.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isStreamError } from '../api/errors.ts';
import { NO_OPENSSL, selfSignedFiles } from '../testing/self-signed.ts';
import { allowedHosts, bearerMatches, checkAction, parseHost } from './admin-auth.ts';
import { type ServiceHttp, type ServiceHttpOptions, type ServiceRoute, startServiceHttp } from './http.ts';

const TOKEN = 'test-admin-token-0123456789abcdef';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request with exactly these headers (Host included, as a browser or curl would send it). */
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
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

const metrics = { render: async () => '', contentType: 'text/plain' };

describe('actions', () => {
  const servers: ServiceHttp[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });
  async function start(extra: Partial<ServiceHttpOptions>, calls: string[]) {
    const savepoint: ServiceRoute = async ({ query }) => {
      calls.push(query.get('name') ?? '');
      return { status: 200, type: 'application/json', body: '{"ok":true}' };
    };
    const s = await startServiceHttp({
      port: 0,
      metrics,
      ready: () => true,
      actions: { '/savepoint': savepoint },
      ...extra,
    });
    servers.push(s);
    return s;
  }

  test('off without an admin token: 404, and the action never runs', async () => {
    const calls: string[] = [];
    const s = await start({}, calls);
    const r = await send(`${s.url}/savepoint?name=a`, {
      method: 'POST',
      headers: { host: `127.0.0.1:${s.port}`, authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(r.status, 404);
    assert.match(JSON.parse(r.body).error, /actions are off/);
    assert.deepEqual(calls, []);
  });

  test('on: only a request naming this server, of no other origin, with the token, runs it', async () => {
    const calls: string[] = [];
    const s = await start({ admin: { token: TOKEN, extraHosts: ['proxy.example'] } }, calls);
    const host = `127.0.0.1:${s.port}`;
    const auth = `Bearer ${TOKEN}`;
    const post = (headers: Record<string, string>, name = 'x') =>
      send(`${s.url}/savepoint?name=${name}`, { method: 'POST', headers, body: 'name=x' });

    // What a web page does: a "simple" cross-origin POST (text/plain, no preflight).
    const cross = await post({ host, origin: 'http://evil.example', 'content-type': 'text/plain' });
    assert.equal(cross.status, 403);
    assert.match(JSON.parse(cross.body).error, /cross-origin/);
    // Even with the token: a page of another origin is refused.
    assert.equal((await post({ host, origin: 'http://evil.example', authorization: auth })).status, 403);
    assert.equal((await post({ host, origin: 'null', authorization: auth })).status, 403);
    assert.equal((await post({ host, origin: `https://${host}`, authorization: auth })).status, 403);
    // DNS rebinding: the attacker's name in Host, at this server's address.
    assert.equal((await post({ host: `evil.example:${s.port}`, authorization: auth })).status, 403);
    assert.equal((await post({ host: `127.0.0.1:${s.port + 1}`, authorization: auth })).status, 403);
    // No token, a wrong one, one of another length, another scheme.
    const none = await post({ host });
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="kstate"');
    assert.equal((await post({ host, authorization: `Bearer ${TOKEN.replace(/f$/, 'e')}` })).status, 401);
    assert.equal((await post({ host, authorization: 'Bearer short' })).status, 401);
    assert.equal((await post({ host, authorization: `Basic ${TOKEN}` })).status, 401);
    // GET is no action.
    const get = await send(`${s.url}/savepoint?name=x`, { headers: { host, authorization: auth } });
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
    assert.deepEqual(calls, [], 'a refused request ran the action');

    assert.equal((await post({ host, authorization: auth }, 'a')).status, 200);
    assert.equal((await post({ host: `localhost:${s.port}`, authorization: auth }, 'b')).status, 200);
    assert.equal((await post({ host, origin: `http://${host}`, authorization: auth }, 'c')).status, 200);
    assert.equal((await post({ host: 'proxy.example', authorization: auth }, 'd')).status, 200);
    assert.equal((await post({ host: 'PROXY.example:8080', authorization: auth }, 'e')).status, 200);
    assert.deepEqual(calls, ['a', 'b', 'c', 'd', 'e']);

    // Read-only endpoints stay open to any Host and Origin.
    const open = await send(`${s.url}/readyz`, {
      headers: { host: 'evil.example', origin: 'http://evil.example' },
    });
    assert.equal(open.status, 200);
  });

  test('a thrown error is a 500 without its message (which may name server paths)', async () => {
    const seen: unknown[] = [];
    const s = await startServiceHttp({
      port: 0,
      metrics,
      ready: () => true,
      routes: {
        '/boom': async () => {
          throw new Error('cannot write /srv/kstate/checkpoints/job/t-p0/chk-3.json');
        },
      },
      onError: (e) => seen.push(e),
    });
    servers.push(s);
    const r = await send(`${s.url}/boom`);
    assert.equal(r.status, 500);
    assert.doesNotMatch(r.body, /\/srv|checkpoints|chk-3/);
    assert.equal(seen.length, 1);
  });
});

describe('HTTPS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'http-tls-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A self-signed certificate for 127.0.0.1 and localhost (PEM text); undefined when openssl is missing. */
  function selfSigned(name: string): { cert: string; key: string } | undefined {
    const files = selfSignedFiles(dir, name);
    return files && { cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8') };
  }

  test('serves HTTPS with a certificate file; actions check the https origin', async (t) => {
    const pair = selfSigned('a');
    if (pair === undefined) return t.skip(NO_OPENSSL);
    const calls: string[] = [];
    const s = await startServiceHttp({
      port: 0,
      metrics,
      ready: () => true,
      tls: pair,
      admin: { token: TOKEN },
      actions: {
        '/savepoint': async () => {
          calls.push('x');
          return { status: 200, type: 'text/plain', body: 'ok' };
        },
      },
    });
    try {
      assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const host = `127.0.0.1:${s.port}`;
      assert.equal((await send(`${s.url}/readyz`, { ca: pair.cert })).status, 200);
      // Unverified (no CA given): the client refuses the self-signed certificate.
      await assert.rejects(send(`${s.url}/readyz`), /self-signed|self signed/);
      // Plain HTTP to the TLS port gets no HTTP answer.
      await assert.rejects(send(`http://${host}/readyz`));
      const auth = `Bearer ${TOKEN}`;
      const post = (headers: Record<string, string>) =>
        send(`${s.url}/savepoint?name=x`, { method: 'POST', headers, ca: pair.cert });
      assert.equal((await post({ host, origin: `http://${host}`, authorization: auth })).status, 403);
      assert.equal((await post({ host, origin: `https://${host}`, authorization: auth })).status, 200);
      assert.deepEqual(calls, ['x']);
    } finally {
      await s.close();
    }
  });

  test('a certificate that is no certificate, or a key of another one, is CONFIG_INVALID at start', async (t) => {
    const a = selfSigned('b');
    const b = selfSigned('c');
    if (a === undefined || b === undefined) return t.skip(NO_OPENSSL);
    const base = { port: 0, metrics, ready: () => true };
    await assert.rejects(
      startServiceHttp({ ...base, tls: { cert: 'not a certificate', key: a.key } }),
      (e: unknown) =>
        isStreamError(e, 'CONFIG_INVALID') && /TLS certificate and key cannot be used/.test(e.message),
    );
    await assert.rejects(
      startServiceHttp({ ...base, tls: { cert: a.cert, key: b.key } }),
      (e: unknown) =>
        isStreamError(e, 'CONFIG_INVALID') && /key values mismatch|cannot be used/.test(e.message),
    );
  });
});

describe('admin-auth checks', () => {
  test('parseHost: host, host:port, [v6]:port; nothing else', () => {
    assert.deepEqual(parseHost('Example.COM.', 80), { host: 'example.com', port: 80 });
    assert.deepEqual(parseHost('127.0.0.1:9464', 80), { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parseHost('[::1]:9464', 80), { host: '::1', port: 9464 });
    for (const bad of ['a b', 'user@host', 'host/path', 'host:99999', 'host:0', '', 'host:'])
      assert.equal(parseHost(bad, 80), undefined, bad);
  });

  test('allowedHosts: a wildcard bind allows the machine names; a specific bind only its own address', () => {
    const wild = allowedHosts({
      bound: '0.0.0.0',
      port: 9,
      machineNames: ['box', '10.0.0.5'],
      advertised: 'pod-1',
    });
    const names = wild.map((r) => r.host);
    for (const n of ['localhost', '127.0.0.1', '::1', 'box', '10.0.0.5', 'pod-1'])
      assert.ok(names.includes(n), n);
    assert.ok(!names.includes('0.0.0.0'));
    const own = allowedHosts({ bound: '10.0.0.5', port: 9, machineNames: ['box'] });
    assert.ok(!own.some((r) => r.host === 'box'));
    const extra = allowedHosts({ bound: '127.0.0.1', port: 9, extra: ['lb.example', 'fwd:8080'] });
    assert.deepEqual(extra.slice(-2), [
      { host: 'lb.example', port: undefined },
      { host: 'fwd', port: 8080 },
    ]);
  });

  test('bearerMatches: exactly "Bearer <token>"', () => {
    assert.ok(bearerMatches(`Bearer ${TOKEN}`, TOKEN));
    assert.ok(bearerMatches(`bearer ${TOKEN}`, TOKEN));
    assert.ok(!bearerMatches(undefined, TOKEN));
    assert.ok(!bearerMatches(TOKEN, TOKEN));
    assert.ok(!bearerMatches(`Bearer ${TOKEN}x`, TOKEN));
    assert.ok(!bearerMatches(`Bearer ${TOKEN} extra`, TOKEN));
  });

  test('a refusal never carries the token', () => {
    const rules = allowedHosts({ bound: '127.0.0.1', port: 9 });
    for (const headers of [
      { host: 'evil:9', authorization: 'Bearer nope' },
      { host: '127.0.0.1:9', origin: 'http://evil', authorization: 'Bearer nope' },
      { host: '127.0.0.1:9', authorization: 'Bearer nope' },
    ]) {
      const v = checkAction(headers, { scheme: 'http', rules, token: TOKEN });
      assert.equal(v.ok, false);
      assert.ok(!JSON.stringify(v).includes(TOKEN));
    }
  });
});
