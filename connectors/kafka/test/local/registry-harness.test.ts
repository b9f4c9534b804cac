/**
 * The schema-registry harness (scripts/registry): it starts a real Apicurio Registry that answers the
 * Confluent-compatible API, stops it without leaving a java process or a temp dir behind (also on
 * SIGINT and when its parent is SIGKILLed), and fails with one clear line.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { RegistryHarnessError } from '../../../../scripts/registry/errors.ts';
import { REPO_ROOT } from '../../../../scripts/registry/install.ts';
import { DEFAULT_START_TIMEOUT_MS, httpGet, startRegistry } from '../../../../scripts/registry/registry.ts';
import { isAlive } from '../../local/processes.ts';

/**
 * Each test starts the registry (a Java application) at most once: the harness's own start deadline,
 * plus the stop. Per test, not for the suite: four starts took 8-12 s each at load 14 on two cores,
 * and a suite-wide 120 s ran out under heavier load (issue 12).
 */
const START_MS = Number(process.env.REGISTRY_START_TIMEOUT_MS) || DEFAULT_START_TIMEOUT_MS;
const TEST_TIMEOUT_MS = START_MS + 60_000;
const node = process.execPath;

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out after ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function run(args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => string } {
  const child = spawn(node, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  return Object.assign(child, { output: () => output });
}

function exitOf(child: ChildProcess): Promise<number | NodeJS.Signals> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
}

describe('registry harness', () => {
  test('start, answer the ccompat API, stop: no process and no dir left', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const registry = await startRegistry({ exitOnSignal: false });
    assert.match(registry.url, /^http:\/\/127\.0\.0\.1:\d+\/apis\/ccompat\/v7$/);
    assert.ok(registry.startMs > 0);
    const subjects = await httpGet(`${registry.url}/subjects`, 5_000);
    assert.equal(subjects.status, 200);
    assert.ok(isAlive(registry.pid));
    assert.ok(existsSync(registry.dataDir));
    await registry.stop();
    await registry.stop();
    assert.equal(isAlive(registry.pid), false);
    assert.equal(existsSync(registry.dataDir), false);
  });

  test('a port in use is one clear line', { timeout: TEST_TIMEOUT_MS }, async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    try {
      await assert.rejects(startRegistry({ port, exitOnSignal: false }), (error: unknown) => {
        assert.ok(error instanceof RegistryHarnessError);
        assert.equal(error.code, 'PORT_IN_USE');
        assert.match(error.message, new RegExp(`REGISTRY_PORT=${port} is already in use`));
        return true;
      });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a start timeout stops what it started', { timeout: TEST_TIMEOUT_MS }, async () => {
    await assert.rejects(startRegistry({ timeoutMs: 1, exitOnSignal: false }), (error: unknown) => {
      assert.ok(error instanceof RegistryHarnessError);
      assert.equal(error.code, 'START_TIMEOUT');
      return true;
    });
  });

  test('SIGINT to `cli.ts start` stops the registry and exits 130', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const cli = run(['scripts/registry/cli.ts', 'start']);
    await until(() => /started in \d+ ms/.test(cli.output()), START_MS + 10_000, 'the registry to start');
    const pid = Number(/\(pid (\d+)\)/.exec(cli.output())?.[1]);
    const url = /SCHEMA_REGISTRY_URL=(\S+)/.exec(cli.output())?.[1] ?? '';
    assert.equal((await httpGet(`${url}/subjects`, 5_000)).status, 200);
    cli.kill('SIGINT');
    assert.equal(await exitOf(cli), 130);
    assert.equal(isAlive(pid), false);
    assert.match(cli.output(), /registry harness: SIGINT, stopping the registry/);
  });

  test('SIGKILL of the parent: the watchdog stops the registry and removes its dir', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const script = `
      import { startRegistry } from './scripts/registry/registry.ts';
      const r = await startRegistry();
      console.log(JSON.stringify({ pid: r.pid, dir: r.dataDir }));
      setInterval(() => {}, 1 << 30);
    `;
    const parent = run(['--input-type=module', '-e', script]);
    await until(() => parent.output().includes('"pid"'), START_MS + 10_000, 'the registry to start');
    const { pid, dir } = JSON.parse(
      parent
        .output()
        .split('\n')
        .find((l) => l.includes('"pid"')) ?? '{}',
    ) as {
      pid: number;
      dir: string;
    };
    assert.ok(isAlive(pid));
    parent.kill('SIGKILL');
    await exitOf(parent);
    await until(() => !isAlive(pid) && !existsSync(dir), 30_000, `registry ${pid} to stop and ${dir} to go`);
  });

  test('with-registry runs the command with SCHEMA_REGISTRY_URL and passes its exit code on', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const ok = run(
      [
        join('scripts', 'registry', 'with-registry.ts'),
        node,
        '-e',
        'fetch(process.env.SCHEMA_REGISTRY_URL + "/subjects").then((r) => process.exit(r.status === 200 ? 7 : 1))',
      ],
      { SCHEMA_REGISTRY_URL: '' },
    );
    assert.equal(await exitOf(ok), 7, ok.output());
    assert.match(ok.output(), /registry stopped in \d+ ms/);

    const closed = run([join('scripts', 'registry', 'with-registry.ts'), node, '-e', 'process.exit(0)'], {
      SCHEMA_REGISTRY_URL: 'http://127.0.0.1:9',
    });
    assert.equal(await exitOf(closed), 1);
    assert.match(
      closed.output(),
      /^registry harness: SCHEMA_REGISTRY_URL=http:\/\/127\.0\.0\.1:9 does not answer GET \/subjects \(.*ECONNREFUSED.*\): unset it to let the harness start a registry, or start yours\n$/,
    );
  });
});
