/**
 * Input partitioned by other producers than Java's (issue 13, part 4), on the broker, with kcat
 * (librdkafka) as the producer and as the reader of what the job committed:
 *
 * - each built-in partitioner is bit-exact against the partition the broker got from kcat's
 *   `-X partitioner=...` for thousands of keys;
 * - a `kstate run` job counting per key over a keyed stream read without repartitioning, from a topic
 *   kcat wrote with its default partitioner (`consistent_random`: CRC32): with `partitioner: 'crc32'`
 *   every key's counts are exactly 1..n in offset order and no task ever fails; with the default
 *   (murmur2) the job fails once, exits 65 (data error), and says to set 'crc32' (on the code before, it restarted
 *   forever);
 * - a record produced into a wrong partition on purpose (`kcat -p`) under `onWrongPartition`: `skip`
 *   (counted and warned about, the job goes on), `dead-letter` (in the dead-letter topic once, across
 *   a SIGKILL), `fail` (exit 65 once, naming the record).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { builtInPartitions, type PartitionerName, partitionerFunction } from '../../../../framework/index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/count-job.ts';
import { kcatProducer, verifyCountsInOrder } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { kcatRecords, readCommittedRecords } from '../support/sequence-check.ts';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../cli/cli.ts', import.meta.url));
const JOB = fileURLToPath(new URL('../jobs/partitioner-job.ts', import.meta.url));

const PARTITIONS = 6;
const KEYS = 400;

describe('partitioners', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('partitioner-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'partitioner-'));
  });
  after(async () => {
    for (const c of spawned) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  async function topics(label: string, ...which: string[]): Promise<string[]> {
    const n = names(label);
    const all = which.map((w) => n.topic(w));
    await admin.createTopics({
      topics: all.map((topic) => ({ topic, numPartitions: PARTITIONS, configEntries: RETAIN })),
      waitForLeaders: true,
    });
    return all;
  }

  test("each built-in partitioner puts every key where librdkafka's does (kcat -X partitioner=...)", async () => {
    // librdkafka's names: the `_random` variants hash every non-empty key as the plain ones do.
    const cases: [string, PartitionerName][] = [
      ['consistent_random', 'crc32'],
      ['murmur2_random', 'murmur2'],
      ['fnv1a_random', 'fnv1a'],
    ];
    const keys = Array.from({ length: 3000 }, (_, i) =>
      i % 10 === 0 ? `k\u00e4se-${i}-\u65e5\u672c` : `key-${i.toString(36)}-${'x'.repeat(i % 7)}`,
    );
    for (const [librdkafka, ours] of cases) {
      const [topic] = await topics(`partitioner ${ours}`, 'in');
      const kcat = kcatProducer(topic!, ['-X', `partitioner=${librdkafka}`]);
      await kcat.write(keys.map((k) => `${k}\t${k}\n`).join(''));
      await kcat.end();
      const read = await kcatRecords<string>(topic!, (t) => t);
      assert.equal(read.length, keys.length, `${librdkafka}: records read back`);
      const f = partitionerFunction(ours);
      const wrong = read.filter((r) => r.partition !== f(Buffer.from(r.key!, 'utf8'), PARTITIONS));
      assert.deepEqual(
        wrong.slice(0, 5).map((r) => `${r.key} in ${r.partition}`),
        [],
        `${wrong.length} of ${read.length} keys: '${ours}' differs from librdkafka's ${librdkafka}`,
      );
      // The partitioners really differ on these keys (else the comparison proves little).
      const other = cases.find(([, o]) => o !== ours)![1];
      const g = partitionerFunction(other);
      assert.ok(read.filter((r) => r.partition !== g(Buffer.from(r.key!, 'utf8'), PARTITIONS)).length > 1000);
    }
  });

  /** `count` records {k, n} (n = from..) over KEYS keys, written by kcat with its default partitioner. */
  async function kcatInput(topic: string, count: number, from = 0): Promise<void> {
    const kcat = kcatProducer(topic);
    const lines: string[] = [];
    for (let n = from; n < from + count; n++) {
      const k = `user-${n % KEYS}`;
      lines.push(`${k}\t${JSON.stringify({ k, n })}\n`);
    }
    await kcat.write(lines.join(''));
    await kcat.end();
  }

  function serviceEnv(label: string, topicsOf: { input: string; output: string; dlq?: string }, extra = {}) {
    const n = names(label);
    return {
      JOB_ID: n.group('job'),
      INPUT: topicsOf.input,
      OUTPUT: topicsOf.output,
      ...(topicsOf.dlq ? { DLQ: topicsOf.dlq } : {}),
      KSTATE_BROKERS: brokersFromEnv().join(','),
      KSTATE_STATE_DIR: join(dir, n.stem, 'state'),
      KSTATE_CHECKPOINT_DIR: join(dir, n.stem, 'checkpoints'),
      KSTATE_CHECKPOINT_INTERVAL_MS: '500',
      KSTATE_HTTP_PORT: '0',
      KSTATE_SHUTDOWN_TIMEOUT_MS: '60000',
      ...extra,
    };
  }

  test("kcat's default partitioner (CRC32), read with partitioner 'crc32': every key counted 1..n in order, no task ever failed", async () => {
    const [input, output] = await topics('partitioner crc32 job', 'in', 'out');
    const TOTAL = 6000;
    await kcatInput(input!, TOTAL);
    const svc = startService(
      serviceEnv('crc32 job', { input: input!, output: output! }, { PARTITIONER: 'crc32' }),
    );
    try {
      const out = await readCommittedRecords<Out>(output!, TOTAL, 180_000);
      verifyCountsInOrder(out, TOTAL);
      assert.deepEqual(svc.failures(), [], 'task failures');
    } finally {
      svc.child.kill('SIGTERM');
    }
    assert.equal(await svc.exit, 0, svc.out.join('\n'));
  });

  test('the same input read as murmur2 (the default): the job fails once, exit 65, saying to set crc32', async () => {
    const [input, output] = await topics('partitioner murmur2 job', 'in', 'out');
    await kcatInput(input!, 6000);
    const svc = startService(serviceEnv('murmur2 job', { input: input!, output: output! }));
    const code = await svc.exitWithin(120_000);
    const failures = svc.failures();
    // A permanent failure exits by its code's class (exit-codes.ts): KEY_GROUP_MISMATCH is data (65).
    assert.equal(code, 65, svc.out.join('\n'));
    assert.ok(failures.length >= 1 && failures.length <= PARTITIONS, `${failures.length} task failures`);
    assert.deepEqual(
      failures.filter((f) => f.restarting),
      [],
      'a task was restarted: a permanent failure must not be',
    );
    const fatal = svc.json().filter((l) => l.msg === 'job failed');
    assert.equal(fatal.length, 1, svc.out.join('\n'));
    assert.equal(fatal[0]!.code, 'KEY_GROUP_MISMATCH');
    assert.match(
      String(fatal[0]!.err),
      new RegExp(
        `^record ${esc(input!)}/\\d@\\d+: operator 'count-and-sum': key "user-\\d+" came in partition \\d of ${PARTITIONS} of source 'clicks', but the stage's partitioner \\(murmur2\\) puts it in partition \\d\\. Partition \\d is where crc32 .*set partitioner: 'crc32' on source 'clicks'\\.`,
      ),
    );
  });

  test('with --workers 2, the primary starts no new worker after the permanent failure and exits 65', async () => {
    const [input, output] = await topics('partitioner workers', 'in', 'out');
    await kcatInput(input!, 6000);
    const port = await freePort();
    const svc = startService(
      serviceEnv('workers', { input: input!, output: output! }, { KSTATE_HTTP_PORT: String(port) }),
      ['--workers', '2'],
    );
    const code = await svc.exitWithin(120_000);
    // A permanent failure exits by its code's class (exit-codes.ts): KEY_GROUP_MISMATCH is data (65).
    assert.equal(code, 65, svc.out.join('\n'));
    const lines = svc.json();
    assert.equal(
      lines.filter((l) => l.msg === 'worker exited; starting a new one').length,
      0,
      svc.out.join('\n'),
    );
    assert.ok(lines.some((l) => l.msg === 'job failed permanently in a worker: stopping the others'));
    assert.ok(lines.some((l) => l.msg === 'job failed' && l.code === 'KEY_GROUP_MISMATCH'));
  });

  describe('a record produced into a wrong partition (kcat -p)', () => {
    /** A key and a partition where no built-in partitioner would put it. */
    function stray(): { key: string; partition: number } {
      for (let i = 0; ; i++) {
        const key = `user-${i}`;
        const at = Object.values(builtInPartitions(Buffer.from(key), PARTITIONS));
        const free = [...Array(PARTITIONS).keys()].find((p) => !at.includes(p));
        if (free !== undefined) return { key, partition: free };
      }
    }
    const STRAYS = 3;

    /** 3000 good records (n = 0..2999) and 3 strays (n = 1,000,000..), produced in between. */
    async function inputWithStrays(
      input: string,
    ): Promise<{ key: string; partition: number; values: string[] }> {
      const s = stray();
      await kcatInput(input, 1500);
      const values = Array.from({ length: STRAYS }, (_, i) => JSON.stringify({ k: s.key, n: 1_000_000 + i }));
      const kcat = kcatProducer(input, ['-p', String(s.partition)]);
      await kcat.write(values.map((v) => `${s.key}\t${v}\n`).join(''));
      await kcat.end();
      await kcatInput(input, 1500, 1500);
      return { ...s, values };
    }

    test("'skip': counted and warned about once each, every other record counted exactly once", async () => {
      const [input, output] = await topics('partitioner skip', 'in', 'out');
      const s = await inputWithStrays(input!);
      const svc = startService(
        serviceEnv(
          'skip',
          { input: input!, output: output! },
          { PARTITIONER: 'crc32', ON_WRONG_PARTITION: 'skip' },
        ),
      );
      try {
        verifyCountsInOrder(await readCommittedRecords<Out>(output!, 3000, 180_000), 3000);
        const warned = () =>
          svc.out.filter((l) =>
            new RegExp(
              `RecordPartitionWarning: Kafka source 'clicks' \\(skip\\): record ${esc(input!)}/${s.partition}@\\d+: .*key "${s.key}" came in partition ${s.partition}.*No built-in partitioner puts it there`,
            ).test(l),
          );
        await until(() => warned().length >= STRAYS, 'the warnings');
        assert.equal(warned().length, STRAYS);
        assert.deepEqual(svc.failures(), []);
      } finally {
        svc.child.kill('SIGTERM');
      }
      assert.equal(await svc.exit, 0, svc.out.join('\n'));
    });

    test("'dead-letter': each stray lands in the dead-letter topic once, across a SIGKILL, in the task's transaction", async () => {
      const [input, output, dlq] = await topics('partitioner dlq', 'in', 'out', 'dlq');
      const s = await inputWithStrays(input!);
      const env = serviceEnv(
        'dlq',
        { input: input!, output: output!, dlq: dlq! },
        { PARTITIONER: 'crc32', ON_WRONG_PARTITION: 'dead-letter' },
      );
      const first = startService(env);
      await until(async () => (await deadLetters(dlq!)).length >= STRAYS, 'the dead letters', 120_000);
      first.child.kill('SIGKILL');
      await first.exit;
      const second = startService(env);
      try {
        verifyCountsInOrder(await readCommittedRecords<Out>(output!, 3000, 180_000), 3000);
        const dead = await deadLetters(dlq!);
        assert.deepEqual(
          dead.map((d) => d.value).sort(),
          [...s.values].sort(),
          'each stray dead-lettered exactly once',
        );
        for (const d of dead) {
          assert.equal(d.key, s.key);
          assert.match(d.headers, new RegExp(`x-source=${esc(input!)}/${s.partition}@\\d+`));
          assert.match(d.headers, /x-code=KEY_GROUP_MISMATCH/);
        }
        assert.deepEqual(second.failures(), []);
      } finally {
        second.child.kill('SIGTERM');
      }
      assert.equal(await second.exit, 0, second.out.join('\n'));
    });

    test("'fail' (the default): the process exits 65 once with KEY_GROUP_MISMATCH naming the record; no restart", async () => {
      const [input, output] = await topics('partitioner fail', 'in', 'out');
      const s = await inputWithStrays(input!);
      const svc = startService(
        serviceEnv('fail', { input: input!, output: output! }, { PARTITIONER: 'crc32' }),
      );
      const code = await svc.exitWithin(120_000);
      // A permanent failure exits by its code's class (exit-codes.ts): KEY_GROUP_MISMATCH is data (65).
      assert.equal(code, 65, svc.out.join('\n'));
      assert.deepEqual(
        svc.failures().map((f) => [f.task, f.restarting]),
        [[`clicks-p${s.partition}`, false]],
      );
      const fatal = svc.json().filter((l) => l.msg === 'job failed');
      assert.equal(fatal.length, 1);
      assert.equal(fatal[0]!.code, 'KEY_GROUP_MISMATCH');
      assert.match(
        String(fatal[0]!.err),
        new RegExp(
          `^record ${esc(input!)}/${s.partition}@\\d+: operator 'count-and-sum': key "${s.key}" came in partition ${s.partition} of ${PARTITIONS} of source 'clicks', but the stage's partitioner \\(crc32\\) puts it in partition \\d\\. No built-in partitioner puts it there`,
        ),
      );
    });
  });
});

