import { Kafka, type KafkaConfig, logLevel, type SASLOptions } from './internal/kafkajs.ts';

/** How to reach the cluster. One value shared by a job's sources, sinks and admin calls. */
export interface KafkaConnection {
  readonly brokers: readonly string[];
  readonly clientId?: string;
  readonly ssl?: boolean;
  readonly sasl?: SASLOptions;
  /** kafkajs log level; default NOTHING (the framework logs what matters itself). */
  readonly logLevel?: 'nothing' | 'error' | 'warn' | 'info' | 'debug';
  /** Connection timeout per broker, ms. Default 3000. */
  readonly connectionTimeoutMs?: number;
}

const LEVELS = {
  nothing: logLevel.NOTHING,
  error: logLevel.ERROR,
  warn: logLevel.WARN,
  info: logLevel.INFO,
  debug: logLevel.DEBUG,
} as const;

export function createKafka(c: KafkaConnection, clientIdSuffix = ''): Kafka {
  const config: KafkaConfig = {
    clientId: `${c.clientId ?? 'kstate'}${clientIdSuffix}`,
    brokers: [...c.brokers],
    logLevel:
      LEVELS[
        c.logLevel ?? (process.env.KAFKAJS_LOG_LEVEL?.toLowerCase() as keyof typeof LEVELS) ?? 'nothing'
      ] ?? logLevel.NOTHING,
    connectionTimeout: c.connectionTimeoutMs ?? 3000,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 5000 },
  };
  if (c.ssl !== undefined) config.ssl = c.ssl;
  if (c.sasl !== undefined) config.sasl = c.sasl;
  return new Kafka(config);
}
