/**
 * Test helpers for code that talks to the broker named by KAFKA_BROKERS (started by
 * `scripts/kafka/with-broker.ts` in `npm run test:kafka`). kafkajs logs stay quiet unless
 * KAFKAJS_LOG_LEVEL (ERROR, WARN, INFO, DEBUG) asks for them.
 */
import {
  type Consumer,
  type ConsumerConfig,
  Kafka,
  type KafkaConfig,
  logLevel,
} from '../../internal/kafkajs.ts';

/** The broker list from KAFKA_BROKERS, or a clear error saying how to get one. */
export function brokersFromEnv(): string[] {
  const raw = process.env.KAFKA_BROKERS?.trim();
  if (raw === undefined || raw === '') {
    throw new Error(
      'KAFKA_BROKERS is not set: run these tests with `npm run test:kafka` (it starts a broker), or set KAFKA_BROKERS=host:port to use your own cluster',
    );
  }
  return raw.split(',').map((b) => b.trim());
}

function logLevelFromEnv(): logLevel {
  const level = process.env.KAFKAJS_LOG_LEVEL?.toUpperCase();
  switch (level) {
    case 'ERROR':
      return logLevel.ERROR;
    case 'WARN':
      return logLevel.WARN;
    case 'INFO':
      return logLevel.INFO;
    case 'DEBUG':
      return logLevel.DEBUG;
    default:
      return logLevel.NOTHING;
  }
}

export function kafkaClient(clientId: string, overrides: Partial<KafkaConfig> = {}): Kafka {
  return new Kafka({
    clientId,
    brokers: brokersFromEnv(),
    logLevel: logLevelFromEnv(),
    connectionTimeout: 5_000,
    requestTimeout: 15_000,
    ...overrides,
  });
}

/** Consumer settings that keep tests quick: short fetch waits and heartbeats. */
export function quickConsumer(groupId: string, extra: Partial<ConsumerConfig> = {}): ConsumerConfig {
  return {
    groupId,
    maxWaitTimeInMs: 100,
    heartbeatInterval: 500,
    sessionTimeout: 10_000,
    retry: { retries: 3 },
    ...extra,
  };
}

/** Rejects with `what()` (evaluated at the time) when `promise` does not settle within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `check` until it returns a value other than undefined, or fails after `ms` with `what()`. A
 * retriable Kafka error thrown by `check` (kafkajs marks them `retriable`: e.g. NOT_COORDINATOR while a
 * fresh broker loads the group's offsets partition) counts as "not yet"; any other error fails at once.
 */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  ms: number,
  what: () => string,
): Promise<T> {
  const deadline = performance.now() + ms;
  let lastError: unknown;
  for (;;) {
    let value: T | undefined;
    try {
      value = await check();
    } catch (e) {
      if ((e as { retriable?: unknown } | undefined)?.retriable !== true) throw e;
      lastError = e;
    }
    if (value !== undefined) return value;
    if (performance.now() > deadline)
      throw new Error(
        `timed out after ${ms} ms: ${what()}${lastError === undefined ? '' : ` (last error: ${String(lastError)})`}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface Received {
  readonly partition: number;
  readonly offset: string;
  readonly key: string | null;
  readonly value: string | null;
}

/**
 * Subscribes `consumer` (connected here) to `topic` from the beginning and collects records until there
 * are `count`; the consumer keeps running, so the caller can check that no more arrive, then disconnects.
 */
export async function consumeAtLeast(
  consumer: Consumer,
  topic: string,
  count: number,
  timeoutMs: number,
): Promise<Received[]> {
  const received: Received[] = [];
  let reached: () => void = () => undefined;
  const enough = new Promise<void>((resolve) => {
    reached = resolve;
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      received.push({
        partition,
        offset: message.offset,
        key: message.key?.toString('utf8') ?? null,
        value: message.value?.toString('utf8') ?? null,
      });
      if (received.length >= count) reached();
    },
  });
  await withTimeout(enough, timeoutMs, () => `${count} records from ${topic}, got ${received.length}`);
  return received;
}

/**
 * Topic config for tests whose records carry old event times as Kafka timestamps (generated data
 * from 2026-01-01): without it, time-based retention (7 days, checked every 5 minutes) deletes the
 * first segment of a partition while the test runs, and committed output disappears.
 */
export const KEEP_OLD_TIMESTAMPS = [{ name: 'retention.ms', value: '-1' }];
