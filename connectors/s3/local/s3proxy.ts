/**
 * A real S3 server for tests and local work: S3Proxy (connectors/s3/local/install.ts fetches it) with its
 * `filesystem-nio2` backend, on loopback, signature v2 and v4, fixed credentials, region us-east-1.
 *
 * Lifecycle: installing -> starting -> ready -> (kill() -> killed -> restart() -> starting ...) -> stopped.
 * A failure before `ready` stops what was started and throws a HarnessError with the end of the log.
 * The java process is registered with the harness's process registry (connectors/kafka/local/processes.ts)
 * from spawn to stop, so an exit of this process, the registry's signal handling or stopAll() kill it,
 * and a SIGKILL of this process is covered by a watchdog, as for the Kafka broker.
 *
 * Files: a run dir `$TMPDIR/kstate-s3proxy-XXXXXX` holds `s3proxy.properties`, `console.log` (S3Proxy's
 * own log, INFO and up) and, unless `dataDir` is given, `data/` (the buckets: one directory each, one
 * file per object). stop() removes the run dir; a given `dataDir` is kept.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HarnessError, lastLines } from '../../kafka/local/errors.ts';
import { javaBinary } from '../../kafka/local/install.ts';
import { removeDir, spawnWatchdog, type Tracked, terminate, track } from '../../kafka/local/processes.ts';
import { checkJavaForS3Proxy, ensureS3ProxyInstalled, S3PROXY, S3PROXY_NAME } from './install.ts';

export const DEFAULT_S3PROXY_START_TIMEOUT_MS = 60_000;
export const S3PROXY_REGION = 'us-east-1';
export const DEFAULT_IDENTITY = 'kstate-test';
export const DEFAULT_CREDENTIAL = 'kstate-test-secret';
const STOP_GRACE_MS = 10_000;
const LOG_TAIL_LINES = 20;
const PROBE_INTERVAL_MS = 100;

export interface StartS3ProxyOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  /** Where the buckets live; kept on stop. Default: `data/` in the run dir, removed on stop. */
  readonly dataDir?: string;
  /** The access key id clients sign with; default `kstate-test`. */
  readonly identity?: string;
  /** The secret access key; default `kstate-test-secret`. */
  readonly credential?: string;
  /** How long to wait for an HTTP answer, not counting a first fetch; default `$S3PROXY_START_TIMEOUT_MS` or 60 s. */
  readonly timeoutMs?: number;
  /** Keep the run dir (log, properties, default data dir) after stop; default true when `$S3PROXY_KEEP_DATA` is set. */
  readonly keepData?: boolean;
  /** Stop it and exit on SIGINT/SIGTERM/SIGHUP (the registry's handlers); default true. */
  readonly exitOnSignal?: boolean;
  readonly cacheDir?: string;
  /** Progress lines; default silent. */
  readonly log?: (line: string) => void;
}

export interface RunningS3Proxy {
  /** `http://host:port`, for the SDK's `endpoint` (with `forcePathStyle: true`). */
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: typeof S3PROXY_REGION;
  readonly dataDir: string;
  readonly version: string;
  /** S3Proxy's console output (its log). */
  readonly logFile: string;
  /** Milliseconds from the call to an HTTP answer, including a first-time fetch if there was one. */
  readonly startMs: number;
  /** Milliseconds of that spent fetching with mvn (0 when cached). */
  readonly fetchMs: number;
  /** The current java process (a restart changes it); -1 while none runs. */
  readonly pid: number;
  /** Graceful (SIGTERM, SIGKILL after 10 s); removes the run dir. Idempotent; nothing works after it. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash: resolves once the process has exited; the data dir stays for restart(). */
  kill(): Promise<void>;
  /** Starts again on the same port and data dir (stopping a running process gracefully first). */
  restart(): Promise<void>;
}

class PortRace extends Error {}

function envTimeout(): number | undefined {
  const raw = process.env.S3PROXY_START_TIMEOUT_MS;
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new HarnessError(
      'START_TIMEOUT',
      `S3PROXY_START_TIMEOUT_MS=${raw} is not a positive integer: fix or unset it`,
    );
  }
  return value;
}

function jvmOptions(): string[] {
  const fromEnv = process.env.S3PROXY_JVM_OPTS;
  return [
    // Small: CI runs it beside a Kafka broker on 2 cores.
    ...(fromEnv !== undefined && fromEnv.trim() !== ''
      ? fromEnv.trim().split(/\s+/)
      : ['-Xms32m', '-Xmx256m', '-XX:+UseSerialGC']),
    '-Djava.awt.headless=true',
    // logback prints its own configuration status (a page) when its bundled logback.xml warns; not useful.
    '-Dlogback.statusListenerClass=ch.qos.logback.core.status.NopStatusListener',
  ];
}

