/**
 * A schema registry that is down, slow or refusing: retried with backoff and turned into
 * RegistryUnavailableError (retryable), never into a DeserializationError (which a source could skip).
 *
 * The registry is the real one (Apicurio, scripts/registry). Outages are made with a small TCP relay in
 * front of it that can be closed and opened again on the same port, and with a tiny HTTP fault server
 * (503s, no answer, 401) for answers a healthy registry never gives. Neither stands in for the registry:
 * every schema comes from the real one.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { registryForTests, type TestRegistry } from '../../../../scripts/registry/fixture.ts';
import { startRegistry } from '../../../../scripts/registry/registry.ts';
import {
  avroSerde,
  DeserializationError,
  isPromise,
  RegistryRequestError,
  RegistryUnavailableError,
  type RetryPolicy,
  SchemaRegistryClient,
} from '../../serde/index.ts';
import { names } from '../support/names.ts';

const TEST_TIMEOUT_MS = 120_000;

const USER = {
  type: 'record',
  name: 'User',
  namespace: 'kstate.outage',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'name', type: 'string' },
  ],
};

let registry: TestRegistry;

before(async () => {
  registry = await registryForTests();
});

after(async () => {
  await registry?.release();
});

async function value<T>(result: T | Promise<T>): Promise<T> {
  return isPromise(result) ? await result : result;
}

function listen(server: Server | HttpServer, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

/** A TCP relay to `target` that can be closed (connection refused) and opened again on the same port. */
class Relay {
  #server: Server | undefined;
  #sockets = new Set<Socket>();
  readonly target: { host: string; port: number };
  port = 0;
  constructor(target: { host: string; port: number }) {
    this.target = target;
  }

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect({ host: this.target.host, port: this.target.port });
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    this.port = await listen(server, this.port);
    this.#server = server;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server !== undefined) await new Promise((resolve) => server.close(resolve));
  }
}

function targetOf(url: string): { host: string; port: number; path: string } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), path: u.pathname };
}

const fast: Partial<RetryPolicy> = { initialDelayMs: 20, maxDelayMs: 200, attemptTimeoutMs: 1_000 };

