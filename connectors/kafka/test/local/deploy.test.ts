/**
 * deploy/ (docs/deploy.md) as far as this machine can check it: it has no Docker engine and no
 * Kubernetes cluster, so nothing here builds the image or applies the manifests.
 *
 * - The manifests parse (yaml), validate against the Kubernetes OpenAPI schema (KUBERNETES_SCHEMA) and
 *   type-check against its declarations (no unknown field), and hold what kstate needs; the Dockerfile
 *   lints clean (dockerfile-utils) and is what an image of a job must be. The checks live in
 *   deploy-checks.ts; each is also run on a broken copy, to show that it catches what it is for.
 * - The image's steps, run without Docker: the repository is packed, deploy/example is copied with the
 *   tarball to a temporary directory (the build context), the lock file is made as docs/deploy.md says,
 *   the Dockerfile's build-stage RUN steps run there as written, and its ENTRYPOINT + CMD start with the
 *   final stage's ENV (paths of the image mapped into the temporary directory) against the test broker
 *   and, when the harness started one, S3Proxy (checkpoints in S3, as in Kubernetes). Its HEALTHCHECK
 *   command fails before the start, passes while it runs, and fails again after SIGTERM, which stops
 *   it with exit 0 and its final checkpoints; its committed output, read with kcat, holds per user the
 *   counts 1..n in order.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, globSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { s3ClientConfig, testS3Store, uniqueBucketName } from '../../../s3/local/test-store.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import {
  DOCKERFILE,
  deploymentProblems,
  dockerfileProblems,
  documentedPaths,
  EXAMPLE_DIR,
  execForm,
  healthcheckCommand,
  imageFacts,
  KUBERNETES_SCHEMA,
  type Manifest,
  parseDockerfile,
  parseManifests,
  readManifests,
  schemaProblems,
  servedPaths,
  stageEnv,
  topicsJobProblems,
  unknownFieldProblems,
} from '../support/deploy-checks.ts';
import { kcatProducer } from '../support/eos-helpers.ts';
import { brokersFromEnv, eventually, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { PATH, packRepository, REPO, sh } from '../support/package-helpers.ts';
import { assertSequences, checkSequences, readCommittedRecords } from '../support/sequence-check.ts';

const dockerfileText = readFileSync(DOCKERFILE, 'utf8');
const dockerfile = parseDockerfile(dockerfileText);
const image = imageFacts(dockerfile);
const manifests = readManifests();

type Path = readonly (string | number)[];
type Json = Record<string | number, unknown>;
/** The object at `path` in `o` (every step must exist). */
function get(o: unknown, path: Path): unknown {
  let at = o;
  for (const step of path) {
    assert.ok(
      at !== null && typeof at === 'object',
      `${path.join('.')}: ${String(step)} is inside an object`,
    );
    at = (at as Json)[step];
  }
  return at;
}
const set = (o: unknown, path: Path, value: unknown) => {
  (get(o, path.slice(0, -1)) as Json)[path.at(-1)!] = value;
};
const remove = (o: unknown, path: Path) => {
  delete (get(o, path.slice(0, -1)) as Json)[path.at(-1)!];
};
const POD: Path = ['spec', 'template', 'spec'];
const CONTAINER: Path = [...POD, 'containers', 0];
/** The path of a container env entry by name. */
const envPath = (o: unknown, name: string): Path => {
  const index = (get(o, [...CONTAINER, 'env']) as { name: string }[]).findIndex((e) => e.name === name);
  assert.ok(index >= 0, `env ${name}`);
  return [...CONTAINER, 'env', index];
};
/** A deep copy of the manifests with `change` applied to the object of `kind`. */
function broken(kind: string, change: (o: unknown) => void): Manifest[] {
  const copy = structuredClone(manifests);
  const target = copy.find((m) => m.object.kind === kind);
  assert.ok(target, `a ${kind} to break`);
  change(target.object);
  return copy;
}

