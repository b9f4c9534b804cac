/**
 * A real single-node Kafka (KRaft, combined broker and controller) for tests and local work:
 * fetch (cached), format storage in a fresh temp dir, start on 127.0.0.1 on free ports, wait until a
 * client can use it, and stop it again, never leaving the java process or its files behind.
 *
 * Lifecycle of one broker: installing -> formatting -> starting -> ready -> stopping -> stopped.
 * A failure in any phase before `ready` stops what was started and throws a HarnessError.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverProperties } from './config.ts';
import { HarnessError, lastLines } from './errors.ts';
import { checkJava, ensureKafkaInstalled, javaBinary, type KafkaInstallation } from './install.ts';
import { waitForBrokers } from './probe.ts';
import { isAlive, removeDir, spawnWatchdog, type Tracked, terminate, track } from './processes.ts';
import type { KafkaVersionSpec } from './versions.ts';

export { ensureKafkaInstalled } from './install.ts';

export const HOST = '127.0.0.1';
export const DEFAULT_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 15_000;
const LOG_TAIL_LINES = 20;

export interface StartBrokerOptions {
  /** A pinned version or line ("4.1.1", "3.9"); default `$KAFKA_VERSION`, else the 4.x default. */
  readonly version?: string;
  /** How long to wait for the broker to answer, from the start of this call minus any mvn fetch; default `$KAFKA_START_TIMEOUT_MS` or 60 s. */
  readonly timeoutMs?: number;
  /** A fixed client port; default `$KAFKA_PORT`, else a free one. */
  readonly port?: number;
  /** A fixed controller port; default `$KAFKA_CONTROLLER_PORT`, else a free one. */
  readonly controllerPort?: number;
  /** Keep the data dir (logs, segments) after stop; default true when `$KAFKA_KEEP_DATA` is set. */
  readonly keepData?: boolean;
  /** Stop the broker and exit on SIGINT/SIGTERM/SIGHUP; default true. */
  readonly exitOnSignal?: boolean;
  readonly cacheDir?: string;
  /** Progress lines; default silent. */
  readonly log?: (line: string) => void;
}

export interface RunningBroker {
  /** `host:port` for clients, as in KAFKA_BROKERS. */
  readonly brokers: string;
  readonly version: string;
  /** Milliseconds from the call to a broker that answers, including a first-time fetch if there was one. */
  readonly startMs: number;
  /** Milliseconds of that spent fetching with mvn (0 when cached). */
  readonly fetchMs: number;
  /** The java process of the broker. */
  readonly pid: number;
  readonly dataDir: string;
  /** The broker's own log (log4j, INFO and up). */
  readonly logFile: string;
  /** Idempotent; resolves once the java process has exited and the data dir is removed. */
  stop(): Promise<void>;
}

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new HarnessError('BAD_PORT', `${name}=${raw} is not a positive integer: fix or unset it`);
  }
  return value;
}

function checkPortNumber(name: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new HarnessError(
      'BAD_PORT',
      `${name}=${port} is not a TCP port (1-65535): fix it, or unset it to use a free port`,
    );
  }
}

/** Resolves with an error code when `port` cannot be bound on `host` (e.g. EADDRINUSE). */
function tryBind(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

async function freePort(avoid: readonly number[]): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen({ host: HOST, port: 0, exclusive: true }, () => {
        const address = server.address();
        const chosen = typeof address === 'object' && address !== null ? address.port : 0;
        server.close(() => resolve(chosen));
      });
    });
    if (!avoid.includes(port)) return port;
  }
}

async function checkFixedPort(name: string, port: number): Promise<void> {
  checkPortNumber(name, port);
  const problem = await tryBind(HOST, port);
  if (problem === 'EADDRINUSE') {
    throw new HarnessError(
      'PORT_IN_USE',
      `${name}=${port} is already in use on ${HOST}: stop what listens there, choose another port, or unset ${name} to use a free one`,
    );
  }
  if (problem !== undefined) {
    throw new HarnessError(
      'BAD_PORT',
      `${name}=${port} cannot be bound on ${HOST} (${problem}): choose another port or unset ${name}`,
    );
  }
}

