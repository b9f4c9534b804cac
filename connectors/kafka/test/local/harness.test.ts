/**
 * The broker harness (scripts/kafka) on bad input and interruption: each failure is one line saying what
 * is wrong and what to do, and no java process or data dir is left behind.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isAlive, startBroker } from '../../local/broker.ts';
import { formatHarnessError, HarnessError } from '../../local/errors.ts';
import { ensureKafkaInstalled, javaBinary, REPO_ROOT } from '../../local/install.ts';
import { probeBrokers } from '../../local/probe.ts';
import { eventually } from '../support/kafka.ts';

const CLI = join(REPO_ROOT, 'scripts/kafka/cli.ts');
const WITH_BROKER = join(REPO_ROOT, 'scripts/kafka/with-broker.ts');
const VERSION = process.env.KAFKA_VERSION;
const javaMissing = spawnSync(javaBinary(), ['-version']).status !== 0 ? 'java is not installed' : false;

const temps: string[] = [];
after(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});
function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `kstate-harness-test-${label}-`));
  temps.push(dir);
  return dir;
}

/** The environment of a harness run that starts its own broker, plus `extra`. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const name of ['KAFKA_BROKERS', 'KAFKA_PORT', 'KAFKA_CONTROLLER_PORT', 'KAFKA_KEEP_DATA'])
    delete base[name];
  return { ...base, ...extra };
}

function node(
  args: readonly string[],
  environment: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { env: environment, cwd: REPO_ROOT, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function stderrLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.trim() !== '');
}

async function listening(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  return { server, port: address.port };
}

async function closedPort(): Promise<number> {
  const { server, port } = await listening();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts `cli.ts start` and resolves with the broker's pid and data dir once it answers. */