describe(`deploy/kubernetes against ${KUBERNETES_SCHEMA}`, () => {
  test('parses: five objects in apply order (Secret, ConfigMap, topics Job, Deployment, PDB)', () => {
    assert.deepEqual(
      manifests.map((m) => m.object.kind),
      ['Secret', 'ConfigMap', 'Job', 'Deployment', 'PodDisruptionBudget'],
    );
    assert.throws(
      () => parseManifests('dup.yaml', 'a: 1\na: 2\n'),
      /dup\.yaml: .*[Mm]ap keys must be unique/,
    );
  });

  test('every object is valid against its OpenAPI schema', () => {
    assert.deepEqual(schemaProblems(manifests), []);
    const wrong = broken('Deployment', (d) => set(d, ['spec', 'replicas'], '3'));
    assert.match(schemaProblems(wrong).join('\n'), /Deployment\/clicks-per-user: .*replicas must be integer/);
  });

  test('no field the kinds lack (a typo the schema lets through, the API server refuses)', () => {
    assert.deepEqual(unknownFieldProblems(manifests), []);
    const typo = broken('Deployment', (d) => {
      set(d, [...CONTAINER, 'readinesProbe'], get(d, [...CONTAINER, 'readinessProbe']));
      remove(d, [...CONTAINER, 'readinessProbe']);
    });
    assert.deepEqual(schemaProblems(typo), [], 'the JSON schema alone lets the typo through');
    assert.match(
      unknownFieldProblems(typo).join('\n'),
      /Deployment\/clicks-per-user: .*'"readinesProbe"' does not exist in type 'IContainer'/,
    );
  });

  test('the probes, scrape annotations, grace period, configuration and secrets are what kstate needs', () => {
    // The paths the service serves and documents, which the checks hold the manifests to.
    for (const path of ['/livez', '/readyz', '/metrics']) {
      assert.ok(servedPaths().has(path), `framework/service/http.ts serves ${path}`);
      assert.ok(documentedPaths().has(path), `docs/service.md documents ${path}`);
    }
    assert.deepEqual(deploymentProblems(manifests, image), []);
    assert.deepEqual(topicsJobProblems(manifests), []);
  });

  // Each check of deploymentProblems on a copy broken in the way it is for.
  const ANNOTATIONS: Path = ['spec', 'template', 'metadata', 'annotations'];
  const cases: [string, string, (o: unknown) => void, RegExp][] = [
    [
      'no readiness probe',
      'Deployment',
      (d) => remove(d, [...CONTAINER, 'readinessProbe']),
      /no readinessProbe/,
    ],
    [
      'liveness on another path',
      'Deployment',
      (d) => set(d, [...CONTAINER, 'livenessProbe', 'httpGet', 'path'], '/healthz'),
      /livenessProbe asks \/healthz, not \/livez.*\n.*not served by kstate/,
    ],
    [
      'probe on a port name that does not exist',
      'Deployment',
      (d) => set(d, [...CONTAINER, 'readinessProbe', 'httpGet', 'port'], 'metrics'),
      /readinessProbe port metrics is undefined, not KSTATE_HTTP_PORT 9464/,
    ],
    [
      'scrape port other than the HTTP port',
      'Deployment',
      (d) => set(d, [...ANNOTATIONS, 'prometheus.io/port'], '9090'),
      /prometheus\.io\/port is 9090, not 9464/,
    ],
    [
      'grace period shorter than a graceful stop',
      'Deployment',
      (d) => set(d, [...POD, 'terminationGracePeriodSeconds'], 35),
      /terminationGracePeriodSeconds 35 does not exceed a graceful stop: KSTATE_SHUTDOWN_TIMEOUT_MS 30000 \+ kstate's 5000 ms/,
    ],
    [
      'a misspelt kstate variable',
      'ConfigMap',
      (m) => {
        set(m, ['data', 'KSTATE_CHECKPOINT_STORGE'], get(m, ['data', 'KSTATE_CHECKPOINT_STORAGE']));
        remove(m, ['data', 'KSTATE_CHECKPOINT_STORAGE']);
      },
      /KSTATE_CHECKPOINT_STORGE is no kstate setting(.|\n)*KSTATE_CHECKPOINT_STORAGE is unset/,
    ],
    [
      'checkpoints on a local path',
      'ConfigMap',
      (m) => set(m, ['data', 'KSTATE_CHECKPOINT_STORAGE'], '/var/lib/kstate/checkpoints'),
      /KSTATE_CHECKPOINT_STORAGE is \/var\/lib\/kstate\/checkpoints: .* must be s3:\/\/bucket\/prefix/,
    ],
    [
      'the secret key inline',
      'Deployment',
      (d) =>
        set(d, envPath(d, 'AWS_SECRET_ACCESS_KEY'), {
          name: 'AWS_SECRET_ACCESS_KEY',
          value: 'wJalrXUtnFEMI',
        }),
      /AWS_SECRET_ACCESS_KEY is written inline/,
    ],
    [
      'a key the Secret does not have',
      'Deployment',
      (d) => set(d, [...envPath(d, 'AWS_ACCESS_KEY_ID'), 'valueFrom', 'secretKeyRef', 'key'], 'access-key'),
      /AWS_ACCESS_KEY_ID refers to key access-key of Secret kstate-s3-credentials/,
    ],
    [
      'a credential in the ConfigMap',
      'ConfigMap',
      (m) => set(m, ['data', 'AWS_SECRET_ACCESS_KEY'], 'x'),
      /AWS_SECRET_ACCESS_KEY is a credential in a ConfigMap/,
    ],
    [
      'a real-looking value in the Secret',
      'Secret',
      (s) => set(s, ['stringData', 'AWS_ACCESS_KEY_ID'], 'AKIAIOSFODNN7EXAMPLE'),
      /AWS_ACCESS_KEY_ID is not the placeholder replace-me/,
    ],
    [
      'no state volume',
      'Deployment',
      (d) => set(d, [...POD, 'volumes'], []),
      /no emptyDir volume mounted at the state directory \/var\/lib\/kstate/,
    ],
    [
      'root',
      'Deployment',
      (d) => {
        set(d, [...POD, 'securityContext', 'runAsNonRoot'], false);
        set(d, [...POD, 'securityContext', 'runAsUser'], 0);
      },
      /runAsNonRoot is not true.*\n.*runAsUser 0 is root/,
    ],
    [
      'the latest image',
      'Deployment',
      (d) => set(d, [...CONTAINER, 'image'], 'registry.example.com/clicks-per-user:latest'),
      /is :latest: pin a version/,
    ],
    [
      'no limits',
      'Deployment',
      (d) => remove(d, [...CONTAINER, 'resources', 'limits']),
      /no resources\.limits\.cpu/,
    ],
    [
      'HTTP bound to loopback',
      'ConfigMap',
      (m) => set(m, ['data', 'KSTATE_HTTP_HOST'], '127.0.0.1'),
      /KSTATE_HTTP_HOST is 127\.0\.0\.1: the kubelet's probes/,
    ],
    [
      'a PodDisruptionBudget over other pods',
      'PodDisruptionBudget',
      (p) => set(p, ['spec', 'selector', 'matchLabels'], { 'app.kubernetes.io/name': 'other' }),
      /0 PodDisruptionBudgets select its pods/,
    ],
    [
      'a selector that misses the template',
      'Deployment',
      (d) => set(d, ['spec', 'selector', 'matchLabels'], { app: 'kstate' }),
      /spec\.selector\.matchLabels does not select the pod template's labels/,
    ],
    [
      'one replica',
      'Deployment',
      (d) => remove(d, ['spec', 'replicas']),
      /replicas 1: a job of N instances needs N > 1/,
    ],
  ];
  for (const [what, kind, change, expected] of cases) {
    test(`catches a broken Deployment: ${what}`, () => {
      assert.match(deploymentProblems(broken(kind, change), image).join('\n'), expected);
    });
  }

  test("catches a topics Job on another image than the Deployment's", () => {
    const other = broken('Job', (j) =>
      set(j, [...CONTAINER, 'image'], 'registry.example.com/clicks-per-user:0.9.0'),
    );
    assert.match(topicsJobProblems(other).join('\n'), /image .*:0\.9\.0 is not the Deployment's .*:1\.0\.0/);
  });
});

describe('deploy/Dockerfile', () => {
  test('lints clean and is an image of a job: non-root, health check on /livez, exec form, STOPSIGNAL, pinned base', () => {
    assert.deepEqual(dockerfileProblems(dockerfile), []);
    assert.equal(image.user, '1000:1000');
    assert.equal(image.env.get('KSTATE_HTTP_HOST'), '0.0.0.0');
    assert.equal(image.env.get('KSTATE_STATE_DIR'), '/var/lib/kstate');
  });

  test('deploy/example depends on the tarball `npm pack` makes of this version, and holds the module CMD runs', () => {
    const example = JSON.parse(readFileSync(join(EXAMPLE_DIR, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const repo = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    assert.equal(example.dependencies.kstate, `file:kstate-${repo.version}.tgz`);
    const cmd = execForm(dockerfile.final.instructions.filter((i) => i.getKeyword() === 'CMD').at(-1));
    const module = cmd?.[1] ?? '';
    assert.ok(module.startsWith('/app/'), `CMD runs a module under /app: ${cmd}`);
    assert.ok(existsSync(join(EXAMPLE_DIR, module.slice('/app/'.length))), `${module} is in deploy/example`);
  });

  // Each check of dockerfileProblems on a copy broken in the way it is for.
  const cases: [string, [string | RegExp, string], RegExp][] = [
    ['no USER', [/^USER .*\n/m, ''], /final stage: no USER: the image would run as root/],
    ['USER root', [/^USER .*$/m, 'USER root'], /USER root is root/],
    ['a user by name', [/^USER .*$/m, 'USER node'], /USER node is not numeric/],
    ['a health check of another path', ["'/livez'", "'/healthz'"], /HEALTHCHECK: does not ask \/livez/],
    [
      'a shell-form health check',
      [/CMD \["node", "-e", (".*")\]/, 'CMD node -e "process.exit(0)" /livez'],
      /HEALTHCHECK: not CMD in exec form/,
    ],
    ['a shell-form ENTRYPOINT', ['ENTRYPOINT ["kstate"]', 'ENTRYPOINT kstate'], /ENTRYPOINT: shell form/],
    ['no STOPSIGNAL', [/^STOPSIGNAL .*\n/m, ''], /STOPSIGNAL is unset/],
    [
      'a latest base',
      [/^FROM node:\S+$/m, 'FROM node:latest'],
      /FROM node:latest: image node:latest is :latest/,
    ],
    [
      'a base by major only',
      [/^FROM node:\S+$/m, 'FROM node:24-slim'],
      /node:24-slim: not an official node image with a full version/,
    ],
    [
      'an unsupported Node',
      [/^FROM node:\S+ AS build$/m, 'FROM node:20.19.0-slim AS build'],
      /Node 20\.19\.0 is not one kstate supports/,
    ],
    [
      'build tools in the final stage',
      [
        'VOLUME /var/lib/kstate',
        'RUN apt-get update && apt-get install -y build-essential\nVOLUME /var/lib/kstate',
      ],
      /final stage: RUN apt-get .* uses a build tool/,
    ],
    ['devDependencies installed', ['npm ci --omit=dev', 'npm ci'], /no build stage runs `npm ci --omit=dev`/],
    ['another port exposed', ['EXPOSE 9464', 'EXPOSE 8080'], /EXPOSE 8080 lacks KSTATE_HTTP_PORT 9464/],
    [
      'HTTP on loopback',
      ['KSTATE_HTTP_HOST=0.0.0.0', 'KSTATE_HTTP_HOST=127.0.0.1'],
      /ENV KSTATE_HTTP_HOST is 127\.0\.0\.1/,
    ],
    [
      'a misspelt variable',
      ['KSTATE_HTTP_PORT=9464', 'KSTATE_HTTP_PROT=9464'],
      /KSTATE_HTTP_PROT is no kstate setting/,
    ],
    [
      'a bad flag value (dockerfile-utils)',
      ['--interval=15s', '--interval=abc'],
      /invalid duration abc \(dockerfile-utils\)/,
    ],
  ];
  for (const [what, [from, to], expected] of cases) {
    test(`catches a broken Dockerfile: ${what}`, () => {
      const text = dockerfileText.replace(from, to);
      assert.notEqual(text, dockerfileText, `the replacement of ${String(from)} applies`);
      assert.match(dockerfileProblems(parseDockerfile(text)).join('\n'), expected);
    });
  }
});

/** A TCP port free on loopback now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

describe("the image's build and start steps, run without Docker", () => {
  const n = names('deploy');
  const input = n.topic('clicks');
  const output = n.topic('counts');
  const jobId = n.stem;
  const store = testS3Store();
  let work: string;
  /** /app of the image. */
  let app: string;
  let admin: Admin;
  const spawned: ChildProcess[] = [];
  /** Paths of the image, as they are here. */
  const mapped = (text: string) =>
    text.replaceAll('/app', app).replaceAll('/var/lib/kstate', join(work, 'state'));

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kstate-deploy-'));
    app = join(work, 'app');
    // The build context: deploy/example with the packed kstate, as docs/deploy.md builds it.
    cpSync(EXAMPLE_DIR, app, {
      recursive: true,
      filter: (src) => !/\/(node_modules|state|checkpoints)$|\.tgz$|package-lock\.json$/.test(src),
    });
    await packRepository(app);
    await sh('npm', ['install', '--package-lock-only', '--no-audit', '--no-fund', '--loglevel=error'], app);
    admin = kafkaClient('deploy-admin').admin();
    await admin.connect();
  });

  after(async () => {
    for (const c of spawned) c.kill('SIGKILL');
    await admin?.disconnect();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  test("the build stage's COPY sources exist in the context, and its RUN steps install the job", async () => {
    const build = dockerfile.stages[0]!;
    for (const copy of build.instructions.filter((i) => i.getKeyword() === 'COPY')) {
      const sources = copy
        .getArguments()
        .map((a) => a.getValue())
        .slice(0, -1);
      if (sources.join(' ') === '.') continue;
      const found = sources.flatMap((s) => globSync(s, { cwd: app }));
      for (const s of sources.filter((s) => !s.includes('*')))
        assert.ok(existsSync(join(app, s)), `COPY ${s}: in the build context`);
      assert.ok(
        found.some((f) => f.endsWith('.tgz')),
        `COPY ${sources.join(' ')}: the packed kstate is there`,
      );
    }
    const env = Object.fromEntries(stageEnv(build));
    for (const run of build.instructions.filter((i) => i.getKeyword() === 'RUN')) {
      await sh('sh', ['-c', mapped(run.getArgumentsContent() ?? '')], app, 600_000, env);
    }
    const installed = JSON.parse(readFileSync(join(app, 'node_modules/kstate/package.json'), 'utf8')) as {
      version: string;
    };
    const repo = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    assert.equal(installed.version, repo.version);
    assert.ok(existsSync(join(app, 'node_modules/.bin/kstate')), 'the kstate bin, on the image PATH');
    assert.ok(
      !existsSync(join(app, 'node_modules/typescript')),
      '--omit=dev: no devDependencies in the image',
    );
    // The job type-checks against the installed kstate (with the repository's TypeScript and Node types,
    // the example's devDependencies, which the image omits).
    await sh(
      process.execPath,
      [
        join(REPO, 'node_modules/typescript/bin/tsc'),
        '-p',
        app,
        '--typeRoots',
        join(REPO, 'node_modules/@types'),
      ],
      app,
    );
  });

  test('ENTRYPOINT + CMD run the job: healthy, ready, exactly once per user, and a graceful stop on SIGTERM', async () => {
    assert.ok(existsSync(join(app, 'node_modules/.bin/kstate')), 'the previous test installed the job');
    const final = dockerfile.final;
    const command = [
      ...(execForm(final.instructions.filter((i) => i.getKeyword() === 'ENTRYPOINT').at(-1)) ?? []),
      ...(execForm(final.instructions.filter((i) => i.getKeyword() === 'CMD').at(-1)) ?? []),
    ].map(mapped);
    const healthcheck = healthcheckCommand(final)!;
    assert.equal(healthcheck[0], 'node');
    mkdirSync(join(work, 'state'), { recursive: true });
    const port = await freePort();
    const imageEnv = Object.fromEntries(
      [...image.env].map(([k, v]) => [k, mapped(v.replace('$PATH', PATH))]),
    );
    let storage = join(work, 'checkpoints');
    const s3: Record<string, string> = {};
    let bucket: string | undefined;
    if (store !== undefined) {
      bucket = uniqueBucketName('deploy');
      const client = new S3Client(s3ClientConfig(store));
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      client.destroy();
      storage = `s3://${bucket}/kstate`;
      Object.assign(s3, { KSTATE_S3_ENDPOINT: store.endpoint });
    }
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      ...imageEnv,
      // What a deployment adds (deploy/kubernetes/05-config.yaml), with this machine's broker and store.
      KSTATE_BROKERS: brokersFromEnv().join(','),
      KSTATE_CHECKPOINT_STORAGE: storage,
      ...s3,
      KSTATE_CHECKPOINT_INTERVAL_MS: '500',
      // Loopback and a free port here, instead of the image's 0.0.0.0:9464.
      KSTATE_HTTP_HOST: '127.0.0.1',
      KSTATE_HTTP_PORT: String(port),
      JOB_ID: jobId,
      JOB_INPUT_TOPIC: input,
      JOB_OUTPUT_TOPIC: output,
    };
    const health = () => spawnSync(healthcheck[0]!, healthcheck.slice(1), { env, timeout: 10_000 }).status;
    assert.notEqual(health(), 0, 'the health check fails while nothing listens');

    await admin.createTopics({
      topics: [input, output].map((topic) => ({ topic, numPartitions: 3 })),
      waitForLeaders: true,
    });
    const users = 30;
    const perUser = 20;
    const expected = new Map<string, unknown[]>();
    let lines = '';
    for (let i = 1; i <= perUser; i++)
      for (let u = 0; u < users; u++) {
        const user = `user-${u}`;
        lines += `${user}\t${JSON.stringify({ user, n: i })}\n`;
        expected.set(user, [...(expected.get(user) ?? []), { n: i, count: i }]);
      }
    // kcat with the Java client's partitioner (murmur2), as the keyed stream without repartition needs.
    const producer = kcatProducer(input, ['-X', 'partitioner=murmur2_random']);
    await producer.write(lines);
    await producer.end();

    // The image's command: `kstate` found on the image's PATH (node_modules/.bin), exec form, no shell.
    const service = spawn(command[0]!, command.slice(1), {
      cwd: app,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    spawned.push(service);
    let log = '';
    service.stdout!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    service.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    const exited = new Promise<number | null>((r) => service.once('exit', (code) => r(code)));
    const early = exited.then((code) => {
      throw new Error(`${command.join(' ')} exited (${code}) early:\n${log.slice(-4000)}`);
    });
    early.catch(() => {});
    const url = (path: string) => `http://127.0.0.1:${port}${path}`;
    const status = (path: string) =>
      fetch(url(path)).then(
        (r) => r.status,
        () => undefined,
      );
    await Promise.race([
      eventually(
        async () => ((await status('/livez')) === 200 ? true : undefined),
        120_000,
        () => log.slice(-2000),
      ),
      early,
    ]);
    assert.equal(health(), 0, 'the HEALTHCHECK command passes while the service runs');
    await Promise.race([
      eventually(
        async () => ((await status('/readyz')) === 200 ? true : undefined),
        180_000,
        () => log.slice(-2000),
      ),
      early,
    ]);
    const records = await Promise.race([
      readCommittedRecords<{ user: string; n: number; count: number }>(output, users * perUser, 240_000),
      early,
    ]);
    const metrics = await (await fetch(url('/metrics'))).text();
    assert.match(metrics, /kstate_/, 'the scrape target serves kstate metrics');

    // SIGTERM to the process the image would run as PID 1: node itself (exec form, #!/usr/bin/env node).
    service.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 0, `exit code after SIGTERM:\n${log.slice(-4000)}`);
    assert.match(log, /"msg":"stopped"/, 'a clean stop');
    assert.notEqual(health(), 0, 'the health check fails once the service is gone');
    assertSequences(
      checkSequences(records, {
        what: 'per user, (n, count) 1..n in offset order',
        key: (v) => v.user,
        expected,
        project: (v) => ({ n: v.n, count: v.count }),
      }),
    );
    // The checkpoints are where the deployment keeps them (S3 when the harness runs a store): the
    // offline command reads them back, a row per checkpoint of each of the 3 tasks.
    const listed = await sh(command[0]!, ['checkpoints', jobId], app, 120_000, env);
    const rows = listed.stdout.trim().split('\n').slice(1);
    assert.equal(
      new Set(rows.map((r) => r.split('\t')[0])).size,
      3,
      `3 tasks' checkpoints:\n${listed.stdout}`,
    );
    if (bucket !== undefined && store !== undefined) {
      const client = new S3Client(s3ClientConfig(store));
      const objects = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: `kstate/${jobId}/` }),
      );
      client.destroy();
      assert.ok((objects.KeyCount ?? 0) > 0, `objects under s3://${bucket}/kstate/${jobId}/`);
    }
  });
});