function loggingFiles(spec: KafkaVersionSpec, dataDir: string): { jvmFlag: string; logFile: string } {
  const logFile = join(dataDir, 'server.log');
  const pattern = '[%d] %p %m (%c)%n';
  if (spec.logging === 'log4j2') {
    const path = join(dataDir, 'log4j2.properties');
    writeFileSync(
      path,
      [
        'status = warn',
        'name = kstate-kafka-harness',
        // The JVM is already shutting down when Kafka stops; the file appender flushes every line anyway.
        'shutdownHook = disable',
        'appender.console.type = Console',
        'appender.console.name = CONSOLE',
        'appender.console.layout.type = PatternLayout',
        `appender.console.layout.pattern = ${pattern}`,
        'appender.console.filter.threshold.type = ThresholdFilter',
        'appender.console.filter.threshold.level = warn',
        'appender.file.type = File',
        'appender.file.name = FILE',
        `appender.file.fileName = ${logFile}`,
        'appender.file.layout.type = PatternLayout',
        `appender.file.layout.pattern = ${pattern}`,
        'rootLogger.level = info',
        'rootLogger.appenderRef.console.ref = CONSOLE',
        'rootLogger.appenderRef.file.ref = FILE',
        '',
      ].join('\n'),
    );
    return { jvmFlag: `-Dlog4j2.configurationFile=${path}`, logFile };
  }
  const path = join(dataDir, 'log4j.properties');
  writeFileSync(
    path,
    [
      'log4j.rootLogger=INFO, console, file',
      'log4j.appender.console=org.apache.log4j.ConsoleAppender',
      'log4j.appender.console.Threshold=WARN',
      'log4j.appender.console.layout=org.apache.log4j.PatternLayout',
      `log4j.appender.console.layout.ConversionPattern=${pattern}`,
      'log4j.appender.file=org.apache.log4j.FileAppender',
      `log4j.appender.file.File=${logFile}`,
      'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
      `log4j.appender.file.layout.ConversionPattern=${pattern}`,
      '',
    ].join('\n'),
  );
  return { jvmFlag: `-Dlog4j.configuration=file:${path}`, logFile };
}

function readTail(path: string, lines: number): string {
  try {
    return existsSync(path) ? lastLines(readFileSync(path, 'utf8'), lines) : '';
  } catch {
    return '';
  }
}

