import { StreamError } from '../../framework/index.ts';

/**
 * The one place where Kafka errors are classified (as Flink's KafkaCommitter does):
 * - `retry`: transient (connection, leader change, coordinator moving); retried where it happened;
 * - `restart`: this task's transaction is lost (fenced by a newer owner, aborted, timed out);
 *   the task fails and restarts from its last committed checkpoint;
 * - `fatal`: configuration or permissions; restarting will not help; the message says what to fix.
 */
export type KafkaFailure = 'retry' | 'restart' | 'fatal';

interface KafkaJsLikeError {
  name?: string;
  type?: string;
  retriable?: boolean;
  message?: string;
}

const RESTART_TYPES = new Set([
  'PRODUCER_FENCED',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_TXN_STATE',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED_NOT',
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_ID_MAPPING',
  'CONCURRENT_TRANSACTIONS',
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
  UNKNOWN_TOPIC_OR_PARTITION: 'the topic does not exist: create it (topics are never created implicitly)',
};

export function classifyKafkaError(e: unknown): { kind: KafkaFailure; hint?: string } {
  const err = (e ?? {}) as KafkaJsLikeError;
  const type = err.type ?? '';
  if (FATAL[type]) return { kind: 'fatal', hint: FATAL[type] };
  if (err.name === 'KafkaJSSASLAuthenticationError')
    return { kind: 'fatal', hint: FATAL.SASL_AUTHENTICATION_FAILED };
  if (RESTART_TYPES.has(type)) return { kind: 'restart' };
  if (/fenced|epoch/i.test(err.message ?? '')) return { kind: 'restart' };
  if (
    err.retriable === true ||
    err.name === 'KafkaJSConnectionError' ||
    err.name === 'KafkaJSRequestTimeoutError'
  ) {
    return { kind: 'retry' };
  }
  if (err.name === 'KafkaJSNumberOfRetriesExceeded') return { kind: 'restart' };
  return { kind: 'restart' };
}

/** Wrap a Kafka error with what it means for the job and what to do; keeps the cause. */
export function kafkaError(what: string, e: unknown): Error {
  if (e instanceof StreamError) return e;
  const { kind, hint } = classifyKafkaError(e);
  const msg = e instanceof Error ? e.message : String(e);
  if (kind === 'fatal')
    return new StreamError('CONFIG_INVALID', `${what}: ${msg}${hint ? `: ${hint}` : ''}`, { cause: e });
  return new Error(`${what} (${kind}): ${msg}`, { cause: e });
}
