/**
 * The one source of truth for the test broker's configuration: the harness writes it into
 * `server.properties`, and docker-compose.kafka.yml repeats it as `KAFKA_*` environment variables
 * (connectors/kafka/test/local/compose.test.ts keeps the two in step).
 */

/**
 * Settings that do not depend on where the broker runs: a single node that can run transactions.
 * Topics are never created on demand (`auto.create.topics.enable=false`): tests create every topic
 * they use, with the partition count they mean.
 */
export const BROKER_SETTINGS: Readonly<Record<string, string>> = {
  'process.roles': 'broker,controller',
  'node.id': '1',
  'controller.listener.names': 'CONTROLLER',
  'inter.broker.listener.name': 'PLAINTEXT',
  'num.partitions': '1',
  'default.replication.factor': '1',
  'min.insync.replicas': '1',
  'offsets.topic.replication.factor': '1',
  'transaction.state.log.replication.factor': '1',
  'transaction.state.log.min.isr': '1',
  'transaction.max.timeout.ms': '900000',
  'group.initial.rebalance.delay.ms': '0',
  // Crash tests restart members often: let them use short session timeouts (default minimum 6 s).
  'group.min.session.timeout.ms': '1000',
  'group.coordinator.rebalance.protocols': 'classic,consumer',
  'auto.create.topics.enable': 'false',
};

/**
 * The settings for one Kafka line. On 3.9 the KIP-848 `consumer` protocol is a preview the broker warns
 * about at every config load, and kafkajs speaks only `classic`, so 3.x enables `classic` alone.
 */
export function brokerSettingsFor(version: string): Readonly<Record<string, string>> {
  if (Number(version.split('.')[0]) >= 4) return BROKER_SETTINGS;
  return { ...BROKER_SETTINGS, 'group.coordinator.rebalance.protocols': 'classic' };
}

export interface BrokerPlacement {
  readonly version: string;
  readonly host: string;
  readonly port: number;
  readonly controllerPort: number;
  readonly logDir: string;
}

/** The complete server.properties content for one harness broker. */
export function serverProperties(placement: BrokerPlacement): string {
  const { version, host, port, controllerPort, logDir } = placement;
  const all: Record<string, string> = {
    ...brokerSettingsFor(version),
    listeners: `PLAINTEXT://${host}:${port},CONTROLLER://${host}:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://${host}:${port}`,
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'controller.quorum.voters': `${BROKER_SETTINGS['node.id']}@${host}:${controllerPort}`,
    'log.dirs': logDir,
  };
  return `${Object.entries(all)
    .map(([key, value]) => `${key}=${value}`)
    .join('\n')}\n`;
}

/** The environment variable the apache/kafka image maps onto a property (its documented convention). */
export function dockerEnvName(property: string): string {
  return `KAFKA_${property.replaceAll('_', '__').replaceAll('-', '___').replaceAll('.', '_').toUpperCase()}`;
}