/** A Kafka cluster id: 16 random bytes, base64url without padding (Kafka's Uuid text form). */
function clusterId(): string {
  // Like Kafka's Uuid.randomUuid: never one starting with '-', which the storage tool would take for an option.
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function jvmOptions(): string[] {
  const heap = process.env.KAFKA_HEAP_OPTS;
  return [
    ...(heap !== undefined && heap.trim() !== '' ? heap.trim().split(/\s+/) : ['-Xms128m', '-Xmx512m']),
    '-XX:+UseG1GC',
    '-Djava.awt.headless=true',
  ];
}

interface Attempt {
  readonly install: KafkaInstallation;
  readonly port: number;
  readonly controllerPort: number;
  readonly fixedPorts: boolean;
  readonly deadline: number;
  readonly started: number;
  readonly options: StartBrokerOptions;
}

class PortRace extends Error {}

async function startOnce(attempt: Attempt): Promise<RunningBroker> {
  const { install, port, controllerPort, options } = attempt;
  const spec = install.spec;
  const java = javaBinary();
  const keepData = options.keepData ?? (process.env.KAFKA_KEEP_DATA ?? '') !== '';
  const dataDir = mkdtempSync(join(tmpdir(), `kstate-kafka-${spec.version}-`));
  const consoleFile = join(dataDir, 'console.log');
  let formatter: ChildProcess | undefined;
  let broker: ChildProcess | undefined;
  let watchdog: ChildProcess | undefined;
  let stopped: Promise<void> | undefined;

  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (formatter !== undefined) await terminate(formatter, 2_000);
      if (broker !== undefined) await terminate(broker, STOP_GRACE_MS);
      watchdog?.kill('SIGKILL');
      if (!keepData) removeDir(dataDir);
      untrack();
    })();
    return stopped;
  };
  const tracked: Tracked = {
    stop,
    killNow: () => {
      for (const child of [formatter, broker, watchdog]) {
        if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
        }
      }
      if (!keepData) removeDir(dataDir);
    },
  };
  const untrack = track(tracked, options.exitOnSignal ?? true);

  /** Stops everything, then throws; the log tail is read before the data dir goes. */
  const fail = async (make: (logTail: string, formatTail: string) => Error): Promise<never> => {
    const logTail = lastLines(
      [readTail(join(dataDir, 'server.log'), LOG_TAIL_LINES), readTail(consoleFile, LOG_TAIL_LINES)].join(
        '\n',
      ),
      LOG_TAIL_LINES,
    );
    const formatTail = readTail(join(dataDir, 'format.log'), LOG_TAIL_LINES);
    await stop();
    throw make(logTail, formatTail);
  };

  try {
    const { jvmFlag, logFile } = loggingFiles(spec, dataDir);
    const propertiesFile = join(dataDir, 'server.properties');
    writeFileSync(
      propertiesFile,
      serverProperties({
        version: spec.version,
        host: HOST,
        port,
        controllerPort,
        logDir: join(dataDir, 'data'),
      }),
    );
    const baseArgs = [...jvmOptions(), jvmFlag, `-Dkafka.logs.dir=${dataDir}`, '-cp', install.classpath];

    // Format KRaft storage (static controller.quorum.voters, so no --standalone on either line).
    const formatOutput = openSync(join(dataDir, 'format.log'), 'a');
    formatter = spawn(
      java,
      [...baseArgs, 'kafka.tools.StorageTool', 'format', '-t', clusterId(), '-c', propertiesFile],
      { cwd: dataDir, stdio: ['ignore', formatOutput, formatOutput] },
    );
    closeSync(formatOutput);
    const formatCode = await Promise.race([
      new Promise<number | string>((resolve) => {
        formatter?.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
        formatter?.once('error', (error) => resolve(error.message));
      }),
      new Promise<string>((resolve) =>
        setTimeout(() => resolve('timeout'), Math.max(0, attempt.deadline - performance.now())).unref(),
      ),
    ]);
    if (formatCode === 'timeout') {
      const pid = formatter.pid;
      const waited = Math.round(performance.now() - attempt.started);
      await fail(
        (tail, formatTail) =>
          new HarnessError(
            'START_TIMEOUT',
            `Kafka ${spec.version} storage was still being formatted after ${waited} ms: raise KAFKA_START_TIMEOUT_MS on a slow machine, or see the output below`,
            {
              details: formatTail || tail,
              ...(pid === undefined ? {} : { pid }),
              dataDir,
            },
          ),
      );
    }
    if (formatCode !== 0) {
      await fail(
        (tail, formatTail) =>
          new HarnessError(
            'FORMAT_FAILED',
            `formatting KRaft storage for Kafka ${spec.version} failed (${formatCode}): see the output below; delete ${join(install.libsDir, '..')} to fetch it again if the jars look broken`,
            { details: formatTail || tail, dataDir },
          ),
      );
    }

    const output = openSync(consoleFile, 'a');
    const child = spawn(java, [...baseArgs, 'kafka.Kafka', propertiesFile], {
      cwd: dataDir,
      stdio: ['ignore', output, output],
    });
    broker = child;
    closeSync(output);
    let exitReason: string | undefined;
    child.once('error', (error) => {
      exitReason = `could not run ${java}: ${error.message}`;
    });
    child.once('exit', (code, signal) => {
      exitReason ??= `exited with ${signal ?? `code ${code}`}`;
    });
    if (child.pid !== undefined) {
      watchdog = spawnWatchdog(child.pid, Math.ceil(STOP_GRACE_MS / 1000), keepData ? '' : dataDir);
    }

    const address = `${HOST}:${port}`;
    const result = await waitForBrokers(address, attempt.deadline, () => exitReason);
    if (!result.ok) {
      const pid = child.pid;
      if (exitReason !== undefined) {
        const reason = exitReason;
        return await fail((tail) => {
          if (/Address already in use|BindException/.test(tail)) {
            if (!attempt.fixedPorts) return new PortRace(tail);
            return new HarnessError(
              'PORT_IN_USE',
              `Kafka ${spec.version} could not bind ${address} or controller port ${controllerPort} (address already in use): free the port or choose others with KAFKA_PORT / KAFKA_CONTROLLER_PORT`,
              { details: tail, ...(pid === undefined ? {} : { pid }), dataDir },
            );
          }
          return new HarnessError(
            'BROKER_EXITED',
            `Kafka ${spec.version} broker ${reason} before it answered on ${address}: see the end of its log below`,
            { details: tail, ...(pid === undefined ? {} : { pid }), dataDir },
          );
        });
      }
      const waited = Math.round(performance.now() - attempt.started);
      return await fail(
        (tail) =>
          new HarnessError(
            'START_TIMEOUT',
            `Kafka ${spec.version} broker did not answer on ${address} within ${waited} ms (last: ${result.reason}): raise KAFKA_START_TIMEOUT_MS on a slow machine, or see the end of its log below`,
            { details: tail, ...(pid === undefined ? {} : { pid }), dataDir },
          ),
      );
    }

    return {
      brokers: address,
      version: spec.version,
      startMs: Math.round(performance.now() - attempt.started),
      fetchMs: install.fetchMs,
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

/** Starts a broker; see the module comment. Resolves once a kafkajs admin gets cluster metadata from it. */
export async function startBroker(options: StartBrokerOptions = {}): Promise<RunningBroker> {
  const started = performance.now();
  const fixedPort = options.port ?? envNumber('KAFKA_PORT');
  const fixedController = options.controllerPort ?? envNumber('KAFKA_CONTROLLER_PORT');
  if (fixedPort !== undefined) await checkFixedPort('KAFKA_PORT', fixedPort);
  if (fixedController !== undefined) await checkFixedPort('KAFKA_CONTROLLER_PORT', fixedController);
  const timeoutMs = options.timeoutMs ?? envNumber('KAFKA_START_TIMEOUT_MS') ?? DEFAULT_START_TIMEOUT_MS;

  const install = await ensureKafkaInstalled(options.version ?? process.env.KAFKA_VERSION, {
    ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
    ...(options.log === undefined ? {} : { log: options.log }),
  });
  checkJava(install.spec);
  // The fetch does not count against the start timeout.
  const deadline = performance.now() + timeoutMs;

  for (let tries = 1; ; tries++) {
    const port = fixedPort ?? (await freePort([fixedController ?? 0]));
    const controllerPort = fixedController ?? (await freePort([port]));
    try {
      return await startOnce({
        install,
        port,
        controllerPort,
        fixedPorts: fixedPort !== undefined || fixedController !== undefined,
        deadline,
        started,
        options,
      });
    } catch (error) {
      // Another process took a free port between our check and the broker's bind: pick new ones.
      if (!(error instanceof PortRace) || tries >= 3) {
        if (error instanceof PortRace) {
          throw new HarnessError(
            'PORT_IN_USE',
            'three tries at free ports all lost a race to other processes: try again',
            {
              details: error.message,
            },
          );
        }
        throw error;
      }
      options.log?.(`ports ${port}/${controllerPort} were taken before the broker bound them; retrying`);
    }
  }
}

export { isAlive };
