/**
 * The failure policy of `kstate run` (issue 16), from outside, on the harness broker: a job that can
 * never succeed ends, so that a supervisor learns a person is needed. Each case runs the service as a
 * process (jobs/user-error-job.ts, input written by kcat), and reads what it committed with kcat
 * (read_committed):
 *
 * - a key selector that throws on a record (JSON of another shape; a null value) under the default
 *   policy 'fail': the task restarts as the restart strategy allows (KSTATE_RESTART_ATTEMPTS=2), then
 *   the service leaves the group (its member is gone at once, not after the session timeout), logs
 *   one `job failed` line (task, code, cause, exit, action) and exits 1; before, it restarted forever;
 * - a wrong --from-savepoint (the savepoint of one task missing; one of its files corrupt): exit at
 *   once, 69 and 65, no restart; before, the task restarted forever;
 * - the checkpoint directory put under a regular file while the job runs: exit 69 at once (ENOTDIR is
 *   permanent); before, restarts forever;
 * - with --workers 2, a worker whose strategy gave up: the primary starts no new worker (which would
 *   begin the restarts again) and exits 1;
 * - in each, the committed output is exactly what was committed before: per key, counts 1..n in
 *   offset order, nothing more.
 *
 * And errors in user functions per record, across a SIGKILL: the job's `dead-letter` for the key
 * selector's errors (each poison record once in the dead-letter topic, with its code and source) and
 * the map's own `skip` (neither output nor dead letter), every good record counted exactly once.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/count-job.ts';
import { type JobProcess, startJobProcess } from '../support/crash-helpers.ts';
import { kcatProducer, verifyCountsInOrder } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { kcatRecords, readCommittedRecords } from '../support/sequence-check.ts';

const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const JOB = fileURLToPath(new URL('../jobs/user-error-job.ts', import.meta.url));
const PARTITIONS = 2;
const KEYS = 20;

describe('failure policy (kstate run)', () => {
  let admin: Admin;
  let dir: string;
  const running: JobProcess[] = [];
  before(async () => {
    admin = kafkaClient('failure-policy-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'failure-policy-'));
  });
  after(async () => {
    for (const p of running)
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(label: string, extra: Record<string, string> = {}, withDlq = false) {
    const n = names(label);
    const [input, output, dlq] = ['in', 'out', 'dlq'].map((t) => n.topic(t)) as [string, string, string];
    await admin.createTopics({
      topics: [input, output, ...(withDlq ? [dlq] : [])].map((topic) => ({
        topic,
        numPartitions: PARTITIONS,
      })),
      waitForLeaders: true,
    });
    const env = {
      JOB_ID: n.group('job'),
      INPUT: input,
      OUTPUT: output,
      ...(withDlq ? { DLQ: dlq } : {}),
      KSTATE_BROKERS: brokersFromEnv().join(','),
      KSTATE_STATE_DIR: join(dir, n.stem, 'state'),
      KSTATE_CHECKPOINT_STORAGE: join(dir, n.stem, 'checkpoints'),
      KSTATE_CHECKPOINT_INTERVAL_MS: '300',
      KSTATE_HTTP_PORT: '0',
      KSTATE_SESSION_TIMEOUT_MS: '30000',
      KSTATE_RESTART_ATTEMPTS: '2',
      KSTATE_RESTART_DELAY_MS: '100',
      ...extra,
    };
    return { jobId: env.JOB_ID, input, output, dlq, env, stem: n.stem };
  }

  const start = (env: Record<string, string>, args: string[] = []) => {
    const p = startJobProcess(env, CLI, ['run', JOB, ...args]);
    running.push(p);
    return p;
  };

  /** `count` good records {k, n} (n = from..), by kcat (crc32, as the job's source expects). */
  async function good(topic: string, count: number, from = 0): Promise<void> {
    const kcat = kcatProducer(topic);
    const lines: string[] = [];
    for (let n = from; n < from + count; n++)
      lines.push(`user-${n % KEYS}\t${JSON.stringify({ k: `user-${n % KEYS}`, n })}\n`);
    await kcat.write(lines.join(''));
    await kcat.end();
  }

  /** Lines `key<TAB>value` by kcat; with `nullValues`, an empty value is sent as null (-Z). */
  async function raw(topic: string, lines: string[], nullValues = false): Promise<void> {
    const kcat = kcatProducer(topic, nullValues ? ['-Z'] : []);
    await kcat.write(lines.map((l) => `${l}\n`).join(''));
    await kcat.end();
  }

  /** Run the job until `total` outputs are committed, then SIGTERM (exit 0); returns what is committed. */
  async function firstRun(
    t: { output: string; env: Record<string, string> },
    total: number,
    args: string[] = [],
  ) {
    const p = start(t.env, args);
    const out = await readCommittedRecords<Out>(t.output, total, 120_000);
    verifyCountsInOrder(out, total);
    p.child.kill('SIGTERM');
    assert.equal(await p.exited, 0, p.lines.slice(-20).join('\n'));
    return out;
  }

  const json = (p: JobProcess) =>
    p.lines.flatMap((l) => {
      try {
        return l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });

  /** The exit code within `ms`, or a failure saying how often the tasks failed and restarted meanwhile. */
  async function exitWithin(p: JobProcess, ms: number): Promise<number | null> {
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref());
    const r = await Promise.race([p.exited, timer]);
    if (r === 'timeout') {
      const failed = json(p).filter((l) => l.msg === 'task failed');
      p.child.kill('SIGKILL');
      assert.fail(
        `kstate run did not exit within ${ms} ms: ${failed.length} task failures, ${failed.filter((l) => l.restarting === true).length} of them restarting; first: ${String(failed[0]?.err ?? '-')}`,
      );
    }
    return r;
  }

  /**
   * The committed output is exactly `before` (same records, same order per partition). Compared by
   * partition and offset: kcat interleaves the partitions in no fixed order.
   */
  async function assertUnchanged(topic: string, before: Awaited<ReturnType<typeof firstRun>>) {
    const now = await kcatRecords<Out>(topic);
    const rows = (rs: typeof now) =>
      rs
        .map((r) => [r.partition, Number(r.offset), r.value] as const)
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    assert.deepEqual(rows(now), rows(before), 'the committed output changed');
  }

  /** The consumer group has no member left (the service left it; a killed one would stay ~30 s). */
  async function assertGroupLeft(jobId: string) {
    const { groups } = await admin.describeGroups([jobId]);
    assert.deepEqual(
      groups.map((g) => [g.state, g.members.length]),
      [['Empty', 0]],
      `group ${jobId} right after the exit`,
    );
  }

  for (const [kind, line, nullValues] of [
    ['JSON of another shape', 'user-3\t{"x":1}', false],
    ['a null value', 'user-3\t', true],
  ] as const) {
    test(`a key selector that throws on ${kind} ('fail'): restarts as the strategy allows, then leaves the group and exits 1 with one line`, async () => {
      const t = await setup(`policy selector ${nullValues ? 'null' : 'shape'}`);
      await good(t.input, 600);
      const committed = await firstRun(t, 600);
      await raw(t.input, [line], nullValues);
      const p = start(t.env);
      const code = await exitWithin(p, 120_000);
      assert.equal(code, 1, p.lines.slice(-20).join('\n'));
      const lines = json(p);
      const failures = lines.filter((l) => l.msg === 'task failed');
      assert.deepEqual(
        failures.map((l) => [l.code, l.failure, l.restarting]),
        [
          ['USER_FUNCTION_FAILED', 'counted', true],
          ['USER_FUNCTION_FAILED', 'counted', true],
          ['USER_FUNCTION_FAILED', 'counted', false],
        ],
      );
      const fatal = lines.filter((l) => l.msg === 'job failed');
      assert.equal(fatal.length, 1, p.lines.join('\n'));
      const f = fatal[0]!;
      assert.equal(f.task, failures[0]!.task);
      assert.deepEqual([f.code, f.cause, f.exit], ['RESTART_LIMIT_EXCEEDED', 'USER_FUNCTION_FAILED', 1]);
      assert.match(String(f.err), /record .*@\d+: operator 'count-and-sum' failed in its key selector/);
      assert.match(String(f.action), /onUserFunctionError/);
      await assertGroupLeft(t.jobId);
      await assertUnchanged(t.output, committed);
    });
  }

  test('with --workers 2, a worker whose restart strategy gave up: the primary starts no new one and exits 1', async () => {
    const t = await setup('policy workers', { KSTATE_HTTP_PORT: String(await freePort()) });
    await good(t.input, 600);
    await raw(t.input, ['user-3\t{"x":1}']);
    const p = start(t.env, ['--workers', '2']);
    assert.equal(await exitWithin(p, 120_000), 1, p.lines.slice(-20).join('\n'));
    const lines = json(p);
    assert.deepEqual(
      lines.filter((l) => l.msg === 'worker exited; starting a new one'),
      [],
      'the primary started a new worker: the restarts the policy ended would begin again',
    );
    assert.ok(
      lines.some(
        (l) => l.msg === 'job failed in a worker (its restart strategy gave up): stopping the others',
      ),
      p.lines.slice(-20).join('\n'),
    );
    assert.equal(lines.filter((l) => l.msg === 'job failed').length, 1);
  });

  test('with --workers 2 and httpPort 0: refused (78) before any worker is forked', async () => {
    const t = await setup('policy workers port', { KSTATE_HTTP_PORT: '0' });
    const p = start(t.env, ['--workers', '2']);
    assert.equal(await exitWithin(p, 60_000), 78, p.lines.slice(-20).join('\n'));
    // Everything written to its output, also by workers it forked (they share its stdio): the streams
    // close once every process holding them ended.
    if (p.child.stdout?.readableEnded !== true || p.child.stderr?.readableEnded !== true)
      await once(p.child, 'close');
    const out = p.lines.join('\n');
    assert.match(out, /httpPort 0 with several workers: the primary needs a port for \/metrics/);
    // Before the fix the two workers were forked first, then died on their closed channel.
    assert.doesNotMatch(out, /EPIPE|ERR_IPC_CHANNEL_CLOSED|"role":"worker"|"worker":\d/);
  });

  test('a wrong --from-savepoint (one task has none; a file of it corrupt): exit at once, 69 and 65, nothing committed', async () => {
    const t = await setup('policy savepoint');
    await good(t.input, 600);
    const committed = await firstRun(t, 600, ['--savepoint-on-stop', 'sp1']);
    const tasks = join(t.env.KSTATE_CHECKPOINT_STORAGE, t.jobId);
    const p1 = join(tasks, 'clicks-p1', 'savepoints', 'sp1.json');
    const saved = await readFile(p1);
    await rm(p1);
    const missing = start(t.env, ['--from-savepoint', 'sp1']);
    assert.equal(await exitWithin(missing, 90_000), 69, missing.lines.slice(-20).join('\n'));
    const m = json(missing);
    assert.deepEqual(
      m.filter((l) => l.msg === 'task failed').map((l) => [l.task, l.code, l.failure, l.restarting]),
      [['clicks-p1', 'CHECKPOINT_NOT_FOUND', 'permanent', false]],
    );
    assert.deepEqual(
      m.filter((l) => l.msg === 'job failed').map((l) => [l.task, l.code, l.exit]),
      [['clicks-p1', 'CHECKPOINT_NOT_FOUND', 69]],
    );
    await assertGroupLeft(t.jobId);
    await assertUnchanged(t.output, committed);

    // The savepoint back, one of its keyed-state files damaged.
    await writeFile(p1, saved);
    const files = join(tasks, 'clicks-p1', 'files');
    const keyed = (await readdir(files)).filter((f) => f.includes('keyed'));
    for (const f of keyed) await writeFile(join(files, f), 'damaged');
    const corrupt = start(t.env, ['--from-savepoint', 'sp1']);
    assert.equal(await exitWithin(corrupt, 90_000), 65, corrupt.lines.slice(-20).join('\n'));
    const c = json(corrupt);
    assert.deepEqual(
      c.filter((l) => l.msg === 'task failed').map((l) => [l.task, l.code, l.restarting]),
      [['clicks-p1', 'CHECKPOINT_CORRUPT', false]],
    );
    assert.equal(c.filter((l) => l.msg === 'job failed').length, 1);
    await assertUnchanged(t.output, committed);
  });

  test('the checkpoint directory put under a regular file while the job runs: exit 69 at once, nothing more committed', async () => {
    const t = await setup('policy checkpoint dir');
    const parent = join(dir, t.stem, 'parent');
    const env = { ...t.env, KSTATE_CHECKPOINT_STORAGE: join(parent, 'checkpoints') };
    await good(t.input, 600);
    const p = start(env);
    const committed = await readCommittedRecords<Out>(t.output, 600, 120_000);
    verifyCountsInOrder(committed, 600);
    // The directory moves away; a regular file takes its parent's place; more input arrives.
    await rm(parent, { recursive: true, force: true });
    await writeFile(parent, 'not a directory');
    await good(t.input, 200, 600);
    assert.equal(await exitWithin(p, 90_000), 69, p.lines.slice(-20).join('\n'));
    const lines = json(p);
    const failures = lines.filter((l) => l.msg === 'task failed');
    // The task that met ENOTDIR was not restarted (a checkpoint under way at the swap may fail
    // otherwise first: ENOENT, counted and restarted; its restore then meets ENOTDIR).
    assert.deepEqual(
      failures.filter((l) => l.restarting === false).map((l) => [l.failure, /ENOTDIR/.test(String(l.err))]),
      [['permanent', true]],
      p.lines.slice(-20).join('\n'),
    );
    const fatal = lines.filter((l) => l.msg === 'job failed');
    assert.equal(fatal.length, 1);
    assert.match(String(fatal[0]!.err), /ENOTDIR/);
    assert.notEqual(fatal[0]!.code, 'RESTART_LIMIT_EXCEEDED');
    assert.equal(fatal[0]!.exit, 69);
    await assertGroupLeft(t.jobId);
    await assertUnchanged(t.output, committed);
  });

  test("errors in user functions across a SIGKILL: the job's 'dead-letter' once each, the map's 'skip', every good record once", async () => {
    const t = await setup('policy dead letters', { KSTATE_ON_USER_FUNCTION_ERROR: 'dead-letter' }, true);
    // JSON of another shape (no key), a key that is no key (1e999 parses as Infinity), a null value.
    const poison = ['user-3\t{"x":1}', 'user-8\t{"k":1e999,"n":1}'];
    await good(t.input, 1500);
    await raw(t.input, poison);
    await raw(t.input, ['user-5\t'], true);
    await raw(t.input, [
      'user-6\t{"k":"user-6","n":-1,"skip":true}',
      'user-7\t{"k":"user-7","n":-2,"skip":true}',
    ]);
    await good(t.input, 1500, 1500);
    const first = start(t.env);
    await until(async () => (await kcatRecords(t.dlq, (s) => s)).length >= 3, 'the dead letters', 120_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const second = start(t.env);
    try {
      verifyCountsInOrder(await readCommittedRecords<Out>(t.output, 3000, 180_000), 3000);
      const dead = await kcatRecords<string | null>(t.dlq, (s) => s);
      assert.equal(dead.length, 3, JSON.stringify(dead));
      assert.deepEqual(
        dead.map((d) => d.value ?? 'null').sort(),
        ['null', '{"k":1e999,"n":1}', '{"x":1}'].sort(),
        'each record the key selector threw on, dead-lettered exactly once',
      );
      for (const h of await headers(t.dlq)) {
        assert.match(h, /x-code=USER_FUNCTION_FAILED/);
        assert.match(h, new RegExp(`x-source=${t.input.replace(/[.]/g, '\\.')}/\\d@\\d+`));
        assert.match(h, /x-error=record .*: operator 'count-and-sum' failed in its key selector/);
      }
      assert.deepEqual(
        json(second).filter((l) => l.msg === 'task failed'),
        [],
      );
    } finally {
      second.child.kill('SIGTERM');
    }
    assert.equal(await second.exited, 0, second.lines.slice(-20).join('\n'));
    const skipped = json(second).filter((l) => l.msg === 'record skipped');
    assert.ok(skipped.every((l) => l.operator === 'check' && /told to skip/.test(String(l.err))));
  });
});

/** The headers of every committed record of `topic` (kcat's %h: name=value,...). */
async function headers(topic: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)(
    'kcat',
    [
      '-C',
      '-b',
      brokersFromEnv().join(','),
      '-t',
      topic,
      '-X',
      'isolation.level=read_committed',
      '-e',
      '-q',
      '-f',
      '%h\n',
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout.split('\n').filter((l) => l !== '');
}

/** A TCP port nothing listens on now (the primary's HTTP server under --workers). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function until(f: () => Promise<boolean>, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
