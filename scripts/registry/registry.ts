/**
 * A real schema registry for tests and local work: Apicurio Registry (in-memory storage) with its
 * Confluent-compatible API, built once from Maven Central (install.ts), started with `java -jar` on
 * 127.0.0.1 on a free port, waited for until the ccompat API answers, and stopped again without leaving
 * the java process or its temp dir behind.
 *
 * Lifecycle of one registry: installing -> starting -> ready -> stopping -> stopped. A failure before
 * `ready` stops what was started and throws a RegistryHarnessError. The process is tracked like the Kafka
 * harness tracks brokers (scripts/kafka/processes.ts): killed on exit, stopped on SIGINT/SIGTERM/SIGHUP,
 * and a watchdog stops it if this process dies by SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lastLines } from '../../connectors/kafka/local/errors.ts';
import {
  removeDir,
  spawnWatchdog,
  stopAll,
  type Tracked,
  terminate,
  track,
} from '../../connectors/kafka/local/processes.ts';
import { RegistryHarnessError } from './errors.ts';
import { checkJava, ensureRegistryInstalled, javaBinary, REGISTRY } from './install.ts';

export const HOST = '127.0.0.1';
/** The Confluent-compatible API of Apicurio 2.x (v6 answers too). */
export const CCOMPAT_PATH = '/apis/ccompat/v7';
export const DEFAULT_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const LOG_TAIL_LINES = 20;

export interface StartRegistryOptions {
  /** How long to wait for the API to answer, not counting a first-time build; default `$REGISTRY_START_TIMEOUT_MS` or 60 s. */
  readonly timeoutMs?: number;
  /** A fixed port; default `$REGISTRY_PORT`, else a free one. */
  readonly port?: number;
  /** Keep the temp dir (its console log) after stop; default true when `$REGISTRY_KEEP_DATA` is set. */
  readonly keepData?: boolean;
  /** Stop the registry and exit on SIGINT/SIGTERM/SIGHUP; default true. */
  readonly exitOnSignal?: boolean;
  readonly cacheDir?: string;
  readonly log?: (line: string) => void;
}

export interface RunningRegistry {
  /** The Confluent-compatible base URL for clients, as in SCHEMA_REGISTRY_URL. */
  readonly url: string;
  readonly port: number;
  readonly version: string;
  /** Milliseconds from the call to an API that answers, including a first-time build if there was one. */
  readonly startMs: number;
  /** Milliseconds of that spent building with mvn (0 when cached). */
  readonly fetchMs: number;
  readonly pid: number;
  readonly dataDir: string;
  readonly logFile: string;
  /** Idempotent; resolves once the java process has exited and the temp dir is removed. */
  stop(): Promise<void>;
}

function envPort(): number | undefined {
  const raw = process.env.REGISTRY_PORT;
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65_535) {
    throw new RegistryHarnessError(
      'BAD_PORT',
      `REGISTRY_PORT=${raw} is not a TCP port (1-65535): fix it, or unset it to use a free one`,
    );
  }
  return value;
}

function envTimeout(): number | undefined {
  const raw = process.env.REGISTRY_START_TIMEOUT_MS;
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/** Resolves with an error code when `port` cannot be bound (EADDRINUSE ...), else undefined; port 0 picks one. */
function bindProbe(port: number): Promise<{ problem?: string; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      resolve({ problem: error.code ?? error.message, port }),
    );
    server.listen({ host: HOST, port, exclusive: true }, () => {
      const address = server.address();
      const chosen = typeof address === 'object' && address !== null ? address.port : port;
      server.close(() => resolve({ port: chosen }));
    });
  });
}

/** One GET, bounded; resolves with the status code or an error message. Never throws. */
export function httpGet(
  url: string,
  timeoutMs: number,
): Promise<{ status?: number; error?: string; body?: string }> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 10_000) body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (error) => resolve({ error: error.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error) => resolve({ error: error.message }));
    req.end();
  });
}

