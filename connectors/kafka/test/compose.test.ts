/**
 * docker-compose.kafka.yml cannot run here (no Docker engine), so these line-based checks keep it
 * consistent with the harness: the same broker version and the same settings, from one source of truth.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BROKER_SETTINGS, dockerEnvName } from '../local/config.ts';
import { REPO_ROOT } from '../local/install.ts';
import { DEFAULT_KAFKA_VERSION } from '../local/versions.ts';

const compose = readFileSync(join(REPO_ROOT, 'docker-compose.kafka.yml'), 'utf8');
const lines = compose.split('\n');

/** The lines of one top-level service block (two-space indented key under `services:`). */
function service(name: string): string[] {
  const start = lines.indexOf(`  ${name}:`);
  assert.ok(start >= 0, `service ${name} is defined`);
  const end = lines.findIndex((line, i) => i > start && /^ {2}\S/.test(line));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

/** `KEY: "value"` pairs of a service's environment block. */
function environment(block: readonly string[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of block) {
    const match = /^ {6}([A-Z0-9_]+): "(.*)"$/.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) env.set(match[1], match[2]);
  }
  return env;
}

/** Settings that say where the broker runs; Docker networking differs from the harness's 127.0.0.1. */
const PLACEMENT = new Set([
  'KAFKA_LISTENERS',
  'KAFKA_ADVERTISED_LISTENERS',
  'KAFKA_LISTENER_SECURITY_PROTOCOL_MAP',
  'KAFKA_CONTROLLER_QUORUM_VOTERS',
  'KAFKA_HEAP_OPTS',
]);

describe('docker-compose.kafka.yml', () => {
  test('is plain block YAML: spaces only, even indentation, no duplicate top-level keys', () => {
    for (const [i, line] of lines.entries()) {
      assert.ok(!line.includes('\t'), `line ${i + 1} has no tab`);
      const indent = /^ */.exec(line)?.[0].length ?? 0;
      assert.equal(indent % 2, 0, `line ${i + 1} is indented by an even number of spaces`);
    }
    const topLevel = lines.filter((l) => /^[a-z]/.test(l)).map((l) => l.split(':')[0]);
    assert.deepEqual(topLevel, ['name', 'services']);
  });

  test('runs the harness default Kafka version', () => {
    assert.ok(service('kafka').includes(`    image: apache/kafka:${DEFAULT_KAFKA_VERSION}`));
  });

  test('sets every harness broker setting, with the same value, and no others', () => {
    const env = environment(service('kafka'));
    for (const [property, value] of Object.entries(BROKER_SETTINGS)) {
      assert.equal(env.get(dockerEnvName(property)), value, `${property} as ${dockerEnvName(property)}`);
    }
    const expected = new Set(Object.keys(BROKER_SETTINGS).map(dockerEnvName));
    for (const name of env.keys()) {
      if (!name.startsWith('KAFKA_')) continue;
      assert.ok(expected.has(name) || PLACEMENT.has(name), `${name} is a harness setting or a placement one`);
    }
  });

  test('has a schema registry on the broker and Prometheus scraping the service on the host', () => {
    const registry = environment(service('schema-registry'));
    assert.equal(registry.get('SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS'), 'PLAINTEXT://kafka:29092');
    assert.equal(registry.get('SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR'), '1');
    const prometheus = service('prometheus');
    const volume = prometheus.find((l) => l.includes(':/etc/prometheus/prometheus.yml'));
    const hostPath = /- \.\/(\S+?):/.exec(volume ?? '')?.[1];
    assert.ok(
      hostPath !== undefined && existsSync(join(REPO_ROOT, hostPath)),
      'the Prometheus config exists',
    );
    const config = readFileSync(join(REPO_ROOT, hostPath), 'utf8');
    assert.match(config, /targets: \["host\.docker\.internal:9464"\]/);
    assert.match(config, /metrics_path: \/metrics/);
    assert.ok(
      prometheus.some((l) => l.includes('host.docker.internal:host-gateway')),
      'the host is reachable on Linux',
    );
  });
});

test('dockerEnvName follows the apache/kafka convention', () => {
  assert.equal(dockerEnvName('transaction.state.log.min.isr'), 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR');
  assert.equal(dockerEnvName('a_b.c-d'), 'KAFKA_A__B_C___D');
});
