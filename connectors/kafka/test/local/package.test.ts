/**
 * The installable package (issue 13), as a user gets it: `npm pack` builds the tarball (prepack runs
 * `npm run build`), which is installed into a fresh project in the OS temp directory (outside the
 * repository, so nothing can resolve to its sources). There a job written against `kstate` and
 * `kstate/kafka` type-checks with the project's own TypeScript (library checking on, so the shipped
 * .d.ts are checked too; a job with a type error is refused), and runs with `npx kstate run job.ts`
 * against the test broker. Its input is produced by kcat (librdkafka); its committed output, read back
 * with kcat in read_committed mode, holds per key the counts 1..n in offset order.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Admin } from '../../internal/kafkajs.ts';
import { kcatProducer } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { groupGone, PATH, packRepository, REPO, sh } from '../support/package-helpers.ts';
import { assertSequences, checkSequences, readCommittedRecords } from '../support/sequence-check.ts';

const JOB = (input: string, output: string, jobId: string) => `import {
  type Collector,
  type KeyedContext,
  type KeyedProcessFunction,
  StreamJob,
  valueState,
} from 'kstate';
import { KafkaSink, KafkaSource, type ServiceConfig } from 'kstate/kafka';

interface Click { readonly user: string; readonly n: number }
interface Counted { readonly user: string; readonly n: number; readonly count: number }

class CountPerUser implements KeyedProcessFunction<string, Click, Counted> {
  readonly #count = valueState<number>('count');
  processElement(c: Click, ctx: KeyedContext<string>, out: Collector<Counted>): void {
    const count = ctx.getState(this.#count);
    const next = (count.value() ?? 0) + 1;
    count.update(next);
    out.collect({ user: c.user, n: c.n, count: next });
  }
}

export default function job(config: ServiceConfig): StreamJob {
  const brokers: readonly string[] = config.brokers;
  if (brokers.length === 0) throw new Error('no brokers');
  const job = new StreamJob(${JSON.stringify(jobId)});
  job
    .source(new KafkaSource<Click>({ topic: ${JSON.stringify(input)} }))
    .keyBy((c) => c.user)
    .process(new CountPerUser(), { uid: 'count-per-user' })
    .sinkTo(
      new KafkaSink<Counted>({
        topic: ${JSON.stringify(output)},
        encode: (c) => ({ key: c.user, value: JSON.stringify(c) }),
      }),
    );
  return job;
}
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2023',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    types: ['node'],
    erasableSyntaxOnly: true,
    verbatimModuleSyntax: true,
  },
  include: ['*.ts'],
};

describe('the npm package, installed into a fresh project', () => {
  const n = names('package');
  const input = n.topic('clicks');
  const output = n.topic('counts');
  let work: string;
  let project: string;
  let tarball: string;
  let admin: Admin;
  const spawned: ChildProcess[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'kstate-package-'));
    project = join(work, 'user-project');
    tarball = await packRepository(work);
    const repoPkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as {
      devDependencies: Record<string, string>;
    };
    await sh('mkdir', ['-p', project], work);
    await writeFile(
      join(project, 'package.json'),
      JSON.stringify({ name: 'user-project', private: true, type: 'module' }, null, 2),
    );
    await sh(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        '--loglevel=error',
        tarball,
        `typescript@${repoPkg.devDependencies.typescript}`,
        `@types/node@${repoPkg.devDependencies['@types/node']}`,
      ],
      project,
    );
    admin = kafkaClient('package-admin').admin();
    await admin.connect();
  });

  after(async () => {
    for (const c of spawned) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // the group is gone
      }
    }
    await admin?.disconnect();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  test('the tarball holds the built package and nothing of the repository beside it', async () => {
    const { stdout } = await sh('tar', ['-tvzf', tarball], work);
    const entries = stdout
      .trim()
      .split('\n')
      .map((line) => ({
        mode: line.split(/\s+/)[0]!,
        path: line
          .split(/\s+/)
          .at(-1)!
          .replace(/^package\//, ''),
      }));
    const paths = entries.map((e) => e.path);
    for (const need of [
      'package.json',
      'README.md',
      'LICENSE',
      'dist/framework/index.js',
      'dist/framework/index.d.ts',
      'dist/connectors/kafka/index.js',
      'dist/connectors/kafka/index.d.ts',
      'dist/framework/testing/index.js',
      'dist/connectors/kafka/cli/bin.js',
      'dist/framework/node/support.js',
    ])
      assert.ok(paths.includes(need), `the tarball lacks ${need}`);
    const foreign = paths.filter(
      (p) =>
        !/^(package\.json|README\.md|LICENSE|dist\/.+\.(js|d\.ts|js\.map))$/.test(p) ||
        /\.test\.|\/test\//.test(p),
    );
    assert.deepEqual(foreign, [], 'files that are not the package');
    assert.ok(
      !paths.some((p) => p.endsWith('.ts') && !p.endsWith('.d.ts')),
      'TypeScript sources in the tarball',
    );
    const bin = entries.find((e) => e.path === 'dist/connectors/kafka/cli/bin.js')!;
    assert.match(bin.mode, /^-rwx/, `the bin is not executable: ${bin.mode}`);
    // The installed copy: the bin is linked, and kstate resolves into node_modules, not the repository.
    const resolved = await sh(
      process.execPath,
      ['--input-type=module', '-e', "console.log(import.meta.resolve('kstate'))"],
      project,
    );
    assert.match(resolved.stdout, /user-project\/node_modules\/kstate\/dist\/framework\/index\.js/);
  });

  test('a job against kstate and kstate/kafka type-checks (and a wrong one does not)', async () => {
    await writeFile(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    await writeFile(join(project, 'job.ts'), JOB(input, output, n.stem));
    const tsc = join(project, 'node_modules', 'typescript', 'bin', 'tsc');
    await sh(process.execPath, [tsc, '-p', project], project);
    await writeFile(
      join(project, 'wrong.ts'),
      JOB(input, output, n.stem).replace('count.update(next)', "count.update('one')"),
    );
    await assert.rejects(sh(process.execPath, [tsc, '-p', project], project), /wrong\.ts.*TS2345/s);
    await rm(join(project, 'wrong.ts'));
  });

  test('npx kstate run job.ts commits every key 1..n exactly once', async () => {
    const users = 50;
    const perUser = 40;
    await admin.createTopics({
      topics: [input, output].map((topic) => ({ topic, numPartitions: 4 })),
      waitForLeaders: true,
    });
    // kcat with the Java client's partitioner (murmur2), as the keyed stream without repartition needs.
    const producer = kcatProducer(input, ['-X', 'partitioner=murmur2_random']);
    const expected = new Map<string, unknown[]>();
    let lines = '';
    for (let i = 1; i <= perUser; i++) {
      for (let u = 0; u < users; u++) {
        const user = `user-${u}`;
        lines += `${user}\t${JSON.stringify({ user, n: i })}\n`;
        const seq = expected.get(user) ?? [];
        seq.push({ n: i, count: i });
        expected.set(user, seq);
      }
    }
    await producer.write(lines);
    await producer.end();

    const service = spawn('npx', ['--no-install', 'kstate', 'run', 'job.ts'], {
      cwd: project,
      env: {
        ...process.env,
        PATH,
        KSTATE_BROKERS: brokersFromEnv().join(','),
        KSTATE_STATE_DIR: join(work, 'state'),
        KSTATE_CHECKPOINT_DIR: join(work, 'checkpoints'),
        KSTATE_CHECKPOINT_INTERVAL_MS: '500',
        KSTATE_HTTP_PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, signalled as a whole as a terminal's Ctrl-C or a supervisor does: npx
      // exits at once on a signal and does not wait for the command it started.
      detached: true,
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
      throw new Error(`npx kstate run exited (${code}) before its output was committed:\n${log}`);
    });
    early.catch(() => {}); // read by the race only; npx exits on the SIGTERM below as well
    const records = await Promise.race([
      readCommittedRecords<{ user: string; n: number; count: number }>(output, users * perUser, 240_000),
      early,
    ]);
    process.kill(-service.pid!, 'SIGTERM');
    await groupGone(service.pid!, 120_000);
    assert.match(log, /"msg":"stopped"/, `kstate run did not stop cleanly on SIGTERM:\n${log.slice(-4000)}`);
    assertSequences(
      checkSequences(records, {
        what: 'per user, (n, count) 1..n in offset order',
        key: (v) => v.user,
        expected,
        project: (v) => ({ n: v.n, count: v.count }),
      }),
    );
    assert.equal(records.length, users * perUser);
  });

  test("the README's first command, npx kstate demo, runs the demo job from the installed package", async () => {
    const { stdout } = await sh('npx', ['--no-install', 'kstate', 'demo'], project, 300_000, {
      KAFKA_BROKERS: brokersFromEnv().join(','),
      DEMO_SECONDS: '6',
      DEMO_RATE: '500',
    });
    assert.match(stdout, /demo: verified: \d+ customers, \d+ orders; each order counted exactly once/);
  });
});
