/**
 * `npm run demo`: the placeholder main demo until the real demo job exists. It starts a Kafka broker
 * through the harness (unless KAFKA_BROKERS names one), runs a transactional produce + read_committed
 * consume round trip, says what it did, and stops the broker.
 */
import { startBroker } from './kafka/broker.ts';
import { formatHarnessError } from './kafka/errors.ts';
import { requireAnswer } from './kafka/probe.ts';
import { transactionalRoundTrip } from './kafka/roundtrip.ts';

const say = (line: string) => process.stdout.write(`demo: ${line}\n`);

async function main(): Promise<void> {
  const external = process.env.KAFKA_BROKERS?.trim();
  let brokers: string;
  let stop: () => Promise<void> = async () => {};
  if (external !== undefined && external !== '') {
    await requireAnswer(external);
    brokers = external;
    say(`using the cluster at KAFKA_BROKERS=${brokers}`);
  } else {
    say('starting a Kafka broker (the first run fetches it from Maven Central) ...');
    const broker = await startBroker({ log: (line) => say(line) });
    brokers = broker.brokers;
    stop = broker.stop;
    say(`Kafka ${broker.version} answers on ${brokers}, started in ${broker.startMs} ms`);
  }
  try {
    const result = await transactionalRoundTrip(brokers, say);
    say(
      `round trip done in ${result.ms} ms: the aborted records stayed invisible, the committed ones arrived once`,
    );
  } finally {
    await stop();
    if (external === undefined || external === '') say('broker stopped');
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${formatHarnessError(error).replace(/^kafka harness: unexpected error: /, 'demo failed: ')}\n`,
  );
  process.exitCode = 1;
});
