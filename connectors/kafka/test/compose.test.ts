/**
 * docker-compose.kafka.yml cannot run here (no Docker engine), so these line-based checks keep it
 * consistent with the harness: the same broker version and settings, the same schema registry
 * (Apicurio, REGISTRY.version) and the same Prometheus as the tests, read from the harness's own code
 * and binary, and a scrape target where kstate binds by default.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REGISTRY } from '../../../scripts/registry/install.ts';
import { BROKER_SETTINGS, dockerEnvName } from '../local/config.ts';
import { REPO_ROOT } from '../local/install.ts';
import { DEFAULT_KAFKA_VERSION } from '../local/versions.ts';
import { CONFIG_DEFAULTS } from '../service/config.ts';

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

  test('runs the registry the harness builds: Apicurio Registry of its pinned version, in memory, ccompat on 8081', () => {
    // The pin of scripts/registry/install.ts (the harness builds that release from Maven Central).
    const registry = service('schema-registry');
    assert.ok(
      registry.includes(`    image: apicurio/apicurio-registry-mem:${REGISTRY.version}`),
      `the schema registry is apicurio/apicurio-registry-mem:${REGISTRY.version}: ${registry.find((l) => l.includes('image:'))}`,
    );
    assert.ok(registry.includes('      - "8081:8080"'), 'its API (port 8080 in the image) on localhost:8081');
    assert.match(compose, /SCHEMA_REGISTRY_URL=http:\/\/localhost:8081\/apis\/ccompat\/v7/);
  });

  test('runs the Prometheus the tests scrape with (its version from `prometheus --version`)', () => {
    const probe = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
    assert.equal(
      probe.error,
      undefined,
      'prometheus is not installed (or not on PATH): `apt-get install prometheus` (Debian package; .ci/run installs it when missing); the metrics test scrapes with it',
    );
    const version = /prometheus, version (\d+\.\d+\.\d+)/.exec(`${probe.stdout}${probe.stderr}`)?.[1];
    assert.ok(version !== undefined, `a version in: ${probe.stdout}`);
    const image = service('prometheus').find((l) => l.includes('image:'));
    assert.equal(
      image,
      `    image: prom/prometheus:v${version}`,
      `the tests scrape with Prometheus ${version}: run prom/prometheus:v${version}`,
    );
  });

  test("Prometheus reaches the service where kstate binds by default: the host's loopback", () => {
    const prometheus = service('prometheus');
    // kstate's HTTP default (connectors/kafka/service/config.ts): a container on Docker's bridge network
    // could not reach 127.0.0.1 of the host, so Prometheus shares the host's network.
    assert.equal(CONFIG_DEFAULTS.httpHost, '127.0.0.1', 'the default bind address the compose file assumes');
    assert.ok(prometheus.includes('    network_mode: host'), 'Prometheus in the host network');
    const volume = prometheus.find((l) => l.includes(':/etc/prometheus/prometheus.yml'));
    const hostPath = /- \.\/(\S+?):/.exec(volume ?? '')?.[1];
    assert.ok(
      hostPath !== undefined && existsSync(join(REPO_ROOT, hostPath)),
      'the Prometheus config exists',
    );
    const config = readFileSync(join(REPO_ROOT, hostPath), 'utf8');
    assert.ok(
      config.includes(`targets: ["${CONFIG_DEFAULTS.httpHost}:${CONFIG_DEFAULTS.httpPort}"]`),
      `the scrape target is ${CONFIG_DEFAULTS.httpHost}:${CONFIG_DEFAULTS.httpPort}`,
    );
    assert.match(config, /metrics_path: \/metrics/);
  });
});

test('dockerEnvName follows the apache/kafka convention', () => {
  assert.equal(dockerEnvName('transaction.state.log.min.isr'), 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR');
  assert.equal(dockerEnvName('a_b.c-d'), 'KAFKA_A__B_C___D');
});