/** Polls `GET <url>/subjects` until it answers 200, the deadline passes, or `stopped()` says why not. */
export async function waitForRegistry(
  url: string,
  deadline: number,
  stopped: () => string | undefined = () => undefined,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  let last = 'not tried';
  for (;;) {
    const why = stopped();
    if (why !== undefined) return { ok: false, reason: why };
    const left = deadline - performance.now();
    if (left <= 0) return { ok: false, reason: last };
    const answer = await httpGet(`${url}/subjects`, Math.max(200, Math.min(2_000, left)));
    if (answer.status === 200) return { ok: true };
    last = answer.error ?? `HTTP ${answer.status}`;
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(100, Math.max(0, deadline - performance.now()))),
    );
  }
}

function readTail(path: string): string {
  try {
    return existsSync(path) ? lastLines(readFileSync(path, 'utf8'), LOG_TAIL_LINES) : '';
  } catch {
    return '';
  }
}

class PortRace extends Error {}

const SIGNAL_EXIT_CODES: Readonly<Record<string, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
let signalHandlersInstalled = false;
let stoppingOnSignal = false;

/** SIGINT/SIGTERM/SIGHUP stop every tracked process (registries, and brokers if any), then exit. */
function installSignalHandlers(): void {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppingOnSignal) process.exit(SIGNAL_EXIT_CODES[signal] ?? 1);
    stoppingOnSignal = true;
    process.stderr.write(`registry harness: ${signal}, stopping the registry\n`);
    void stopAll().then(() => process.exit(SIGNAL_EXIT_CODES[signal] ?? 1));
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
}

