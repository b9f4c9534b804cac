/**
 * Issue 16, case 6: `kstate savepoint rescale` and `import` killed part way (SIGKILL, as an operator's
 * timeout or an OOM kill ends them) leave nothing under the target name, and the next run removes
 * what the killed one wrote. No broker: both run `--offline` on a checkpoint directory.
 *
 * The source savepoint is imported from NDJSON (4 partitions, 500 keys); the killed runs write 2,000
 * tasks, which takes a few seconds, and are killed once 300 new task directories exist (a condition,
 * not a sleep). What a reader sees is checked the ways a reader looks: `kstate checkpoints` (the
 * listing), `loadSavepoint` in every task directory (what a task's restore calls), and
 * `readJobSavepoint` (what rescale, export and a job start from a savepoint read).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FilesystemCheckpointStorage, isStreamError, readJobSavepoint } from '../../../../framework/index.ts';
import { S3CheckpointStorage } from '../../../s3/index.ts';
import { NO_TEST_S3, testS3Store } from '../../../s3/local/test-store.ts';
import { createTestBucket, listTestObjects } from '../../../s3/test/buckets.ts';
import { CLI } from '../support/savepoint-helpers.ts';

const JOB = 'atomic-job';
const STAGE = 'kafka-in';
const KEYS = 500;
const BIG = 2000;
const KILL_AT = 300;

function run(args: string[], env: Record<string, string>) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, timeout: 180_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Starts `kstate <args>`, waits until `ready()` holds, kills it with SIGKILL; fails if it ended first. */
async function killMidway(
  args: string[],
  env: Record<string, string>,
  ready: (stderr: string) => Promise<boolean>,
) {
  const child: ChildProcess = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  let exited: number | null | undefined;
  const exit = new Promise<void>((r) =>
    child.on('exit', (code) => {
      exited = code;
      r();
    }),
  );
  const end = Date.now() + 120_000;
  while (!(await ready(stderr))) {
    if (exited !== undefined)
      assert.fail(`kstate ${args.join(' ')} ended (${exited}) before the kill:\n${stderr}`);
    if (Date.now() > end) assert.fail(`kstate ${args.join(' ')} did not get far enough in 120 s:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(exited, undefined, `it ended before the kill:\n${stderr}`);
  child.kill('SIGKILL');
  await exit;
  return stderr;
}

/** The NDJSON of one keyed value state of `KEYS` keys on 4 partitions (an export's layout), in `dir`/ndjson. */
async function writeNdjson(dir: string): Promise<string> {
  const nd = join(dir, 'ndjson');
  await mkdir(join(nd, 'count'), { recursive: true });
  await writeFile(
    join(nd, 'savepoint.json'),
    JSON.stringify({
      format: 'kstate-savepoint-ndjson',
      version: 1,
      jobId: JOB,
      stages: [{ stage: STAGE, partitions: 4 }],
      states: [
        {
          file: 'count/n.ndjson',
          stage: STAGE,
          operator: 'count',
          state: 'n',
          type: 'keyed',
          kind: 'value',
          serializer: 'json',
          serializerVersion: 1,
        },
      ],
    }),
  );
  await writeFile(
    join(nd, 'count', 'n.ndjson'),
    Array.from({ length: KEYS }, (_, i) => JSON.stringify({ key: `k${i}`, value: i })).join('\n'),
  );
  return nd;
}

describe('savepoint rescale and import are atomic (SIGKILL mid-write)', () => {
  let dir: string;
  let env: Record<string, string>;
  let checkpoints: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sp-atomic-'));
    checkpoints = join(dir, 'checkpoints');
    env = { KSTATE_CHECKPOINT_DIR: checkpoints, KSTATE_STATE_DIR: join(dir, 'state') };
    await mkdir(checkpoints); // the savepoint commands never create it
    // Imported as the 4-partition source savepoint 'sp'.
    const nd = await writeNdjson(dir);
    const imported = await run(['savepoint', 'import', JOB, '--from', nd, '--as', 'sp'], env);
    assert.equal(imported.code, 0, imported.stderr);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const taskDirs = async (job = JOB) =>
    (await readdir(join(checkpoints, job)).catch(() => [])).filter((t) => /-p\d+$/.test(t));
  const newTaskDirs = async (from: number) =>
    (await taskDirs()).filter((t) => Number(t.slice(`${STAGE}-p`.length)) >= from).length;

  /** Rows of `kstate checkpoints` for savepoint `name`. */
  async function listed(name: string, job = JOB): Promise<number> {
    const r = await run(['checkpoints', job], env);
    if (r.code === 69) return 0; // no task of the job has anything
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.split('\t')[5] === name).length;
  }

  /** What a restore and a savepoint reader see of `name`: no task's part, and no savepoint. */
  async function invisible(name: string, job = JOB): Promise<void> {
    const storage = new FilesystemCheckpointStorage({ directory: checkpoints });
    const tasks = await taskDirs(job);
    const seen: string[] = [];
    for (const taskId of tasks) {
      try {
        await storage.loadSavepoint(name, { jobId: job, taskId });
        seen.push(taskId);
      } catch (e) {
        if (!isStreamError(e, 'CHECKPOINT_NOT_FOUND')) throw e;
      }
    }
    assert.deepEqual(
      seen.slice(0, 5),
      [],
      `${seen.length} of ${tasks.length} tasks restore a part of '${name}'`,
    );
    await assert.rejects(readJobSavepoint(storage, job, tasks, name), (e) =>
      isStreamError(e, 'CHECKPOINT_NOT_FOUND'),
    );
  }

  /** Every data file in the job's task directories is listed by a metadata file; no write record is left. */
  async function noLeftovers(job = JOB): Promise<void> {
    const storage = new FilesystemCheckpointStorage({ directory: checkpoints });
    const orphans: string[] = [];
    for (const taskId of await taskDirs(job)) {
      const scope = { jobId: job, taskId };
      const metas = [...(await storage.list(scope)), ...(await storage.listSavepoints(scope))];
      const listed = new Set(metas.flatMap((m) => m.files.map((f) => f.path.split('/').pop())));
      const files = await readdir(join(checkpoints, job, taskId, 'files')).catch(() => []);
      for (const f of files) if (!listed.has(f)) orphans.push(`${taskId}/${f}`);
      if (metas.length === 0) orphans.push(`${taskId}/ (a directory without a checkpoint or savepoint)`);
    }
    assert.deepEqual(orphans.slice(0, 5), [], `${orphans.length} files or directories left over`);
    const records = await readdir(join(checkpoints, job, '_savepoint-writes', 'savepoints')).catch(() => []);
    assert.deepEqual(records, []);
  }

  test('rescale to 2,000 killed part way: nothing under the name; the rerun succeeds and removes what it left', async () => {
    const args = ['savepoint', 'rescale', JOB, 'sp', '--to', String(BIG), '--as', 'big', '--offline'];
    const t0 = Date.now();
    const stderr = await killMidway(args, env, async () => (await newTaskDirs(4)) >= KILL_AT);
    const killedAfter = Date.now() - t0;
    const dirsLeft = await newTaskDirs(4);
    assert.ok(dirsLeft >= KILL_AT, `${dirsLeft}`);

    assert.equal(
      await listed('big'),
      0,
      `kstate checkpoints lists parts of 'big' after the kill (${dirsLeft} new task directories)`,
    );
    await invisible('big');

    const t1 = Date.now();
    const again = await run(args, env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /removed the leftovers of an interrupted write of savepoint 'big'/);
    assert.equal(JSON.parse(again.stdout).tasks.length, BIG);
    assert.equal(await listed('big'), BIG);
    const storage = new FilesystemCheckpointStorage({ directory: checkpoints });
    const sp = await readJobSavepoint(storage, JOB, await taskDirs(), 'big');
    const keys = sp.stages[0]!.tasks.reduce(
      (n, t) => n + t.keyed.states.reduce((m, s) => m + s.entries.length, 0),
      0,
    );
    assert.equal(keys, KEYS);
    await noLeftovers();
    console.log(
      `killed after ${killedAfter} ms with ${dirsLeft} new task directories; rerun ${Date.now() - t1} ms; stderr of the killed run:\n${stderr}`,
    );
  });

  test('a smaller rescale after a killed big one removes all its task directories', async () => {
    const job = 'atomic-small';
    const imported = await run(
      ['savepoint', 'import', job, '--from', join(dir, 'ndjson'), '--as', 'sp'],
      env,
    );
    assert.equal(imported.code, 0, imported.stderr);
    const stderr = await killMidway(
      ['savepoint', 'rescale', job, 'sp', '--to', String(BIG), '--as', 'big', '--offline'],
      env,
      async () => (await taskDirs(job)).length >= KILL_AT,
    );
    assert.equal(await listed('big', job), 0);
    await invisible('big', job);
    const small = await run(
      ['savepoint', 'rescale', job, 'sp', '--to', '6', '--as', 'small', '--offline'],
      env,
    );
    assert.equal(small.code, 0, small.stderr);
    assert.match(small.stderr, /removed the leftovers of an interrupted write of savepoint 'big'/, stderr);
    assert.equal(await listed('small', job), 6);
    assert.deepEqual((await taskDirs(job)).length, 6);
    await noLeftovers(job);
  });

  test('rescale killed after its commit point: the savepoint is whole for the next reader (export), which finishes it', async () => {
    const job = 'atomic-late';
    const imported = await run(
      ['savepoint', 'import', job, '--from', join(dir, 'ndjson'), '--as', 'sp'],
      env,
    );
    assert.equal(imported.code, 0, imported.stderr);
    await killMidway(
      ['savepoint', 'rescale', job, 'sp', '--to', String(BIG), '--as', 'late', '--offline'],
      { ...env, KSTATE_PROGRESS_INTERVAL_MS: '50' },
      async (e) => /committed; metadata of \d+ of 2000/.test(e),
    );
    const before = await listed('late', job);
    assert.ok(before < BIG, `${before} parts listed right after the kill`);
    const out = join(dir, 'late-export');
    const exported = await run(['savepoint', 'export', job, 'late', '--out', out], env);
    assert.equal(exported.code, 0, exported.stderr);
    assert.equal(await listed('late', job), BIG);
    const storage = new FilesystemCheckpointStorage({ directory: checkpoints });
    const sp = await readJobSavepoint(storage, job, await taskDirs(job), 'late');
    assert.equal(
      sp.stages[0]!.tasks.reduce((n, t) => n + t.keyed.states.reduce((m, x) => m + x.entries.length, 0), 0),
      KEYS,
    );
    await noLeftovers(job);
    console.log(
      `after the kill past the commit point: ${before} of ${BIG} parts listed; after export: ${BIG}`,
    );
  });

  test('import into 2,000 partitions killed part way: nothing under the name; the rerun succeeds', async () => {
    const nd = join(dir, 'ndjson');
    const job = 'atomic-import';
    const args = ['savepoint', 'import', job, '--from', nd, '--as', 'imp', '--partitions', String(BIG)];
    await killMidway(args, env, async () => (await taskDirs(job)).length >= KILL_AT);
    assert.equal(await listed('imp', job), 0);
    await invisible('imp', job);
    const again = await run(
      ['savepoint', 'import', job, '--from', nd, '--as', 'imp', '--partitions', '5'],
      env,
    );
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /removed the leftovers of an interrupted write of savepoint 'imp'/);
    assert.equal(await listed('imp', job), 5);
    await noLeftovers(job);
  });
});

const store = testS3Store();

describe('savepoint rescale is atomic on S3 (SIGKILL mid-write; S3Proxy)', {
  skip: store ? false : NO_TEST_S3,
}, () => {
  let dir: string;
  let env: Record<string, string>;
  let bucket: string;
  const job = 'atomic-s3';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sp-atomic-s3-'));
    bucket = await createTestBucket(store!, 'sp-atomic');
    env = {
      KSTATE_CHECKPOINT_STORAGE: `s3://${bucket}/checkpoints`,
      KSTATE_S3_ENDPOINT: store!.endpoint,
      KSTATE_STATE_DIR: join(dir, 'state'),
      KSTATE_PROGRESS_INTERVAL_MS: '100',
    };
    const imported = await run(
      ['savepoint', 'import', job, '--from', await writeNdjson(dir), '--as', 'sp'],
      env,
    );
    assert.equal(imported.code, 0, imported.stderr);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('rescale to 1,000 killed part way: nothing under the name; the rerun succeeds and removes what it left', async () => {
    const storage = () =>
      S3CheckpointStorage.fromUri(`s3://${bucket}/checkpoints`, { endpoint: store!.endpoint });
    const args = ['savepoint', 'rescale', job, 'sp', '--to', '1000', '--as', 'big', '--offline'];
    const written = (stderr: string) =>
      Math.max(0, ...[...stderr.matchAll(/ (\d+) of 1000 tasks written/g)].map((m) => Number(m[1])));
    const stderr = await killMidway(args, env, async (e) => written(e) >= 200);
    const listed = async (name: string) => {
      const r = await run(['checkpoints', job], env);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.split('\n').filter((l) => l.split('\t')[5] === name).length;
    };
    assert.equal(await listed('big'), 0, stderr);
    const s = storage();
    const tasks = (await s.tasks(job)).filter((t) => /-p\d+$/.test(t));
    assert.ok(tasks.length > 200, `${tasks.length} task prefixes after the kill`);
    for (const taskId of tasks)
      await assert.rejects(s.loadSavepoint('big', { jobId: job, taskId }), (e) =>
        isStreamError(e, 'CHECKPOINT_NOT_FOUND'),
      );
    await assert.rejects(readJobSavepoint(s, job, tasks, 'big'), (e) =>
      isStreamError(e, 'CHECKPOINT_NOT_FOUND'),
    );

    const again = await run(args, env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /removed the leftovers of an interrupted write of savepoint 'big'/);
    assert.equal(await listed('big'), 1000);
    // Every state object in the bucket is listed by a metadata object; no write record is left.
    const objects = (await listTestObjects(store!, bucket, `checkpoints/${job}`)).map((o) => o.key);
    const referenced = new Set<string>();
    for (const taskId of (await s.tasks(job)).filter((t) => /-p\d+$/.test(t)))
      for (const m of await s.listSavepoints({ jobId: job, taskId }))
        for (const f of m.files) referenced.add(f.path);
    const orphans = objects.filter((k) => k.includes('/files/') && !referenced.has(`${job}/${k}`));
    assert.deepEqual(orphans.slice(0, 5), [], `${orphans.length} of ${objects.length} objects left over`);
    assert.deepEqual(
      objects.filter((k) => k.startsWith('_savepoint-writes/')),
      [],
    );
    s.close?.();
  });
});
