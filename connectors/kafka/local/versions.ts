/**
 * The Kafka broker versions the harness knows, each pinned with the logging backend its line needs.
 *
 * `org.apache.kafka:kafka_2.13` declares slf4j-api 1.7.36 but no slf4j binding, so the harness adds one:
 * Kafka 4.x logs through log4j2 (log4j-api and log4j-core come with Kafka; the harness adds the slf4j 1.x
 * bridge `log4j-slf4j-impl` at the same log4j version), Kafka 3.9 through reload4j (`slf4j-reload4j`).
 */

export type LoggingBackend = 'log4j2' | 'reload4j';

export interface MavenArtifact {
  readonly groupId: string;
  readonly artifactId: string;
  readonly version: string;
}

export interface KafkaVersionSpec {
  readonly version: string;
  readonly logging: LoggingBackend;
  /** Maven artifacts fetched into the version's `libs/`, with everything they depend on at runtime. */
  readonly artifacts: readonly MavenArtifact[];
}

export const DEFAULT_KAFKA_VERSION = '4.1.1';

const kafka = (version: string): MavenArtifact => ({
  groupId: 'org.apache.kafka',
  artifactId: 'kafka_2.13',
  version,
});

const log4j2 = (kafkaVersion: string, log4jVersion: string): KafkaVersionSpec => ({
  version: kafkaVersion,
  logging: 'log4j2',
  artifacts: [
    kafka(kafkaVersion),
    { groupId: 'org.apache.logging.log4j', artifactId: 'log4j-api', version: log4jVersion },
    { groupId: 'org.apache.logging.log4j', artifactId: 'log4j-core', version: log4jVersion },
    { groupId: 'org.apache.logging.log4j', artifactId: 'log4j-slf4j-impl', version: log4jVersion },
  ],
});

const reload4j = (kafkaVersion: string): KafkaVersionSpec => ({
  version: kafkaVersion,
  logging: 'reload4j',
  artifacts: [
    kafka(kafkaVersion),
    { groupId: 'org.slf4j', artifactId: 'slf4j-reload4j', version: '1.7.36' },
    { groupId: 'ch.qos.reload4j', artifactId: 'reload4j', version: '1.2.25' },
  ],
});

/** Pinned versions; the log4j version is the one each Kafka release itself depends on. */
export const KAFKA_VERSIONS: Readonly<Record<string, KafkaVersionSpec>> = {
  '4.1.1': log4j2('4.1.1', '2.24.3'),
  '3.9.1': reload4j('3.9.1'),
};

/** Short names for a line: `KAFKA_VERSION=3.9` selects the pinned 3.9.x. */
const ALIASES: Readonly<Record<string, string>> = {
  '4': '4.1.1',
  '4.1': '4.1.1',
  '3': '3.9.1',
  '3.9': '3.9.1',
};

/** Resolves a version or line name to its pinned spec, or undefined when it is not pinned here. */
export function resolveKafkaVersion(requested: string | undefined): KafkaVersionSpec | undefined {
  const name = requested === undefined || requested.trim() === '' ? DEFAULT_KAFKA_VERSION : requested.trim();
  return KAFKA_VERSIONS[ALIASES[name] ?? name];
}

export function knownVersionNames(): string[] {
  return [...Object.keys(KAFKA_VERSIONS), ...Object.keys(ALIASES)];
}