/** Topics that keep their records (the output's Kafka timestamps are the inputs', fine here, but cheap to be sure). */
const RETAIN = [{ name: 'retention.ms', value: '-1' }];

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function until(f: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The committed records of a dead-letter topic (kcat, read_committed): key, value and headers. */
async function deadLetters(topic: string): Promise<{ key: string; value: string; headers: string }[]> {
  const { stdout } = await run(
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
      '%k\t%s\t%h\n',
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [key, value, headers] = l.split('\t');
      return { key: key!, value: value!, headers: headers ?? '' };
    });
}

/** A TCP port nothing listens on now (for the primary's HTTP server). */
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

const spawned: ChildProcess[] = [];

/** `kstate run` of the partitioner job, its output lines (stdout and stderr), and its exit. */
function startService(env: Record<string, string>, args: string[] = []) {
  const child: ChildProcess = spawn(process.execPath, [CLI, 'run', JOB, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.push(child);
  const out: string[] = [];
  const collect = () => {
    let buf = '';
    return (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      out.push(...lines);
    };
  };
  child.stdout!.on('data', collect());
  child.stderr!.on('data', collect());
  const exit = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const json = () =>
    out.flatMap((l) => {
      try {
        return l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  const failures = () =>
    json()
      .filter((l) => l.msg === 'task failed')
      .map((l) => ({ task: String(l.task), restarting: l.restarting === true, err: String(l.err) }));
  return {
    child,
    out,
    exit,
    json,
    failures,
    /** The exit code, or a failure saying how often the tasks failed and restarted meanwhile. */
    async exitWithin(ms: number): Promise<number | null> {
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref());
      const r = await Promise.race([exit, timer]);
      if (r === 'timeout') {
        const f = failures();
        child.kill('SIGKILL');
        assert.fail(
          `kstate run did not exit within ${ms} ms: ${f.length} task failures, ${f.filter((x) => x.restarting).length} of them restarted (a restart loop); first: ${f[0]?.err ?? '-'}`,
        );
      }
      return r;
    },
  };
}
