/**
 * `kstate checkpoints | inspect | savepoint` against S3 checkpoint storage (issue 14): the savepoint job
 * (jobs/savepoint-job.ts) run by `kstate run` with KSTATE_CHECKPOINT_STORAGE=s3://bucket/prefix and
 * KSTATE_S3_ENDPOINT (S3Proxy, started by scripts/kafka/with-broker.ts), no checkpoint directory.
 *
 * 1. On 4 partitions; a savepoint over HTTP (`kstate savepoint <name> --port`); `checkpoints` lists
 *    every task's checkpoints and the savepoint; `inspect` reads a key's value from S3; `rescale`
 *    re-shards it 4 -> 2 onto a 2-partition topic; the job restarts from it and goes on: every key's
 *    committed outputs (kcat, read_committed, offset order) are its counts 1..n and running sums.
 * 2. `export --out s3://...` writes the same objects, byte for byte, as an export to a directory;
 *    `import --from s3://...` builds a savepoint of another job on 3 partitions, which continues
 *    every key's count and sum from the exported values.
 * 3. A missing bucket, refused credentials and an unreachable endpoint for every command: exit 69 / 77 /
 *    69 with one line naming the bucket or endpoint; a malformed bucket or endpoint 78 naming the
 *    variable (or the option: --out, --from).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyedStateValue, keyId, readJobSavepoint } from '../../../../framework/index.ts';
import { S3CheckpointStorage } from '../../../s3/index.ts';
import { NO_TEST_S3, testS3Store } from '../../../s3/local/test-store.ts';
import { createTestBucket, listTestObjects, readTestObject } from '../../../s3/test/buckets.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/savepoint-job.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { cli, expectedState, JOB, KEYS, produce, startJob } from '../support/savepoint-helpers.ts';
import {
  assertSequences,
  checkSequences,
  kcatRecords,
  readCommittedRecords,
} from '../support/sequence-check.ts';

const store = testS3Store();
const P1 = 2000;
const P2 = 1500;
const P3 = 1000;

/** Per key, in input order, the outputs `{ n, count, sum }` of records [from, to) after `base`. */
function expectedOutputs(from: number, to: number, base = new Map<string, { count: number; sum: number }>()) {
  const running = new Map([...base].map(([k, v]) => [k, { ...v }]));
  const out = new Map<string, { n: number; count: number; sum: number }[]>();
  for (let n = from; n < to; n++) {
    const k = `k${(n * 7) % KEYS}`;
    const r = running.get(k) ?? { count: 0, sum: 0 };
    r.count++;
    r.sum += n;
    running.set(k, r);
    out.set(k, [...(out.get(k) ?? []), { n, count: r.count, sum: r.sum }]);
  }
  return out;
}

