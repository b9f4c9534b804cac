import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStreamError, StreamError } from '../../framework/index.ts';
import { classifyKafkaError, kafkaError } from './errors.ts';
import {
  DeserializationError,
  RegistryRequestError,
  RegistryUnavailableError,
  SerializationError,
} from './serde/errors.ts';

/** Shaped as kafkajs's errors (name, type, retriable, cause). */
function kafkajs(
  name: string,
  o: { type?: string; retriable?: boolean; cause?: unknown; errors?: unknown[] } = {},
) {
  return Object.assign(new Error(`kafkajs ${name} ${o.type ?? ''}`), { name, ...o });
}
const protocol = (type: string, retriable: boolean) => kafkajs('KafkaJSProtocolError', { type, retriable });

test('Kafka failures get a catalogued code and its retriable flag, by error class and type', () => {
  const cases: [unknown, string, boolean][] = [
    [protocol('CONCURRENT_TRANSACTIONS', true), 'KAFKA_RETRIABLE', true],
    [protocol('GROUP_LOAD_IN_PROGRESS', true), 'KAFKA_RETRIABLE', true],
    [protocol('GROUP_COORDINATOR_NOT_AVAILABLE', true), 'KAFKA_RETRIABLE', true],
    [protocol('NOT_COORDINATOR_FOR_GROUP', true), 'KAFKA_RETRIABLE', true],
    [protocol('REQUEST_TIMED_OUT', true), 'KAFKA_RETRIABLE', true],
    [protocol('OFFSET_NOT_AVAILABLE', true), 'KAFKA_RETRIABLE', true],
    [kafkajs('KafkaJSConnectionError'), 'KAFKA_UNAVAILABLE', true],
    [kafkajs('KafkaJSRequestTimeoutError'), 'KAFKA_UNAVAILABLE', true],
    [protocol('INVALID_PRODUCER_EPOCH', false), 'KAFKA_TRANSACTION_LOST', false],
    [protocol('PRODUCER_FENCED', false), 'KAFKA_TRANSACTION_LOST', false],
    [protocol('INVALID_TXN_STATE', false), 'KAFKA_TRANSACTION_LOST', false],
    [protocol('RECORD_LIST_TOO_LARGE', false), 'KAFKA_REQUEST_FAILED', false],
    [protocol('TOPIC_AUTHORIZATION_FAILED', false), 'CONFIG_INVALID', false],
    [kafkajs('KafkaJSSASLAuthenticationError'), 'CONFIG_INVALID', false],
    // kafkajs gave up retrying: the cause decides.
    [
      kafkajs('KafkaJSNumberOfRetriesExceeded', { cause: protocol('CONCURRENT_TRANSACTIONS', true) }),
      'KAFKA_RETRIABLE',
      true,
    ],
    // Several brokers' errors: the worst one decides.
    [
      kafkajs('KafkaJSAggregateError', {
        errors: [protocol('REQUEST_TIMED_OUT', true), protocol('INVALID_PRODUCER_EPOCH', false)],
      }),
      'KAFKA_TRANSACTION_LOST',
      false,
    ],
    // Never by message text: "fenced" in a message of an unknown error decides nothing.
    [new Error('producer fenced: epoch bumped'), 'KAFKA_REQUEST_FAILED', false],
    [new StreamError('KAFKA_UNAVAILABLE', 'already classified'), 'KAFKA_UNAVAILABLE', true],
  ];
  for (const [error, code, retriable] of cases) {
    const c = classifyKafkaError(error);
    assert.equal(c.code, code, String(error));
    assert.equal(c.retriable, retriable, String(error));
    const wrapped = kafkaError('doing x', error);
    assert.ok(isStreamError(wrapped), String(error));
    assert.equal(wrapped.code, code);
    assert.equal(wrapped.retriable, retriable);
  }
});

test('kafkaError names what failed, the Kafka type and the fix, and keeps the cause', () => {
  const cause = protocol('TRANSACTIONAL_ID_AUTHORIZATION_FAILED', false);
  const e = kafkaError('task s-p0: starting its transactional producers', cause);
  assert.equal(e.code, 'CONFIG_INVALID');
  assert.equal(e.cause, cause);
  assert.match(
    e.message,
    /^task s-p0: starting its transactional producers: .*\[TRANSACTIONAL_ID_AUTHORIZATION_FAILED\]: .*grant the ACL/,
  );
});

test('serde errors are StreamErrors of the one catalogue; retryable is the retriable flag', () => {
  const errors = [
    new DeserializationError({ reason: 'truncated', format: 'avro', topic: 't', detail: 'd' }),
    new SerializationError('avro', 't', 'd'),
    new RegistryUnavailableError({
      url: 'u',
      operation: 'GET /x',
      attempts: 3,
      elapsedMs: 9,
      lastError: 'e',
    }),
    new RegistryRequestError({ url: 'u', operation: 'GET /x', status: 401, detail: 'd' }),
  ];
  assert.deepEqual(
    errors.map((e) => [isStreamError(e), e.code, e.retriable, e.retryable]),
    [
      [true, 'RECORD_DESERIALIZATION_FAILED', false, false],
      [true, 'RECORD_SERIALIZATION_FAILED', false, false],
      [true, 'SCHEMA_REGISTRY_UNAVAILABLE', true, true],
      [true, 'SCHEMA_REGISTRY_REQUEST_FAILED', false, false],
    ],
  );
  assert.deepEqual(
    errors.map((e) => e.name),
    ['DeserializationError', 'SerializationError', 'RegistryUnavailableError', 'RegistryRequestError'],
  );
});

test('an error kafkajs wraps as non-retriable is classified by what it wraps: a fenced static member is CONFIG_INVALID', () => {
  const fenced = kafkajs('KafkaJSNonRetriableError', { cause: protocol('FENCED_INSTANCE_ID', false) });
  const e = kafkaError("the consumer of group g (group.instance.id 'i-1') stopped", fenced);
  assert.equal(e.code, 'CONFIG_INVALID');
  assert.match(e.message, /group\.instance\.id 'i-1'.*another live instance joined with group\.instance\.id/);
});
