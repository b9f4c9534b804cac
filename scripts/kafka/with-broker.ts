/**
 * node scripts/kafka/with-broker.ts <command...>
 *
 * Runs the command with KAFKA_BROKERS naming a Kafka cluster that answers, and exits with its exit code.
 * If KAFKA_BROKERS is set, that cluster is checked and used as is; otherwise a harness broker is started
 * for the command and stopped after it, whatever happens.
 *
 * Likewise for S3: unless KSTATE_TEST_S3_ENDPOINT is set (then it and the AWS_* variables are passed on
 * as they are), an S3Proxy (connectors/s3/local) is started beside the broker, at the same time, and the
 * command gets KSTATE_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION=us-east-1.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import { formatHarnessError } from '../../connectors/kafka/local/errors.ts';
import { requireAnswer } from '../../connectors/kafka/local/probe.ts';
import { stopAll } from '../../connectors/kafka/local/processes.ts';
import { type RunningS3Proxy, startS3Proxy } from '../../connectors/s3/local/s3proxy.ts';

const log = (line: string) => process.stderr.write(`kafka harness: ${line}\n`);
const s3log = (line: string) => process.stderr.write(`s3 harness: ${line}\n`);

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
  const externalS3 = process.env.KSTATE_TEST_S3_ENDPOINT?.trim();
  // Broker and S3 store start at the same time. Their lines are printed once both are up; if either
  // fails, the other is stopped quietly and only the failure is printed.
  const [kafka, s3] = await Promise.allSettled([
    external !== undefined && external !== ''
      ? requireAnswer(external).then((answer) => ({
          broker: undefined,
          line: `using KAFKA_BROKERS=${external} (${answer.brokerCount} broker(s))`,
        }))
      : startBroker({ exitOnSignal: false, log }).then((broker) => ({
          broker,
          line:
            `Kafka ${broker.version} started in ${broker.startMs} ms` +
            (broker.fetchMs > 0 ? ` (including a ${broker.fetchMs} ms fetch)` : '') +
            `: KAFKA_BROKERS=${broker.brokers}`,
        })),
    externalS3 !== undefined && externalS3 !== ''
      ? Promise.resolve({ store: undefined, line: `using KSTATE_TEST_S3_ENDPOINT=${externalS3}` })
      : startS3Proxy({ exitOnSignal: false, log: s3log }).then((store: RunningS3Proxy) => ({
          store,
          line:
            `S3Proxy ${store.version} started in ${store.startMs} ms` +
            (store.fetchMs > 0 ? ` (including a ${store.fetchMs} ms fetch)` : '') +
            `: KSTATE_TEST_S3_ENDPOINT=${store.endpoint}`,
        })),
  ]);
  const broker = kafka.status === 'fulfilled' ? kafka.value.broker : undefined;
  const store = s3.status === 'fulfilled' ? s3.value.store : undefined;
  if (kafka.status === 'rejected' || s3.status === 'rejected') {
    await Promise.all([broker?.stop(), store?.stop()]);
    if (s3.status === 'rejected') process.stderr.write(`${formatHarnessError(s3.reason, 's3 harness')}\n`);
    if (kafka.status === 'rejected') throw kafka.reason;
    return 1;
  }
  log(kafka.value.line);
  s3log(s3.value.line);
  const stopBoth = async () => {
    const stopping = performance.now();
    await Promise.all([
      broker?.stop().then(() => {
        log(`Kafka ${broker.version} stopped in ${Math.round(performance.now() - stopping)} ms`);
      }),
      store?.stop().then(() => {
        s3log(`S3Proxy ${store.version} stopped in ${Math.round(performance.now() - stopping)} ms`);
      }),
    ]);
  };

  try {
    return await run(command, {
      ...process.env,
      ...(broker === undefined ? {} : { KAFKA_BROKERS: broker.brokers, KAFKA_VERSION: broker.version }),
      ...(store === undefined
        ? {}
        : {
            KSTATE_TEST_S3_ENDPOINT: store.endpoint,
            AWS_ACCESS_KEY_ID: store.accessKeyId,
            AWS_SECRET_ACCESS_KEY: store.secretAccessKey,
            AWS_REGION: store.region,
          }),
    });
  } finally {
    await stopBoth();
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
