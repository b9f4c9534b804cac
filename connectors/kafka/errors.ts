import { type ErrorCode, StreamError } from '../../framework/index.ts';

/**
 * The one place where Kafka errors are classified (as Flink's KafkaCommitter does), by kafkajs's error
 * class and Kafka's error type, never by message text. Each failure gets a catalogued code and that
 * code's `retriable` flag (framework/api/errors.ts), which the callers act on:
 * - `retry` (KAFKA_RETRIABLE, KAFKA_UNAVAILABLE): transient (coordinator loading or moving, concurrent
 *   transactions, connection lost); retried where it happened when that is safe (the sink's commit
 *   retries within the transaction timeout), else the task restarts;
 * - `restart` (KAFKA_TRANSACTION_LOST, KAFKA_REQUEST_FAILED): this task's transaction is lost (fenced by
 *   a newer owner, aborted, out of sequence) or the request cannot succeed as it is; the task fails
 *   and restarts from its last committed checkpoint;
 * - `fatal` (CONFIG_INVALID): configuration or permissions; restarting will not help; the message
 *   says what to fix.
 */
export type KafkaFailure = 'retry' | 'restart' | 'fatal';

export interface KafkaClassification {
  readonly kind: KafkaFailure;
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly hint?: string;
}

interface KafkaJsLikeError {
  name?: string;
  type?: string;
  retriable?: boolean;
  cause?: unknown;
  errors?: unknown[];
}

/** Kafka error types that mean the task's transaction (or its producer id) is gone. */
const TRANSACTION_LOST_TYPES = new Set([
  'PRODUCER_FENCED',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_TXN_STATE',
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_ID_MAPPING',
  'TRANSACTION_COORDINATOR_FENCED',
]);

/**
 * Kafka error types the coordinators answer while busy or moving (kafkajs's names: GROUP_* are
 * Kafka's COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE and NOT_COORDINATOR), and other
 * answers that go away on retry. kafkajs gives up on several of them in transactional calls
 * (AddOffsetsToTxn, EndTxn), where the Java client retries.
 */
const RETRIABLE_TYPES = new Set([
  'CONCURRENT_TRANSACTIONS',
  'GROUP_LOAD_IN_PROGRESS',
  'GROUP_COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR_FOR_GROUP',
  'REQUEST_TIMED_OUT',
  'NETWORK_EXCEPTION',
  'LEADER_NOT_AVAILABLE',
  'NOT_LEADER_FOR_PARTITION',
  'NOT_ENOUGH_REPLICAS',
  'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
  'UNSTABLE_OFFSET_COMMIT',
]);

/** kafkajs error classes that mean no broker answered. */
const UNAVAILABLE_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSGroupCoordinatorNotFound',
]);

const FATAL: Record<string, string> = {
  TOPIC_AUTHORIZATION_FAILED: 'the credentials may not use this topic: grant the ACL or fix the topic name',
  GROUP_AUTHORIZATION_FAILED:
    'the credentials may not use the consumer group: grant the group ACL for the job id',
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    'the credentials may not use the transactional ids `<jobId>.*`: grant the ACL',
  CLUSTER_AUTHORIZATION_FAILED: 'the credentials lack the cluster permissions idempotent producers need',
  SASL_AUTHENTICATION_FAILED: 'wrong credentials: check sasl username and password',
  INVALID_TRANSACTION_TIMEOUT:
    "the sink's transactionTimeoutMs exceeds the broker's transaction.max.timeout.ms: lower it or raise the broker setting",
  UNKNOWN_TOPIC_OR_PARTITION:
    'the topic does not exist: create it, e.g. kstate topics create <topic> --partitions n (topics are never created implicitly)',
  INVALID_SESSION_TIMEOUT:
    "the consumer's session timeout (KSTATE_SESSION_TIMEOUT_MS, consumer.sessionTimeoutMs) is outside the brokers' group.min.session.timeout.ms to group.max.session.timeout.ms: choose one within",
  GROUP_MAX_SIZE_REACHED:
    "the consumer group has the brokers' group.max.size members already: run fewer instances (or workers), or raise group.max.size",
  FENCED_INSTANCE_ID:
    'another live instance joined with group.instance.id of this one and fenced it: give every instance its own id (KSTATE_GROUP_INSTANCE_ID, consumer.groupInstanceId)',
};

const KIND: Partial<Record<ErrorCode, KafkaFailure>> = {
  CONFIG_INVALID: 'fatal',
  KAFKA_RETRIABLE: 'retry',
  KAFKA_UNAVAILABLE: 'retry',
};

function of(code: ErrorCode, hint?: string): KafkaClassification {
  return {
    kind: KIND[code] ?? 'restart',
    code,
    retriable: StreamError.isRetriable(code),
    ...(hint ? { hint } : {}),
  };
}

/** How bad each code is, to pick the worst of several errors (kafkajs aggregates per broker). */
const SEVERITY: ErrorCode[] = [
  'KAFKA_RETRIABLE',
  'KAFKA_UNAVAILABLE',
  'KAFKA_REQUEST_FAILED',
  'KAFKA_TRANSACTION_LOST',
  'CONFIG_INVALID',
];

export function classifyKafkaError(e: unknown): KafkaClassification {
  if (e instanceof StreamError) return of(e.code);
  const err = (e ?? {}) as KafkaJsLikeError;
  if (err.name === 'KafkaJSAggregateError' && Array.isArray(err.errors) && err.errors.length > 0) {
    return err.errors
      .map(classifyKafkaError)
      .reduce((a, b) => (SEVERITY.indexOf(b.code) > SEVERITY.indexOf(a.code) ? b : a));
  }
  // kafkajs gave up retrying, or wrapped an error it does not retry: what counts is the error inside.
  if (
    (err.name === 'KafkaJSNumberOfRetriesExceeded' || err.name === 'KafkaJSNonRetriableError') &&
    err.cause !== undefined &&
    err.cause !== e
  )
    return classifyKafkaError(err.cause);
  const type = err.type ?? '';
  if (FATAL[type]) return of('CONFIG_INVALID', FATAL[type]);
  if (err.name === 'KafkaJSSASLAuthenticationError')
    return of('CONFIG_INVALID', FATAL.SASL_AUTHENTICATION_FAILED);
  if (TRANSACTION_LOST_TYPES.has(type)) return of('KAFKA_TRANSACTION_LOST');
  if (RETRIABLE_TYPES.has(type)) return of('KAFKA_RETRIABLE');
  if (UNAVAILABLE_NAMES.has(err.name ?? '')) return of('KAFKA_UNAVAILABLE');
  // Another protocol error: Kafka's own retriable flag for its type (kafkajs's table) decides.
  if (err.name === 'KafkaJSProtocolError' && err.retriable === true) return of('KAFKA_RETRIABLE');
  return of('KAFKA_REQUEST_FAILED');
}

/**
 * Wrap a Kafka error as a catalogued StreamError saying what failed, what it means for the job and
 * what to do; keeps the cause. A StreamError passes through unchanged.
 */
export function kafkaError(what: string, e: unknown): StreamError {
  if (e instanceof StreamError) return e;
  const { code, hint } = classifyKafkaError(e);
  const err = (e ?? {}) as KafkaJsLikeError;
  const msg = e instanceof Error ? e.message : String(e);
  const type = err.type ? ` [${err.type}]` : '';
  return new StreamError(code, `${what}: ${msg}${type}${hint ? `: ${hint}` : ''}`, { cause: e });
}