/** A port nothing listens on (now): for an HTTP server to take, or to be refused on. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('kstate CLI with S3 checkpoint storage (real broker, S3Proxy)', {
  skip: store ? false : NO_TEST_S3,
}, () => {
  let dir: string;
  let admin: Admin;
  let bucket: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 's3-cli-'));
    admin = kafkaClient('s3-cli-admin').admin();
    await admin.connect();
    bucket = await createTestBucket(store!, 's3-cli');
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  /** The job's settings: checkpoints in the bucket only (no KSTATE_CHECKPOINT_DIR, nothing on disk). */
  const envOf = (jobId: string, input: string, output: string): Record<string, string> => ({
    SP_JOB_ID: jobId,
    SP_INPUT: input,
    SP_OUTPUT: output,
    KSTATE_BROKERS: brokersFromEnv().join(','),
    KSTATE_STATE_DIR: join(dir, 'state', jobId),
    KSTATE_CHECKPOINT_STORAGE: `s3://${bucket}/checkpoints`,
    KSTATE_S3_ENDPOINT: store!.endpoint,
    KSTATE_CHECKPOINT_INTERVAL_MS: '500',
    KSTATE_HTTP_PORT: '0',
    KSTATE_SHUTDOWN_TIMEOUT_MS: '20000',
    // POST /savepoint is an action: on only with an admin token (docs/service.md).
    KSTATE_ADMIN_TOKEN: 's3-cli-test-admin-token',
  });

  /** Per key, count, sum and buckets of a savepoint in the bucket, read through S3CheckpointStorage. */
  async function savepointState(jobId: string, name: string) {
    const storage = S3CheckpointStorage.fromUri(`s3://${bucket}/checkpoints`, { endpoint: store!.endpoint });
    try {
      const sp = await readJobSavepoint(storage, jobId, await storage.tasks(jobId), name);
      const state = new Map<string, { count: unknown; sum: unknown; buckets: unknown }>();
      for (const t of sp.stages[0]!.tasks) {
        for (let i = 0; i < KEYS; i++) {
          const k = `k${i}`;
          const count = keyedStateValue(t.keyed, 'count-sum/count', keyId(k));
          if (count === undefined) continue;
          assert.ok(!state.has(k), `key ${k} in two tasks of savepoint ${name}`);
          const buckets = keyedStateValue(t.keyed, 'count-sum/buckets', keyId(k)) as Map<number, number>;
          state.set(k, {
            count,
            sum: keyedStateValue(t.keyed, 'count-sum/sum', keyId(k)),
            buckets: [0, 1, 2].map((b) => buckets.get(b) ?? 0),
          });
        }
      }
      return { state, partitions: sp.stages[0]!.partitions };
    } finally {
      storage.close();
    }
  }

  test('checkpoints, inspect, a savepoint rescaled 4 -> 2 and restarted from, exported and imported: all on S3', async () => {
    const n = names('s3 cli');
    const [in4, in2, in3, out, out3] = ['in4', 'in2', 'in3', 'out', 'out3'].map((t) => n.topic(t)) as [
      string,
      string,
      string,
      string,
      string,
    ];
    await admin.createTopics({
      topics: [
        { topic: in4, numPartitions: 4 },
        { topic: in2, numPartitions: 2 },
        { topic: in3, numPartitions: 3 },
        { topic: out, numPartitions: 2 },
        { topic: out3, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    const job = n.group('job');
    const env = envOf(job, in4, out);

    // 1. Four partitions, then a savepoint asked for over HTTP while the job runs.
    await produce(in4, 0, P1);
    const port = String(await freePort());
    const first = startJob({ ...env, KSTATE_HTTP_PORT: port });
    try {
      const got = await readCommittedRecords<Out>(out, P1, 90_000);
      assert.equal(got.length, P1, first.out.slice(-20).join('\n'));
      const sp = await cli(['savepoint', 'sp1', '--port', port], env);
      assert.equal(sp.code, 0, `${sp.stderr}\n${first.out.slice(-20).join('\n')}`);
    } finally {
      assert.equal(await first.stop(), 0, first.out.slice(-20).join('\n'));
    }
    const objects = await listTestObjects(store!, bucket, `checkpoints/${job}`);
    for (let p = 0; p < 4; p++)
      assert.ok(
        objects.some((o) => o.key.startsWith(`input-p${p}/`)),
        `task input-p${p} has objects in the bucket`,
      );
    assert.ok(!existsSync(join(process.cwd(), 'checkpoints', job)), 'nothing went to a local ./checkpoints');

    // checkpoints: every task's committed checkpoints and the savepoint, read from the bucket.
    const listed = await cli(['checkpoints', job], env);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = listed.stdout
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t'));
    const tasks = ['input-p0', 'input-p1', 'input-p2', 'input-p3'];
    assert.deepEqual([...new Set(rows.map((r) => r[0]))], tasks);
    for (const t of tasks) {
      assert.ok(
        rows.some((r) => r[0] === t && r[5] === 'sp1'),
        `${t}: savepoint sp1 listed\n${listed.stdout}`,
      );
      assert.ok(
        rows.some((r) => r[0] === t && r[5] === '' && Number(r[3]) > 0),
        `${t}: a checkpoint listed`,
      );
    }

    // inspect: one key's value in the savepoint, and a task's latest checkpoint.
    const expected1 = expectedState(P1);
    const k7 = await cli(
      ['inspect', job, '--savepoint', 'sp1', '--state', 'count-sum/count', '--key', 'k7'],
      env,
    );
    assert.equal(k7.code, 0, k7.stderr);
    const row = JSON.parse(k7.stdout) as { task: string; key: string; value: number };
    assert.deepEqual([row.key, row.value], ['k7', expected1.get('k7')!.count]);
    const report = await cli(['inspect', job, '--task', 'input-p1'], env);
    assert.equal(report.code, 0, report.stderr);
    assert.match(report.stdout, /count-sum\/count/);

    // rescale 4 -> 2: Kafka cannot take partitions away, so the job moves to a 2-partition topic.
    const rescaled = await cli(
      ['savepoint', 'rescale', job, 'sp1', '--to', '2', '--as', 'sp1-2', '--topic', `${in4}=${in2}`],
      env,
    );
    assert.equal(rescaled.code, 0, rescaled.stderr);
    const r = JSON.parse(rescaled.stdout) as {
      stages: { from: number; to: number }[];
      tasks: string[];
      checked: boolean;
    };
    assert.deepEqual(
      [r.stages[0]!.from, r.stages[0]!.to, r.tasks, r.checked],
      [4, 2, ['input-p0', 'input-p1'], true],
    );

    // The job restarts from it on 2 partitions and goes on.
    await produce(in2, P1, P2);
    const env2 = envOf(job, in2, out);
    const second = startJob(env2, ['--from-savepoint', 'sp1-2', '--savepoint-on-stop', 'final']);
    try {
      const got = await readCommittedRecords<Out>(out, P1 + P2, 90_000);
      assert.equal(got.length, P1 + P2, second.out.slice(-20).join('\n'));
    } finally {
      assert.equal(await second.stop(), 0, second.out.slice(-20).join('\n'));
    }
    const seq = checkSequences(await kcatRecords<Out>(out), {
      what: 'per key, in offset order: n, count 1..c, running sum',
      key: (v) => v.k,
      expected: expectedOutputs(0, P1 + P2),
      project: (v) => ({ n: v.n, count: v.count, sum: v.sum }),
    });
    assertSequences(seq);
    console.log(
      `# ${seq.records} committed outputs of ${seq.keys} keys in sequence across 4 -> 2 partitions on S3`,
    );
    const fin = await savepointState(job, 'final');
    assert.equal(fin.partitions, 2);
    assert.deepEqual(fin.state, expectedState(P1 + P2));

    // 2. export to S3 and to a directory: the same files, byte for byte.
    const prefix = `exports/${job}`;
    const exported = await cli(
      ['savepoint', 'export', job, 'final', '--out', `s3://${bucket}/${prefix}`],
      env2,
    );
    assert.equal(exported.code, 0, exported.stderr);
    assert.equal((JSON.parse(exported.stdout) as { out: string }).out, `s3://${bucket}/${prefix}`);
    const local = join(dir, 'export-final');
    const exportedLocal = await cli(['savepoint', 'export', job, 'final', '--out', local], env2);
    assert.equal(exportedLocal.code, 0, exportedLocal.stderr);
    const onS3 = await listTestObjects(store!, bucket, prefix);
    const localFiles = (await readdir(local, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name).slice(local.length + 1))
      .sort();
    assert.deepEqual(
      onS3.map((o) => o.key),
      [
        'count-sum/buckets.ndjson',
        'count-sum/count.ndjson',
        'count-sum/sum.ndjson',
        'savepoint.json',
        'seen/seen.ndjson',
      ],
    );
    assert.deepEqual(
      localFiles,
      onS3.map((o) => o.key),
    );
    for (const f of localFiles)
      assert.equal(
        await readTestObject(store!, bucket, `${prefix}/${f}`),
        await readFile(join(local, f), 'utf8'),
        `${f}: the object equals the file`,
      );
    const again = await cli(['savepoint', 'export', job, 'final', '--out', `s3://${bucket}/${prefix}`], env2);
    assert.equal(again.code, 78, again.stderr);
    assert.match(again.stderr, new RegExp(`export target s3://${bucket}/${prefix} is not empty`));

    // import from S3 into another job on 3 partitions, which continues every key from the export.
    const job3 = n.group('job3');
    const env3 = envOf(job3, in3, out3);
    const imported = await cli(
      [
        'savepoint',
        'import',
        job3,
        '--from',
        `s3://${bucket}/${prefix}`,
        '--as',
        'boot',
        '--partitions',
        '3',
      ],
      env3,
    );
    assert.equal(imported.code, 0, imported.stderr);
    assert.deepEqual((JSON.parse(imported.stdout) as { tasks: string[] }).tasks, [
      'input-p0',
      'input-p1',
      'input-p2',
    ]);
    await produce(in3, P1 + P2, P3);
    const third = startJob(env3, ['--from-savepoint', 'boot']);
    try {
      const got = await readCommittedRecords<Out>(out3, P3, 90_000);
      assert.equal(got.length, P3, third.out.slice(-20).join('\n'));
    } finally {
      assert.equal(await third.stop(), 0, third.out.slice(-20).join('\n'));
    }
    const base = new Map([...expectedState(P1 + P2)].map(([k, v]) => [k, { count: v.count, sum: v.sum }]));
    const seq3 = checkSequences(await kcatRecords<Out>(out3), {
      what: 'per key after the import: counts and sums continue from the export',
      key: (v) => v.k,
      expected: expectedOutputs(P1 + P2, P1 + P2 + P3, base),
      project: (v) => ({ n: v.n, count: v.count, sum: v.sum }),
    });
    assertSequences(seq3);
    console.log(
      `# import from S3: ${seq3.records} outputs of ${seq3.keys} keys continue the exported counts`,
    );
  });

  test('a missing bucket, refused credentials, an unreachable endpoint: 69 / 77 / 69 for every command; malformed settings 78', async () => {
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const missing = `kstate-missing-${randomBytes(4).toString('hex')}`;
    const job = 'no-job';
    const base = envOf(job, 'in', 'out');
    const nowhere = join(dir, 'nowhere');
    const commands: [string, string[]][] = [
      ['checkpoints', ['checkpoints', job]],
      ['inspect', ['inspect', job, '--state', 'count-sum/count', '--key', 'k1']],
      ['rescale', ['savepoint', 'rescale', job, 'sp', '--to', '2', '--as', 'x', '--offline']],
      ['export', ['savepoint', 'export', job, 'sp', '--out', nowhere]],
      ['import', ['savepoint', 'import', job, '--from', nowhere, '--as', 'x']],
    ];
    const cases: { what: string; env: Record<string, string>; code: number; stderr: RegExp }[] = [
      {
        what: 'missing bucket',
        env: { KSTATE_CHECKPOINT_STORAGE: `s3://${missing}/checkpoints` },
        code: 69,
        stderr: new RegExp(
          `^kstate: cannot check bucket "${missing}": bucket "${missing}" does not exist at ${store!.endpoint}\\. Create it`,
        ),
      },
      {
        what: 'refused credentials',
        env: { AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
        code: 77,
        stderr: new RegExp(
          `^kstate: cannot check bucket "${bucket}": the object store at ${store!.endpoint} refused it: .*Check the credentials`,
        ),
      },
      {
        what: 'unreachable endpoint',
        env: { KSTATE_S3_ENDPOINT: endpoint },
        code: 69,
        stderr: new RegExp(
          `^kstate: cannot check bucket "${bucket}": the object store at ${endpoint} cannot be reached .*KSTATE_S3_ENDPOINT.*The job's committed checkpoints are not affected`,
        ),
      },
      {
        what: 'malformed bucket',
        env: { KSTATE_CHECKPOINT_STORAGE: 's3://Bad_Bucket' },
        code: 78,
        stderr:
          /^kstate: environment variable KSTATE_CHECKPOINT_STORAGE is "s3:\/\/Bad_Bucket"; allowed: a directory path, or s3:\/\//,
      },
      {
        what: 'malformed endpoint',
        env: { KSTATE_S3_ENDPOINT: 'localhost:9000' },
        code: 78,
        stderr:
          /^kstate: environment variable KSTATE_S3_ENDPOINT is "localhost:9000"; allowed: an http\(s\):\/\/ URL/,
      },
    ];
    const runs = cases.flatMap((c) => commands.map(([name, args]) => ({ c, name, args })));
    // A few at a time: each is a node process loading the AWS SDK.
    const results: { what: string; code: number; stderr: string; want: number; re: RegExp }[] = [];
    for (let i = 0; i < runs.length; i += 5) {
      results.push(
        ...(await Promise.all(
          runs.slice(i, i + 5).map(async ({ c, name, args }) => {
            const res = await cli(args, { ...base, ...c.env });
            return {
              what: `${c.what}: ${name}`,
              code: res.code,
              stderr: res.stderr,
              want: c.code,
              re: c.stderr,
            };
          }),
        )),
      );
    }
    // The export target and the import source: the option is named.
    const targets: {
      what: string;
      args: string[];
      env?: Record<string, string>;
      want: number;
      re: RegExp;
    }[] = [
      {
        what: 'export --out s3:// of a missing bucket',
        args: ['savepoint', 'export', job, 'sp', '--out', `s3://${missing}/x`],
        want: 69,
        re: new RegExp(`bucket "${missing}" does not exist.*fix the bucket in --out`),
      },
      {
        what: 'import --from s3:// of a missing bucket',
        args: ['savepoint', 'import', job, '--from', `s3://${missing}/x`, '--as', 'y'],
        want: 69,
        re: new RegExp(`bucket "${missing}" does not exist.*fix the bucket in --from`),
      },
      {
        what: 'import --from s3:// without an export',
        args: ['savepoint', 'import', job, '--from', `s3://${bucket}/nothing-here`, '--as', 'y'],
        want: 69,
        re: new RegExp(
          `s3://${bucket}/nothing-here/savepoint\\.json does not exist: --from must be a directory or s3:// prefix written by 'kstate savepoint export'`,
        ),
      },
      {
        what: 'export --out s3:// refused credentials',
        args: ['savepoint', 'export', job, 'sp', '--out', `s3://${bucket}/x`],
        env: {
          AWS_SECRET_ACCESS_KEY: 'not-the-secret',
          KSTATE_CHECKPOINT_STORAGE: join(dir, 'local-checkpoints'),
        },
        want: 77,
        re: /refused it/,
      },
      {
        what: 'export --out malformed',
        args: ['savepoint', 'export', job, 'sp', '--out', 's3://Bad_Bucket/x'],
        want: 78,
        re: /^kstate: --out "s3:\/\/Bad_Bucket\/x": bucket "Bad_Bucket" is not a valid S3 bucket name/,
      },
      {
        what: 'run with a missing bucket',
        args: ['run', JOB],
        env: { KSTATE_CHECKPOINT_STORAGE: `s3://${missing}/checkpoints` },
        want: 69,
        re: new RegExp(`bucket "${missing}" does not exist`),
      },
      {
        what: 'run with refused credentials',
        args: ['run', JOB],
        env: { AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
        want: 77,
        re: /refused it/,
      },
    ];
    results.push(
      ...(await Promise.all(
        targets.map(async (t) => {
          const res = await cli(t.args, { ...base, ...t.env });
          return { what: t.what, code: res.code, stderr: res.stderr, want: t.want, re: t.re };
        }),
      )),
    );
    const wrong = results.filter(
      (x) => x.code !== x.want || !x.re.test(x.stderr.trim().split('\n').at(-1) ?? ''),
    );
    for (const x of results)
      console.log(`# ${x.what}: exit ${x.code} (want ${x.want}): ${x.stderr.trim().slice(0, 160)}`);
    assert.deepEqual(
      wrong.map((x) => `${x.what}: exit ${x.code}, want ${x.want}: ${x.stderr.trim()}`),
      [],
    );
    for (const x of results)
      assert.equal(x.stderr.trim().split('\n').length, 1, `${x.what}: one line on stderr\n${x.stderr}`);
  });
});