async function startCli(): Promise<{ cli: ChildProcess; pid: number; dataDir: string; brokers: string }> {
  const cli = spawn(process.execPath, [CLI, 'start'], {
    cwd: REPO_ROOT,
    env: env(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  cli.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return eventually(
    async () => {
      const started = /answers on (\S+) \(pid (\d+)\)/.exec(stderr);
      const dir = /data dir (\S+) is removed/.exec(stderr);
      if (cli.exitCode !== null) throw new Error(`cli start exited early: ${stderr}`);
      return started?.[1] !== undefined && started[2] !== undefined && dir?.[1] !== undefined
        ? { cli, brokers: started[1], pid: Number(started[2]), dataDir: dir[1] }
        : undefined;
    },
    90_000,
    () => `cli start to report a broker: ${stderr}`,
  );
}

async function gone(pid: number, dataDir: string): Promise<void> {
  await eventually(
    async () => (!isAlive(pid) && !existsSync(dataDir) ? true : undefined),
    30_000,
    () => `java ${pid} gone (alive: ${isAlive(pid)}) and ${dataDir} removed (exists: ${existsSync(dataDir)})`,
  );
}

describe('kafka harness: bad input gets one clear line', () => {
  test('an unpinned version', async () => {
    const { code, stderr } = await node([CLI, 'fetch', '2.8.0'], env());
    assert.equal(code, 1);
    assert.deepEqual(stderrLines(stderr).length, 1, stderr);
    assert.match(stderr, /Kafka version "2\.8\.0" is not pinned .*use one of 4\.1\.1, 3\.9\.1/);
  });

  test('java missing', async () => {
    const { code, stderr } = await node([CLI, 'start'], env({ JAVA_HOME: '/nonexistent-jdk' }));
    assert.equal(code, 1);
    assert.equal(stderrLines(stderr).length, 1, stderr);
    assert.match(
      stderr,
      /java not found or not runnable \(\/nonexistent-jdk\/bin\/java.*install a JDK \d+ or newer/,
    );
  });

  test('mvn missing', { skip: javaMissing }, async () => {
    const cacheDir = tempDir('nomvn');
    const { code, stderr } = await node(
      [CLI, 'fetch'],
      env({ KAFKA_CACHE_DIR: cacheDir, MVN: '/nonexistent/mvn' }),
    );
    assert.equal(code, 1);
    const lines = stderrLines(stderr).filter((l) => !l.includes('fetching Kafka'));
    assert.equal(lines.length, 1, stderr);
    assert.match(stderr, /mvn not found or not runnable \(\/nonexistent\/mvn.*install Maven/);
  });

  test('Maven Central unreachable', { skip: javaMissing, timeout: 120_000 }, async () => {
    const dir = tempDir('offline');
    const port = await closedPort();
    const settings = join(dir, 'settings.xml');
    writeFileSync(
      settings,
      `<settings><mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf><url>http://127.0.0.1:${port}/maven2</url></mirror></mirrors></settings>`,
    );
    const error = await ensureKafkaInstalled(VERSION, {
      cacheDir: join(dir, 'cache'),
      mvnArgs: ['-s', settings, `-Dmaven.repo.local=${join(dir, 'repo')}`],
    }).then(
      () => assert.fail('the fetch should fail'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof HarnessError, String(error));
    assert.equal(error.code, 'MVN_FAILED');
    assert.match(
      error.message,
      /mvn could not fetch Kafka .* check the network, or configure a reachable mirror in ~\/\.m2\/settings\.xml/,
    );
    assert.match(
      error.details ?? '',
      /127\.0\.0\.1/,
      'the tail of mvn output names the unreachable repository',
    );
    assert.ok(
      !existsSync(join(dir, 'cache', error.message.split(' ')[4] ?? '', 'libs')),
      'nothing half-fetched in the cache',
    );
    assert.match(formatHarnessError(error).split('\n')[0] ?? '', /^kafka harness: mvn could not fetch/);
  });

  test('KAFKA_PORT already in use', async () => {
    const { server, port } = await listening();
    try {
      const { code, stderr } = await node([CLI, 'start'], env({ KAFKA_PORT: String(port) }));
      assert.equal(code, 1);
      assert.equal(stderrLines(stderr).length, 1, stderr);
      assert.match(
        stderr,
        new RegExp(
          `KAFKA_PORT=${port} is already in use on 127\\.0\\.0\\.1: .*unset KAFKA_PORT to use a free one`,
        ),
      );
    } finally {
      server.close();
    }
  });

  test('KAFKA_BROKERS pointing at nothing', async () => {
    const port = await closedPort();
    const { code, stderr } = await node(
      [WITH_BROKER, process.execPath, '-e', 'process.exit(0)'],
      env({ KAFKA_BROKERS: `127.0.0.1:${port}` }),
    );
    assert.equal(code, 1);
    assert.equal(stderrLines(stderr).length, 1, stderr);
    assert.match(
      stderr,
      new RegExp(
        `^kafka harness: KAFKA_BROKERS=127\\.0\\.0\\.1:${port} does not answer: .*ECONNREFUSED.*\\. Unset it to let the harness start a broker, or start your cluster\\n$`,
      ),
    );
  });

  test('a broker that does not answer in time is stopped and its files removed', {
    skip: javaMissing,
  }, async () => {
    const error = await startBroker({
      ...(VERSION === undefined ? {} : { version: VERSION }),
      timeoutMs: 1,
      exitOnSignal: false,
    }).then(
      () => assert.fail('a 1 ms start should time out'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof HarnessError, String(error));
    assert.equal(error.code, 'START_TIMEOUT');
    assert.match(error.message, /raise KAFKA_START_TIMEOUT_MS/);
    assert.ok(error.pid !== undefined && error.dataDir !== undefined);
    assert.equal(isAlive(error.pid), false, `java ${error.pid} is gone`);
    assert.equal(existsSync(error.dataDir), false, `${error.dataDir} is removed`);
  });
});

describe('kafka harness: lifecycle', { skip: javaMissing }, () => {
  test('starts a broker that answers, and stop() leaves nothing behind', { timeout: 120_000 }, async () => {
    const broker = await startBroker({
      ...(VERSION === undefined ? {} : { version: VERSION }),
      exitOnSignal: false,
    });
    try {
      assert.match(broker.brokers, /^127\.0\.0\.1:\d+$/);
      assert.ok(broker.startMs > 0 && isAlive(broker.pid));
      const answer = await probeBrokers(broker.brokers);
      assert.equal(answer.ok, true);
    } finally {
      await broker.stop();
    }
    await broker.stop(); // idempotent
    assert.equal(isAlive(broker.pid), false);
    assert.equal(existsSync(broker.dataDir), false);
    assert.equal((await probeBrokers(broker.brokers, 2_000)).ok, false);
  });

  test('SIGINT to `cli.ts start` stops the broker and exits 130', { timeout: 120_000 }, async () => {
    const { cli, pid, dataDir } = await startCli();
    const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
    cli.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.equal(isAlive(pid), false, 'java stopped before the cli exited');
    assert.equal(existsSync(dataDir), false);
  });

  test('a SIGKILLed parent leaves no broker: the watchdog stops it', { timeout: 120_000 }, async () => {
    const { cli, pid, dataDir } = await startCli();
    cli.kill('SIGKILL');
    await gone(pid, dataDir);
  });

  test('with-broker runs the command against a fresh broker and passes its exit code on', {
    timeout: 120_000,
  }, async () => {
    const { code, stdout, stderr } = await node(
      [WITH_BROKER, process.execPath, '-e', 'console.log(process.env.KAFKA_BROKERS); process.exit(3)'],
      env(),
    );
    assert.equal(code, 3, stderr);
    const brokers = stdout.trim();
    assert.match(brokers, /^127\.0\.0\.1:\d+$/);
    assert.match(stderr, new RegExp(`started in \\d+ ms.*: KAFKA_BROKERS=${brokers.replaceAll('.', '\\.')}`));
    assert.match(stderr, /stopped in \d+ ms/);
    assert.equal((await probeBrokers(brokers, 2_000)).ok, false, 'the broker is gone after the command');
  });
});