describe('registry outages', { timeout: TEST_TIMEOUT_MS }, () => {
  test('connection refused: retried with backoff, then RegistryUnavailableError, never a DeserializationError', async () => {
    const topic = names('outage refused').topic();
    const bytes = (await value(
      avroSerde({ registry: new SchemaRegistryClient({ url: registry.url }), schema: USER }).serialize(
        { id: 1, name: 'a' },
        topic,
      ),
    )) as Buffer;
    const relay = new Relay(targetOf(registry.url));
    await relay.open();
    await relay.close();
    const lines: string[] = [];
    const down = new SchemaRegistryClient({
      url: `http://127.0.0.1:${relay.port}${targetOf(registry.url).path}`,
      retry: { ...fast, maxElapsedMs: 600 },
      log: (line) => lines.push(line),
    });
    const started = performance.now();
    await assert.rejects(
      async () => value(avroSerde({ registry: down }).deserialize(bytes, topic)),
      (error: unknown) => {
        assert.ok(!(error instanceof DeserializationError), 'an outage is not a poison record');
        assert.ok(error instanceof RegistryUnavailableError);
        assert.equal(error.code, 'SCHEMA_REGISTRY_UNAVAILABLE');
        assert.equal(error.retryable, true);
        assert.ok(error.attempts >= 4, `attempts: ${error.attempts}`);
        assert.match(error.message, /ECONNREFUSED/);
        assert.ok(error.cause instanceof Error);
        return true;
      },
    );
    const elapsed = performance.now() - started;
    // It waited out every backoff it announced (jittered, so their sum varies) and gave up soon after
    // its 600 ms budget.
    const waited = lines.reduce((ms, l) => ms + Number(/retrying in (\d+) ms/.exec(l)?.[1] ?? 0), 0);
    assert.ok(waited >= 100, `announced backoffs: ${waited} ms`);
    assert.ok(elapsed >= waited - 5 && elapsed < 5_000, `gave up after ${elapsed} ms, backoffs ${waited} ms`);
    assert.equal(down.stats.schemaFetches, lines.length);
    assert.match(
      lines[0] ?? '',
      /GET \/schemas\/ids\/\d+ at http:\/\/127\.0\.0\.1:\d+.* failed \(.*ECONNREFUSED.*\), attempt 1; retrying in \d+ ms/,
    );
    assert.match(lines.at(-1) ?? '', /giving up/);
  });

  test('the registry comes back during the retries: the read succeeds', async () => {
    const topic = names('outage back').topic();
    const bytes = (await value(
      avroSerde({ registry: new SchemaRegistryClient({ url: registry.url }), schema: USER }).serialize(
        { id: 2, name: 'back' },
        topic,
      ),
    )) as Buffer;
    const relay = new Relay(targetOf(registry.url));
    await relay.open();
    await relay.close();
    const lines: string[] = [];
    const flaky = new SchemaRegistryClient({
      url: `http://127.0.0.1:${relay.port}${targetOf(registry.url).path}`,
      retry: { ...fast, maxElapsedMs: 30_000 },
      log: (line) => lines.push(line),
    });
    const reading = value(avroSerde({ registry: flaky }).deserialize(bytes, topic));
    while (lines.length < 3) await new Promise((resolve) => setTimeout(resolve, 10));
    await relay.open();
    try {
      assert.deepEqual({ ...(await reading) }, { id: 2, name: 'back' });
    } finally {
      await relay.close();
    }
    assert.ok(flaky.stats.schemaFetches >= 4, `fetches: ${flaky.stats.schemaFetches}`);
  });

  test('a registry started late, while a writer retries its registration, takes it', async () => {
    // A fresh registry on a port nothing listens on yet; the writer starts first.
    const probe = createServer();
    const port = await listen(probe);
    await new Promise((resolve) => probe.close(resolve));
    const lines: string[] = [];
    const writer = new SchemaRegistryClient({
      url: `http://127.0.0.1:${port}/apis/ccompat/v7`,
      retry: { ...fast, maxDelayMs: 500, maxElapsedMs: 60_000 },
      log: (line) => lines.push(line),
    });
    const topic = names('outage late').topic();
    const writing = value(
      avroSerde({ registry: writer, schema: USER }).serialize({ id: 3, name: 'late' }, topic),
    );
    while (lines.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    const late = await startRegistry({ port, exitOnSignal: false });
    try {
      const bytes = (await writing) as Buffer;
      assert.match(lines[0] ?? '', /POST \/subjects\/.*\/versions .* failed/);
      const read = await value(
        avroSerde({ registry: new SchemaRegistryClient({ url: late.url }) }).deserialize(bytes, topic),
      );
      assert.deepEqual({ ...(read as object) }, { id: 3, name: 'late' });
    } finally {
      await late.stop();
    }
  });
});

describe('registry answers that are not schemas', { timeout: TEST_TIMEOUT_MS }, () => {
  let faults: HttpServer;
  let faultPort = 0;
  /** What the fault server does with the next requests, in order; then it relays to the real registry. */
  const plan: Array<'503' | 'hang' | '401'> = [];
  const requests: string[] = [];

  before(async () => {
    const target = registry.url;
    faults = createHttpServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      const next = plan.shift();
      if (next === 'hang') return; // no answer at all
      if (next === '503' || next === '401') {
        res.writeHead(Number(next), { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error_code: Number(next),
            message: next === '503' ? 'unavailable' : 'Unauthorized',
          }),
        );
        return;
      }
      void fetch(`${target}${req.url ?? ''}`).then(async (answer) => {
        res.writeHead(answer.status, {
          'content-type': answer.headers.get('content-type') ?? 'application/json',
        });
        res.end(await answer.text());
      });
    });
    faultPort = await listen(faults);
  });

  after(async () => {
    faults.closeAllConnections();
    await new Promise((resolve) => faults.close(resolve));
  });

  async function framed(topic: string): Promise<Buffer> {
    return (await value(
      avroSerde({ registry: new SchemaRegistryClient({ url: registry.url }), schema: USER }).serialize(
        { id: 9, name: 'x' },
        topic,
      ),
    )) as Buffer;
  }

  const viaFaults = (retry: Partial<RetryPolicy>, lines: string[]) =>
    new SchemaRegistryClient({
      url: `http://127.0.0.1:${faultPort}`,
      retry,
      log: (line) => lines.push(line),
    });

  test('503s are retried until the registry answers', async () => {
    const topic = names('outage 503').topic();
    const bytes = await framed(topic);
    plan.push('503', '503');
    requests.length = 0;
    const lines: string[] = [];
    const client = viaFaults({ ...fast, maxElapsedMs: 10_000 }, lines);
    assert.deepEqual(
      { ...((await value(avroSerde({ registry: client }).deserialize(bytes, topic))) as object) },
      { id: 9, name: 'x' },
    );
    assert.equal(requests.length, 3);
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? '', /failed \(.*503.*\), attempt 1/);
  });

  test('an attempt that gets no answer is cut at attemptTimeoutMs and retried', async () => {
    const topic = names('outage hang').topic();
    const bytes = await framed(topic);
    plan.push('hang');
    requests.length = 0;
    const lines: string[] = [];
    const client = viaFaults({ ...fast, attemptTimeoutMs: 300, maxElapsedMs: 10_000 }, lines);
    const started = performance.now();
    assert.deepEqual(
      { ...((await value(avroSerde({ registry: client }).deserialize(bytes, topic))) as object) },
      { id: 9, name: 'x' },
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 300 && elapsed < 3_000, `took ${elapsed} ms`);
    assert.equal(requests.length, 2);
    assert.match(lines[0] ?? '', /Timeout \(300ms\)/);
  });

  test('401 is a RegistryRequestError at once: neither retried nor a poison record', async () => {
    const topic = names('outage 401').topic();
    const bytes = await framed(topic);
    plan.push('401');
    requests.length = 0;
    const lines: string[] = [];
    const client = viaFaults({ ...fast, maxElapsedMs: 10_000 }, lines);
    await assert.rejects(
      async () => value(avroSerde({ registry: client }).deserialize(bytes, topic)),
      (error: unknown) => {
        assert.ok(error instanceof RegistryRequestError);
        assert.equal(error.status, 401);
        assert.match(error.message, /check the registry credentials/);
        return true;
      },
    );
    assert.equal(requests.length, 1);
    assert.equal(lines.length, 0);
  });
});