function properties(endpoint: string, identity: string, credential: string, dataDir: string): string {
  return [
    `# Written by kstate's connectors/s3/local/s3proxy.ts for ${S3PROXY_NAME}.`,
    `s3proxy.endpoint=${endpoint}`,
    's3proxy.authorization=aws-v2-or-v4',
    `s3proxy.identity=${identity}`,
    `s3proxy.credential=${credential}`,
    'jclouds.provider=filesystem-nio2',
    // jclouds wants its own credentials too, even for a local backend.
    `jclouds.identity=${identity}`,
    `jclouds.credential=${credential}`,
    `jclouds.filesystem.basedir=${dataDir}`,
    '',
  ].join('\n');
}

/** Resolves with an error code when `port` cannot be bound on `host` (e.g. EADDRINUSE). */
function tryBind(host: string, port: number): Promise<string | undefined> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => done(undefined)));
  });
}

function freePort(host: string): Promise<number> {
  return new Promise((done, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

/** One HTTP answer (any status: unauthenticated GET / is 403 AccessDenied) means it is up. */
function answers(host: string, port: number): Promise<string | undefined> {
  return new Promise((done) => {
    const req = request({ host, port, path: '/', method: 'GET', timeout: 2_000, agent: false }, (res) => {
      res.resume();
      done(undefined);
    });
    req.once('timeout', () => req.destroy(new Error('no answer within 2000 ms')));
    req.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
    req.end();
  });
}

function readTail(path: string): string {
  try {
    return existsSync(path) ? lastLines(readFileSync(path, 'utf8'), LOG_TAIL_LINES) : '';
  } catch {
    return '';
  }
}

/** Starts S3Proxy; see the module comment. Resolves once it answers HTTP. */
export async function startS3Proxy(options: StartS3ProxyOptions = {}): Promise<RunningS3Proxy> {
  const started = performance.now();
  const host = options.host ?? '127.0.0.1';
  const fixedPort = options.port !== undefined && options.port !== 0 ? options.port : undefined;
  if (fixedPort !== undefined) {
    if (!Number.isInteger(fixedPort) || fixedPort < 1 || fixedPort > 65_535) {
      throw new HarnessError(
        'BAD_PORT',
        `S3Proxy port ${fixedPort} is not a TCP port (1-65535), or 0 for a free one`,
      );
    }
    const problem = await tryBind(host, fixedPort);
    if (problem !== undefined) {
      throw new HarnessError(
        problem === 'EADDRINUSE' ? 'PORT_IN_USE' : 'BAD_PORT',
        `S3Proxy cannot listen on ${host}:${fixedPort} (${problem}): stop what listens there, or choose another port (0 picks a free one)`,
      );
    }
  }
  const timeoutMs = options.timeoutMs ?? envTimeout() ?? DEFAULT_S3PROXY_START_TIMEOUT_MS;
  const install = await ensureS3ProxyInstalled({
    ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
    ...(options.log === undefined ? {} : { log: options.log }),
  });
  checkJavaForS3Proxy();

  const identity = options.identity ?? DEFAULT_IDENTITY;
  const credential = options.credential ?? DEFAULT_CREDENTIAL;
  const keepData = options.keepData ?? (process.env.S3PROXY_KEEP_DATA ?? '') !== '';
  const runDir = mkdtempSync(join(tmpdir(), `kstate-s3proxy-${S3PROXY.version}-`));
  const dataDir = options.dataDir === undefined ? join(runDir, 'data') : resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const logFile = join(runDir, 'console.log');
  const propertiesFile = join(runDir, 's3proxy.properties');

  let child: ChildProcess | undefined;
  let watchdog: ChildProcess | undefined;
  let stopped: Promise<void> | undefined;
  let port = fixedPort ?? 0;
  /** True during restart(): its port is fixed, so a bind failure is PORT_IN_USE, not a race to retry. */
  let restarting = false;

  /** Ends the current java process (graceful or SIGKILL) and its watchdog; keeps the files. */
  const endProcess = async (graceMs: number): Promise<void> => {
    const current = child;
    if (current !== undefined) {
      if (graceMs > 0) await terminate(current, graceMs);
      else if (current.exitCode === null && current.signalCode === null) {
        const exited = new Promise<void>((done) => current.once('exit', () => done()));
        current.kill('SIGKILL');
        await exited;
      }
    }
    watchdog?.kill('SIGKILL');
    watchdog = undefined;
    child = undefined;
  };
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await endProcess(STOP_GRACE_MS);
      if (!keepData) removeDir(runDir);
      untrack();
    })();
    return stopped;
  };
  const tracked: Tracked = {
    stop,
    killNow: () => {
      for (const each of [child, watchdog]) {
        if (each?.pid !== undefined && each.exitCode === null && each.signalCode === null)
          each.kill('SIGKILL');
      }
      if (!keepData) removeDir(runDir);
    },
  };
  const untrack = track(tracked, options.exitOnSignal ?? true);

  /** Spawns java on `port` and waits for an HTTP answer until `deadline`; throws (process ended) if none. */
  const launch = async (deadline: number): Promise<void> => {
    const endpoint = `http://${host}:${port}`;
    writeFileSync(propertiesFile, properties(endpoint, identity, credential, dataDir));
    const output = openSync(logFile, 'a');
    const java = javaBinary();
    const current = spawn(java, [...jvmOptions(), '-jar', install.jar, '--properties', propertiesFile], {
      cwd: runDir,
      stdio: ['ignore', output, output],
    });
    closeSync(output);
    child = current;
    let exitReason: string | undefined;
    current.once('error', (error) => {
      exitReason = `could not run ${java}: ${error.message}`;
    });
    current.once('exit', (code, signal) => {
      exitReason ??= `exited with ${signal ?? `code ${code}`}`;
    });
    if (current.pid !== undefined) {
      watchdog = spawnWatchdog(current.pid, Math.ceil(STOP_GRACE_MS / 1000), keepData ? '' : runDir);
    }
    let last: string | undefined = 'not probed yet';
    while (performance.now() < deadline && exitReason === undefined) {
      last = await answers(host, port);
      if (last === undefined) return;
      await new Promise((done) => setTimeout(done, PROBE_INTERVAL_MS));
    }
    const tail = readTail(logFile);
    const pid = current.pid === undefined ? {} : { pid: current.pid };
    const died = exitReason; // before endProcess, whose SIGTERM would set it
    await endProcess(2_000);
    if (died !== undefined) {
      if (/Failed to bind|Address already in use|BindException/.test(tail)) {
        if (fixedPort === undefined && !restarting) throw new PortRace(tail);
        throw new HarnessError(
          'PORT_IN_USE',
          `${S3PROXY_NAME} could not listen on ${host}:${port} (address already in use): free the port, or start it on another`,
          { details: tail, ...pid, dataDir },
        );
      }
      throw new HarnessError(
        'S3PROXY_EXITED',
        `${S3PROXY_NAME} ${died} before it answered on ${endpoint}: see the end of its log below${keepData ? ` (${logFile})` : ' (S3PROXY_KEEP_DATA=1 keeps all of it)'}`,
        { details: tail, ...pid, dataDir },
      );
    }
    throw new HarnessError(
      'START_TIMEOUT',
      `${S3PROXY_NAME} did not answer on ${endpoint} within ${Math.round(performance.now() - started)} ms (last: ${last}): raise S3PROXY_START_TIMEOUT_MS on a slow machine, or see the end of its log below`,
      { details: tail, ...pid, dataDir },
    );
  };

  try {
    const deadline = performance.now() + timeoutMs;
    for (let tries = 1; ; tries++) {
      if (fixedPort === undefined) port = await freePort(host);
      try {
        await launch(deadline);
        break;
      } catch (error) {
        if (!(error instanceof PortRace)) throw error;
        if (tries >= 3) {
          throw new HarnessError(
            'PORT_IN_USE',
            'three tries at free ports all lost a race to other processes: try again',
            { details: error.message },
          );
        }
        options.log?.(`port ${port} was taken before S3Proxy bound it; retrying on another`);
      }
    }
  } catch (error) {
    await stop();
    throw error;
  }

  const endpoint = `http://${host}:${port}`;
  const startMs = Math.round(performance.now() - started);
  return {
    endpoint,
    host,
    port,
    accessKeyId: identity,
    secretAccessKey: credential,
    region: S3PROXY_REGION,
    dataDir,
    version: install.version,
    logFile,
    startMs,
    fetchMs: install.fetchMs,
    get pid() {
      return child?.pid ?? -1;
    },
    stop,
    kill: async () => {
      if (stopped !== undefined) return;
      await endProcess(0);
    },
    restart: async () => {
      if (stopped !== undefined) {
        throw new HarnessError(
          'S3PROXY_EXITED',
          `${S3PROXY_NAME} on ${endpoint} was stopped; start a new one`,
        );
      }
      await endProcess(STOP_GRACE_MS);
      restarting = true;
      try {
        await launch(performance.now() + timeoutMs);
      } finally {
        restarting = false;
      }
    },
  };
}
