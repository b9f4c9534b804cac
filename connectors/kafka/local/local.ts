import { startBroker } from './broker.ts';
import { requireAnswer } from './probe.ts';

export interface LocalKafka {
  /** Comma-separated bootstrap servers. */
  readonly brokers: string;
  /** True when KAFKA_BROKERS named the cluster (then `stop` leaves it running). */
  readonly external: boolean;
  stop(): Promise<void>;
}

/**
 * The cluster a demo script runs against: KAFKA_BROKERS when set (it must answer), else a broker
 * started through the harness (fetched from Maven Central on first use) and stopped by `stop()`.
 */
export async function localKafka(say: (line: string) => void): Promise<LocalKafka> {
  const external = process.env.KAFKA_BROKERS?.trim();
  if (external) {
    await requireAnswer(external);
    say(`using the cluster at KAFKA_BROKERS=${external}`);
    return { brokers: external, external: true, stop: async () => {} };
  }
  say('starting a Kafka broker (the first run fetches it from Maven Central) ...');
  const broker = await startBroker({ log: (line) => say(line) });
  say(`Kafka ${broker.version} answers on ${broker.brokers}, started in ${broker.startMs} ms`);
  return {
    brokers: broker.brokers,
    external: false,
    stop: async () => {
      await broker.stop();
      say('broker stopped');
    },
  };
}
