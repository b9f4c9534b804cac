/**
 * node scripts/kafka/with-broker.ts <command...>
 *
 * Runs the command with KAFKA_BROKERS naming a Kafka cluster that answers, and exits with its exit code.
 * If KAFKA_BROKERS is set, that cluster is checked and used as is; otherwise a harness broker is started
 * for the command and stopped after it, whatever happens.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import { formatHarnessError } from '../../connectors/kafka/local/errors.ts';
import { requireAnswer } from '../../connectors/kafka/local/probe.ts';
import { stopAll } from '../../connectors/kafka/local/processes.ts';

const log = (line: string) => process.stderr.write(`kafka harness: ${line}\n`);

let child: ReturnType<typeof spawn> | undefined;
let signalled: NodeJS.Signals | undefined;

function exitCodeOf(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

function onSignal(signal: NodeJS.Signals): void {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    // The command stops first; the broker is stopped after it exits (see main).
    signalled ??= signal;
    child.kill(signal);
    return;
  }
  // Still starting the broker: stop it and leave.
  void stopAll().then(() => process.exit(exitCodeOf(signal)));
}

function run(command: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [file, ...args] = command;
  if (file === undefined) return Promise.resolve(2);
  return new Promise((resolve) => {
    child = spawn(file, args, { stdio: 'inherit', env });
    child.once('error', (error) => {
      log(`could not run ${file}: ${error.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : exitCodeOf(signal))));
  });
}

async function main(command: readonly string[]): Promise<number> {
  if (command.length === 0) {
    process.stderr.write('usage: node scripts/kafka/with-broker.ts <command> [args...]\n');
    return 2;
  }
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);

  const external = process.env.KAFKA_BROKERS?.trim();
  if (external !== undefined && external !== '') {
    const answer = await requireAnswer(external);
    log(`using KAFKA_BROKERS=${external} (${answer.brokerCount} broker(s))`);
    return await run(command, process.env);
  }

  const broker = await startBroker({ exitOnSignal: false, log });
  log(
    `Kafka ${broker.version} started in ${broker.startMs} ms` +
      (broker.fetchMs > 0 ? ` (including a ${broker.fetchMs} ms fetch)` : '') +
      `: KAFKA_BROKERS=${broker.brokers}`,
  );
  try {
    return await run(command, {
      ...process.env,
      KAFKA_BROKERS: broker.brokers,
      KAFKA_VERSION: broker.version,
    });
  } finally {
    const stopping = performance.now();
    await broker.stop();
    log(`Kafka ${broker.version} stopped in ${Math.round(performance.now() - stopping)} ms`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = signalled === undefined ? code : exitCodeOf(signalled);
  },
  (error: unknown) => {
    process.stderr.write(`${formatHarnessError(error)}\n`);
    process.exitCode = 1;
  },
);