async function startOnce(
  jar: string,
  port: number,
  fixedPort: boolean,
  deadline: number,
  started: number,
  fetchMs: number,
  options: StartRegistryOptions,
): Promise<RunningRegistry> {
  const keepData = options.keepData ?? (process.env.REGISTRY_KEEP_DATA ?? '') !== '';
  const dataDir = mkdtempSync(join(tmpdir(), 'kstate-registry-'));
  const logFile = join(dataDir, 'console.log');
  let child: ChildProcess | undefined;
  let watchdog: ChildProcess | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (child !== undefined) await terminate(child, STOP_GRACE_MS);
      watchdog?.kill('SIGKILL');
      if (!keepData) removeDir(dataDir);
      untrack();
    })();
    return stopped;
  };
  const tracked: Tracked = {
    stop,
    killNow: () => {
      for (const c of [child, watchdog]) {
        if (c?.pid !== undefined && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
      if (!keepData) removeDir(dataDir);
    },
  };
  // The exit hook of processes.ts kills it on any exit; signals are ours (installSignalHandlers).
  const untrack = track(tracked, false);
  if (options.exitOnSignal ?? true) installSignalHandlers();

  try {
    const output = openSync(logFile, 'a');
    const heap = process.env.REGISTRY_HEAP_OPTS;
    child = spawn(
      javaBinary(),
      [
        ...(heap !== undefined && heap.trim() !== '' ? heap.trim().split(/\s+/) : ['-Xms64m', '-Xmx384m']),
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        '-Djava.awt.headless=true',
        `-Djava.io.tmpdir=${dataDir}`,
        `-Dquarkus.http.host=${HOST}`,
        `-Dquarkus.http.port=${port}`,
        // Everything else is the registry's default: in-memory H2 storage, no authentication.
        '-jar',
        jar,
      ],
      { cwd: dataDir, stdio: ['ignore', output, output] },
    );
    closeSync(output);
    let exitReason: string | undefined;
    child.once('error', (error) => {
      exitReason = `could not run ${javaBinary()}: ${error.message}`;
    });
    child.once('exit', (code, signal) => {
      exitReason ??= `exited with ${signal ?? `code ${code}`}`;
    });
    if (child.pid !== undefined) {
      watchdog = spawnWatchdog(child.pid, Math.ceil(STOP_GRACE_MS / 1000), keepData ? '' : dataDir);
    }
    const url = `http://${HOST}:${port}${CCOMPAT_PATH}`;
    const result = await waitForRegistry(url, deadline, () => exitReason);
    if (!result.ok) {
      const tail = readTail(logFile);
      // Read before stop(), which makes the process exit too.
      const exitedEarly = exitReason;
      await stop();
      if (exitedEarly !== undefined) {
        if (/Port already bound|Address already in use|BindException/.test(tail)) {
          if (!fixedPort) throw new PortRace(tail);
          throw new RegistryHarnessError(
            'PORT_IN_USE',
            `the registry could not bind ${HOST}:${port} (address already in use): free the port or choose another with REGISTRY_PORT`,
            { details: tail },
          );
        }
        throw new RegistryHarnessError(
          'REGISTRY_EXITED',
          `Apicurio Registry ${REGISTRY.version} ${exitedEarly} before it answered on ${url}: see the end of its log below`,
          { details: tail },
        );
      }
      throw new RegistryHarnessError(
        'START_TIMEOUT',
        `Apicurio Registry ${REGISTRY.version} did not answer on ${url} within ${Math.round(performance.now() - started)} ms (last: ${result.reason}): raise REGISTRY_START_TIMEOUT_MS on a slow machine, or see the end of its log below`,
        { details: tail },
      );
    }
    return {
      url,
      port,
      version: REGISTRY.version,
      startMs: Math.round(performance.now() - started),
      fetchMs,
      pid: child.pid ?? -1,
      dataDir,
      logFile,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Starts a registry; see the module comment. Resolves once `GET <url>/subjects` answers 200. */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<RunningRegistry> {
  const started = performance.now();
  const fixedPort = options.port ?? envPort();
  if (fixedPort !== undefined) {
    const probe = await bindProbe(fixedPort);
    if (probe.problem === 'EADDRINUSE') {
      throw new RegistryHarnessError(
        'PORT_IN_USE',
        `REGISTRY_PORT=${fixedPort} is already in use on ${HOST}: stop what listens there, choose another port, or unset REGISTRY_PORT to use a free one`,
      );
    }
    if (probe.problem !== undefined) {
      throw new RegistryHarnessError(
        'BAD_PORT',
        `port ${fixedPort} cannot be bound on ${HOST} (${probe.problem}): choose another or unset REGISTRY_PORT`,
      );
    }
  }
  const install = await ensureRegistryInstalled({
    ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
    ...(options.log === undefined ? {} : { log: options.log }),
  });
  checkJava();
  // The first-time build does not count against the start timeout.
  const deadline = performance.now() + (options.timeoutMs ?? envTimeout() ?? DEFAULT_START_TIMEOUT_MS);
  for (let tries = 1; ; tries++) {
    const port = fixedPort ?? (await bindProbe(0)).port;
    try {
      return await startOnce(
        install.jar,
        port,
        fixedPort !== undefined,
        deadline,
        started,
        install.fetchMs,
        options,
      );
    } catch (error) {
      if (!(error instanceof PortRace)) throw error;
      if (tries >= 3) {
        throw new RegistryHarnessError(
          'PORT_IN_USE',
          'three tries at free ports all lost a race to other processes: try again',
          { details: error.message },
        );
      }
      options.log?.(`port ${port} was taken before the registry bound it; retrying`);
    }
  }
}

/** For a registry the user named in SCHEMA_REGISTRY_URL: resolves if it answers, else one clear line. */
export async function requireRegistry(url: string): Promise<void> {
  const answer = await httpGet(`${url.replace(/\/+$/, '')}/subjects`, 10_000);
  if (answer.status !== 200) {
    throw new RegistryHarnessError(
      'REGISTRY_UNREACHABLE',
      `SCHEMA_REGISTRY_URL=${url} does not answer GET /subjects (${answer.error ?? `HTTP ${answer.status}`}): unset it to let the harness start a registry, or start yours`,
    );
  }
}
