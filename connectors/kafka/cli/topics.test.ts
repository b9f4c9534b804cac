/**
 * The parts of `kstate topics` a broker of the test harness cannot show: its exit codes for refused
 * credentials and ACLs (the harness broker has no authorizer and no SASL listener), and the argument
 * parsing. connectors/kafka/test/cli/topics-cli.test.ts runs the command against the real broker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kafkaError } from '../errors.ts';
import { CommandError } from './command-error.ts';
import { EXIT } from './exit-codes.ts';
import { failure, parseCount, parseTopicConfigs } from './topics.ts';

/** Shaped as kafkajs's errors (name, type, retriable, cause, errors), as connectors/kafka/errors.test.ts. */
function kafkajs(
  name: string,
  message: string,
  o: { type?: string; cause?: unknown; errors?: unknown[] } = {},
) {
  return Object.assign(new Error(message), { name, ...o });
}
const createTopicError = (type: string, message: string) =>
  kafkajs('KafkaJSCreateTopicError', message, { type });
const aggregate = (...errors: unknown[]) =>
  kafkajs('KafkaJSAggregateError', 'Topic creation errors', { errors });
const BROKERS = ['kafka-1:9092', 'kafka-2:9092'];

test('refused credentials and missing ACLs exit 77, naming the Kafka error and what to grant', () => {
  const cases: [unknown, RegExp][] = [
    [
      aggregate(
        createTopicError(
          'TOPIC_AUTHORIZATION_FAILED',
          'Not authorized to access topics: [Topic authorization failed]',
        ),
      ),
      /^creating topic t: Not authorized to access topics: \[Topic authorization failed\] \[TOPIC_AUTHORIZATION_FAILED\]: the credentials may not do this with the topic: grant the ACL \(CREATE to create/,
    ],
    [
      kafkajs('KafkaJSProtocolError', 'Cluster authorization failed', {
        type: 'CLUSTER_AUTHORIZATION_FAILED',
      }),
      /\[CLUSTER_AUTHORIZATION_FAILED\]: the credentials lack a cluster permission/,
    ],
    // What the shared admin lease throws when the SASL handshake fails: a StreamError with the cause.
    [
      kafkaError(
        'connecting the admin client',
        kafkajs('KafkaJSSASLAuthenticationError', 'SASL PLAIN authentication failed: Authentication failed'),
      ),
      /^creating topic t: SASL PLAIN authentication failed: Authentication failed \[SASL_AUTHENTICATION_FAILED\]: the brokers refused the credentials/,
    ],
  ];
  for (const [e, message] of cases) {
    const f = failure('creating topic t', e, BROKERS);
    assert.ok(f instanceof CommandError);
    assert.equal(f.exit, EXIT.NO_PERMISSION, f.message);
    assert.equal(f.exit, 77);
    assert.match(f.message, message);
    assert.equal(f.cause, e);
  }
});

test('no broker answering exits 69 naming the addresses; refused requests 65; anything else 1', () => {
  const lease = kafkaError(
    'connecting the admin client',
    kafkajs('KafkaJSNumberOfRetriesExceeded', 'Connection error: connect ECONNREFUSED 10.0.0.1:9092', {
      cause: kafkajs('KafkaJSConnectionError', 'Connection error: connect ECONNREFUSED 10.0.0.1:9092'),
    }),
  );
  const down = failure('describing t', lease, BROKERS, 15_400);
  assert.equal(down.exit, 69);
  assert.equal(
    down.message,
    "describing t: no Kafka broker answers at kafka-1:9092,kafka-2:9092 (tried for 15 s; Connection error: connect ECONNREFUSED 10.0.0.1:9092): is Kafka running there? The brokers come from KSTATE_BROKERS (or KAFKA_BROKERS), else 'brokers' in the --config file",
  );
  const policy = failure(
    'creating topic t',
    aggregate(
      createTopicError('POLICY_VIOLATION', 'Request parameters do not satisfy the configured policy'),
    ),
    BROKERS,
  );
  assert.deepEqual(
    [policy.exit, policy.message.split(': a policy')[0]],
    [65, 'creating topic t: Request parameters do not satisfy the configured policy [POLICY_VIOLATION]'],
  );
  const other = failure(
    'creating topic t',
    kafkajs('KafkaJSProtocolError', 'Unknown', { type: 'UNKNOWN' }),
    BROKERS,
  );
  assert.deepEqual([other.exit, other.message], [1, 'creating topic t: Unknown [UNKNOWN]']);
});

test('topic configs are name=value, once each (64); counts are integers in range (65)', () => {
  assert.deepEqual(parseTopicConfigs(['retention.ms=-1', 'cleanup.policy=compact,delete', 'x=']), [
    { name: 'retention.ms', value: '-1' },
    { name: 'cleanup.policy', value: 'compact,delete' },
    { name: 'x', value: '' },
  ]);
  for (const [args, message] of [
    [['retention.ms'], /--config "retention\.ms": a topic config is name=value/],
    [['=1'], /--config "=1": a topic config is name=value/],
    [['a=1', 'a=2'], /--config a is given twice/],
  ] as const)
    assert.throws(
      () => parseTopicConfigs(args),
      (e: unknown) => e instanceof CommandError && e.exit === EXIT.USAGE && message.test(e.message),
    );
  assert.equal(parseCount('--partitions', '12', 100), 12);
  for (const raw of ['0', '-1', '1.5', 'x', '', '101', '1e2'])
    assert.throws(
      () => parseCount('--partitions', raw, 100),
      (e: unknown) =>
        e instanceof CommandError &&
        e.exit === EXIT.USAGE &&
        e.message === `--partitions is ${JSON.stringify(raw)}; allowed: an integer 1..100`,
    );
});
