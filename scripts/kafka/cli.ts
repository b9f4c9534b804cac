/**
 * node scripts/kafka/cli.ts fetch [version]   download (cache) the broker only
 * node scripts/kafka/cli.ts start [version]   start a broker and keep it until Ctrl-C
 *
 * The version defaults to $KAFKA_VERSION, else the pinned 4.x; "3.9" selects the pinned 3.9.x.
 */
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import { formatHarnessError } from '../../connectors/kafka/local/errors.ts';
import { ensureKafkaInstalled } from '../../connectors/kafka/local/install.ts';

const log = (line: string) => process.stderr.write(`kafka harness: ${line}\n`);

async function main(argv: readonly string[]): Promise<number> {
  const [command, versionArg] = argv;
  const version = versionArg ?? process.env.KAFKA_VERSION;
  switch (command) {
    case 'fetch': {
      const install = await ensureKafkaInstalled(version, { log });
      log(
        install.fetched
          ? `Kafka ${install.version} is ready in ${install.libsDir} (fetched in ${install.fetchMs} ms)`
          : `Kafka ${install.version} is already cached in ${install.libsDir}`,
      );
      return 0;
    }
    case 'start': {
      const broker = await startBroker({ ...(version === undefined ? {} : { version }), log });
      process.stdout.write(`KAFKA_BROKERS=${broker.brokers}\n`);
      log(
        `Kafka ${broker.version} answers on ${broker.brokers} (pid ${broker.pid}), started in ${broker.startMs} ms` +
          (broker.fetchMs > 0 ? ` including a ${broker.fetchMs} ms fetch` : ''),
      );
      log(`log: ${broker.logFile}; data dir ${broker.dataDir} is removed on exit. Ctrl-C stops it.`);
      // The signal handlers installed by startBroker stop the broker and exit; keep the loop alive until then.
      setInterval(() => undefined, 1 << 30);
      return await new Promise<number>(() => undefined);
    }
    default:
      process.stderr.write(
        'usage: node scripts/kafka/cli.ts fetch|start [version]   (version: e.g. 4.1.1, 3.9)\n',
      );
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${formatHarnessError(error)}\n`);
    process.exitCode = 1;
  },
);
