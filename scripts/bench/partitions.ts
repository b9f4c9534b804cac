/**
 * Many-partitions benchmark (issue 12, section 5): what one instance of the count job costs as its
 * input grows from a few partitions to hundreds, each partition a task with its own transactions.
 *
 * For each partition count (`--partitions=4,16,64,128,256`), on fresh topics (input and output with
 * that many partitions) holding `--records` pre-produced records keyed over `--keys` keys, the job
 * (scripts/bench/partitions-runner.ts: KafkaSource -> keyBy -> keyed count/sum -> exactly-once
 * KafkaSink, checkpoints every `--interval` ms, the framework's defaults otherwise) runs as a child
 * process, so that its CPU and its sockets are its own:
 *
 * - first commit: from the spawn of the job process to its first completed checkpoint (node start,
 *   module loading, group join, restore, fencing of the task's transactional ids, first commit), and
 *   until every task completed one;
 * - records/s: `--records` over the time from the first record a task took until the job's committed
 *   group offsets (which its checkpoint commits carry) reach the end of every input partition;
 * - connections: the most TCP connections to the broker the job process held at once (its socket
 *   inodes from /proc/<pid>/fd matched in /proc/<pid>/net/tcp{,6}, sampled every 250 ms);
 * - idle CPU: `--settle` s after the input is committed, the CPU time (utime + stime of
 *   /proc/<pid>/stat, all threads) of the job process and of the broker over `--idle` s, as % of one
 *   core, and the checkpoints the job completed meanwhile. The broker alone (no job) is measured the
 *   same way first, as the floor.
 *
 * Afterwards the job gets SIGTERM and the output is checked with kcat (read_committed): every input
 * exactly once.
 *
 *     node scripts/bench/partitions.ts                                # 4..256 partitions: ~8 min on 2 cores
 *     node scripts/bench/partitions.ts --partitions=4,64,128 --idle=30
 *
 * Flags: --partitions=4,16,64,128,256 --records=200000 --keys=4096 --interval=1000 --idle=30 (s)
 * --settle=5 (s) --timeout=300 (s per run, until the input is committed) --warmup=false (skip the
 * unreported run made first with the smallest partition count) --dir=<scratch directory>
 * --broker-pid=<pid> (with KAFKA_BROKERS: the broker's CPU time is read from /proc).
 *
 * Uses KAFKA_BROKERS when set, else starts a broker with the harness (and stops it at the end).
 * A benchmark, not a test: figures depend on the machine. docs/benchmarks-kafka.md records a run.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createKafka } from '../../connectors/kafka/index.ts';
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import { flag, intFlag } from './flags.ts';

type Kafka = ReturnType<typeof createKafka>;
type Admin = ReturnType<Kafka['admin']>;

// ---------------------------------------------------------------- flags

const PARTITIONS = flag('partitions', '4,16,64,128,256')
  .split(',')
  .map((p) => {
    const v = Number(p.trim());
    if (!Number.isInteger(v) || v <= 0) throw new Error(`--partitions: ${p} is not a positive integer`);
    return v;
  });
const RECORDS = intFlag('records', 200_000);
const KEYS = intFlag('keys', 4096);
const INTERVAL_MS = intFlag('interval', 1000);
const IDLE_S = intFlag('idle', 30);
const SETTLE_S = intFlag('settle', 5);
const TIMEOUT_S = intFlag('timeout', 300);
const SCRATCH = flag('dir', tmpdir());
/** An untimed run first: a fresh broker creates __consumer_offsets and __transaction_state on first use. */
const WARMUP = flag('warmup', 'true') !== 'false';
const RUNNER = join(import.meta.dirname, 'partitions-runner.ts');

const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- /proc

const TICKS_PER_SECOND = 100;

/** CPU time (user + system, all threads) of a process in ms, or undefined when it is gone. */
function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the command).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** CPU of `pids` over `ms` from now, as % of one core each. */
async function cpuPercent(pids: readonly number[], ms: number): Promise<(number | undefined)[]> {
  const before = pids.map(cpuMs);
  const t0 = performance.now();
  await sleep(ms);
  const wall = performance.now() - t0;
  return pids.map((pid, i) => {
    const a = before[i];
    const b = cpuMs(pid);
    return a === undefined || b === undefined ? undefined : ((b - a) * 100) / wall;
  });
}

/** Established TCP connections of process `pid` to `port` (its socket inodes in /proc/net/tcp{,6}). */
function connectionsTo(pid: number, port: number): number {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return 0;
  }
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('socket:[')) inodes.add(target.slice(8, -1));
    } catch {
      // closed meanwhile
    }
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
      if (f.length < 10 || f[3] !== '01') continue;
      if (f[2]!.split(':')[1] === hexPort && inodes.has(f[9]!)) n++;
    }
  }
  return n;
}

// ---------------------------------------------------------------- topics and input

let runCounter = 0;
const runTag = Date.now().toString(36);

/**
 * Until the broker leads every partition of `topics`: right after createTopics (even with
 * waitForLeaders) a fresh broker may answer NOT_LEADER_FOR_PARTITION for some of hundreds of
 * partitions for a few seconds. ListOffsets is answered by the leader only, and writes nothing.
 */
async function leading(admin: Admin, topics: readonly string[]): Promise<void> {
  for (const topic of topics) {
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.fetchTopicOffsets(topic);
        break;
      } catch (e) {
        if (attempt >= 60) throw e;
        await sleep(500);
      }
    }
  }
}

async function produceInput(kafka: Kafka, topic: string): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < RECORDS; i += 5000) {
      const messages: { key: string; value: string }[] = [];
      for (let n = i; n < Math.min(RECORDS, i + 5000); n++) {
        const k = `k${n % KEYS}`;
        messages.push({ key: k, value: JSON.stringify({ k, n }) });
      }
      for (let attempt = 1; ; attempt++) {
        try {
          await producer.send({ topic, messages });
          break;
        } catch (e) {
          // A topic created a moment ago may not be known everywhere yet.
          if ((e as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION' || attempt >= 40) throw e;
          await sleep(250);
        }
      }
    }
  } finally {
    await producer.disconnect();
  }
}

function kcatCheck(brokers: readonly string[], topic: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      'kcat',
      [
        '-C',
        '-b',
        brokers.join(','),
        '-t',
        topic,
        '-X',
        'isolation.level=read_committed',
        '-e',
        '-q',
        '-f',
        '%s\n',
      ],
      { maxBuffer: 1024 * 1024 * 1024 },
      (error, stdout) => {
        if (error) {
          resolve(`not checked (kcat: ${error.message.split('\n')[0]})`);
          return;
        }
        const seen = new Uint8Array(RECORDS);
        let total = 0;
        let duplicates = 0;
        for (const line of stdout.split('\n')) {
          if (line.length === 0) continue;
          total++;
          const n = (JSON.parse(line) as { n: number }).n;
          if (seen[n] === 1) duplicates++;
          seen[n] = 1;
        }
        const missing = RECORDS - (total - duplicates);
        resolve(
          missing === 0 && duplicates === 0
            ? `exact (${total})`
            : `${total} records, ${missing} missing, ${duplicates} duplicates`,
        );
      },
    );
  });
}

// ---------------------------------------------------------------- one run

interface Row {
  readonly partitions: number;
  readonly load: number;
  readonly firstRecordMs: number | undefined;
  readonly firstCommitMs: number | undefined;
  /** From the spawn until every task completed a checkpoint. */
  readonly everyTaskMs: number | undefined;
  /** From the first record taken to every input committed. */
  readonly rate: number | undefined;
  /** From the spawn to every input committed. */
  readonly allCommittedMs: number | undefined;
  readonly peakConnections: number;
  readonly idleJobCpu: number | undefined;
  readonly idleBrokerCpu: number | undefined;
  readonly idleCheckpoints: number | undefined;
  readonly failures: string[];
  readonly output: string;
}

/** The job's committed group offsets against the input's end offsets: records not committed yet. */
async function uncommitted(
  admin: Admin,
  jobId: string,
  input: string,
  ends: Map<number, number>,
): Promise<number> {
  const [offsets] = await admin.fetchOffsets({ groupId: jobId, topics: [input] });
  const at = new Map((offsets?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  let behind = 0;
  for (const [p, end] of ends) behind += Math.max(0, end - Math.max(0, at.get(p) ?? 0));
  return behind;
}

async function runOne(
  kafka: Kafka,
  admin: Admin,
  brokers: readonly string[],
  brokerPid: number | undefined,
  partitions: number,
  warmup = false,
): Promise<Row> {
  const base = `bench.partitions.${runTag}.${partitions}.${++runCounter}`;
  const input = `${base}.in`;
  const output = `${base}.out`;
  const jobId = `${base}.job`;
  const label = `${partitions} partitions${warmup ? ' (warm-up)' : ''}`;
  await admin.createTopics({
    topics: [
      { topic: input, numPartitions: partitions },
      { topic: output, numPartitions: partitions },
    ],
    // kafkajs's wait fails on a transient UNKNOWN_TOPIC_OR_PARTITION after deletions; `leading` waits.
    waitForLeaders: false,
  });
  await leading(admin, [input, output]);
  say(`  ${label}: producing ${RECORDS} records ...`);
  await produceInput(kafka, input);
  const ends = new Map((await admin.fetchTopicOffsets(input)).map((o) => [o.partition, Number(o.high)]));
  const empty = [...ends].filter(([, e]) => e === 0).length;
  if (empty > 0) say(`  ${label}: ${empty} input partitions got no record (raise --keys)`);

  const dir = mkdtempSync(join(SCRATCH, 'partitions-bench-'));
  const port = Number(brokers[0]!.split(':').at(-1));
  const load = loadavg()[0]!;
  say(`  ${label}: starting the job (load average ${load.toFixed(2)})`);
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, [RUNNER], {
    env: {
      ...process.env,
      KAFKA_BROKERS: brokers.join(','),
      JOB_ID: jobId,
      INPUT: input,
      OUTPUT: output,
      STATE_DIR: dir,
      CHECKPOINT_MS: String(INTERVAL_MS),
      TASKS: String(partitions),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid!;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let exited = false;
  const exit = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      exited = true;
      r(code);
    }),
  );
  let firstRecordAt: number | undefined;
  let firstCommitAt: number | undefined;
  let everyTaskAt: number | undefined;
  const failures: string[] = [];
  let checkpointWaiter: ((n: number) => void) | undefined;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const [what, at, ...rest] = line.split(' ');
    if (what === 'first-record') firstRecordAt = Number(at);
    else if (what === 'first-commit') firstCommitAt = Number(at);
    else if (what === 'all-committed') everyTaskAt = Number(at);
    else if (what === 'checkpoints') checkpointWaiter?.(Number(at));
    else if (what === 'failed' || what === 'job-failed') {
      failures.push(rest.join(' '));
      if (failures.length <= 3) say(`  ${label}: ${what} ${rest.join(' ').slice(0, 300)}`);
    }
  });
  const checkpointsNow = () =>
    new Promise<number | undefined>((resolve) => {
      if (exited) return resolve(undefined);
      const timer = setTimeout(() => resolve(undefined), 5000);
      checkpointWaiter = (n) => {
        clearTimeout(timer);
        checkpointWaiter = undefined;
        resolve(n);
      };
      child.kill('SIGUSR2');
    });
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, connectionsTo(pid, port));
  }, 250);

  let allCommittedAt: number | undefined;
  let idleJobCpu: number | undefined;
  let idleBrokerCpu: number | undefined;
  let idleCheckpoints: number | undefined;
  try {
    const deadline = Date.now() + TIMEOUT_S * 1000;
    let behind = RECORDS;
    while (!exited && Date.now() < deadline) {
      behind = await uncommitted(admin, jobId, input, ends).catch(() => behind);
      if (behind === 0) {
        allCommittedAt = Date.now();
        break;
      }
      await sleep(250);
    }
    if (allCommittedAt === undefined) {
      say(
        `  ${label}: ${exited ? 'the job exited' : `timed out after ${TIMEOUT_S} s`}, ${behind} records not committed`,
      );
    } else {
      const rate =
        firstRecordAt === undefined ? '?' : Math.round((RECORDS * 1000) / (allCommittedAt - firstRecordAt));
      say(
        `  ${label}: all input committed ${allCommittedAt - spawnedAt} ms after the spawn (${rate} records/s)`,
      );
    }
    if (allCommittedAt !== undefined && !warmup) {
      await sleep(SETTLE_S * 1000);
      const before = await checkpointsNow();
      const pids = brokerPid === undefined ? [pid] : [pid, brokerPid];
      const [job, broker] = await cpuPercent(pids, IDLE_S * 1000);
      const after = await checkpointsNow();
      idleJobCpu = job;
      idleBrokerCpu = broker;
      idleCheckpoints = before === undefined || after === undefined ? undefined : after - before;
      say(
        `  ${label}: idle ${IDLE_S} s: job ${fmtPct(idleJobCpu)}, broker ${fmtPct(idleBrokerCpu)} of a core, ${idleCheckpoints ?? '?'} checkpoints`,
      );
    }
  } finally {
    clearInterval(sampler);
    if (!exited) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exit;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const code = await exit;
  if (code !== 0 && failures.length === 0)
    failures.push(`exit ${code}: ${stderr.split('\n').slice(-3).join(' ')}`);
  const out = await kcatCheck(brokers, output);
  say(`  ${label}: output ${out}; peak connections ${peak}; ${failures.length} failures`);
  await admin.deleteTopics({ topics: [input, output] }).catch(() => {});
  return {
    partitions,
    load,
    firstRecordMs: firstRecordAt === undefined ? undefined : firstRecordAt - spawnedAt,
    firstCommitMs: firstCommitAt === undefined ? undefined : firstCommitAt - spawnedAt,
    everyTaskMs: everyTaskAt === undefined ? undefined : everyTaskAt - spawnedAt,
    rate:
      allCommittedAt === undefined || firstRecordAt === undefined
        ? undefined
        : (RECORDS * 1000) / (allCommittedAt - firstRecordAt),
    allCommittedMs: allCommittedAt === undefined ? undefined : allCommittedAt - spawnedAt,
    peakConnections: peak,
    idleJobCpu,
    idleBrokerCpu,
    idleCheckpoints,
    failures,
    output: out,
  };
}

// ---------------------------------------------------------------- main

const fmtPct = (v: number | undefined) => (v === undefined ? '?' : `${v.toFixed(1)} %`);
const fmtMs = (v: number | undefined) => (v === undefined ? '–' : `${(v / 1000).toFixed(1)} s`);

function table(rows: readonly Row[], brokerAlone: number | undefined): string[] {
  const lines = [
    '| partitions (tasks) | records/s | first record | first commit | every task committed once | all input committed | peak connections to the broker | idle CPU: job | idle CPU: broker | checkpoints while idle | task failures | committed output (kcat) | load avg |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |',
  ];
  if (brokerAlone !== undefined) lines.push(`| no job | | | | | | | | ${fmtPct(brokerAlone)} | | | | |`);
  for (const r of rows) {
    const failures =
      r.failures.length === 0
        ? '0'
        : `${r.failures.length}: ${r.failures[0]!.slice(0, 160).replace(/\|/g, '/')}`;
    lines.push(
      `| ${r.partitions} | ${r.rate === undefined ? '–' : Math.round(r.rate).toLocaleString('en-US')} | ${fmtMs(r.firstRecordMs)} | ${fmtMs(r.firstCommitMs)} | ${fmtMs(r.everyTaskMs)} | ${fmtMs(r.allCommittedMs)} | ${r.peakConnections} | ${fmtPct(r.idleJobCpu)} | ${fmtPct(r.idleBrokerCpu)} | ${r.idleCheckpoints ?? '–'} | ${failures} | ${r.output} | ${r.load.toFixed(1)} |`,
    );
  }
  return lines;
}

async function main(): Promise<void> {
  const external = process.env.KAFKA_BROKERS?.trim();
  let brokers: string[];
  let brokerPid: number | undefined =
    flag('broker-pid', '') === '' ? undefined : Number(flag('broker-pid', ''));
  let stopBroker: () => Promise<void> = async () => {};
  let version = 'external';
  if (external) {
    brokers = external.split(',').map((b) => b.trim());
  } else {
    say('starting a Kafka broker with the harness ...');
    const broker = await startBroker();
    brokers = [broker.brokers];
    stopBroker = broker.stop;
    version = broker.version;
    brokerPid = broker.pid;
    say(`Kafka ${broker.version} on ${broker.brokers} (started in ${broker.startMs} ms)`);
  }
  const kafka = createKafka({ brokers }, '-bench');
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cpu = cpus();
    say(
      `node ${process.version}, ${cpu.length} x ${cpu[0]?.model ?? '?'}; Kafka ${version} at ${brokers.join(',')}; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    say(
      `${RECORDS} records over ${KEYS} keys, checkpoints every ${INTERVAL_MS} ms, idle ${IDLE_S} s (after ${SETTLE_S} s); partitions ${PARTITIONS.join(', ')}`,
    );
    if (WARMUP) {
      say('warm-up run (not reported: the broker creates its internal topics, node and the JIT warm up):');
      await runOne(kafka, admin, brokers, brokerPid, PARTITIONS[0]!, true);
    }
    let brokerAlone: number | undefined;
    if (brokerPid !== undefined) {
      [brokerAlone] = await cpuPercent([brokerPid], IDLE_S * 1000);
      say(`  no job: broker ${fmtPct(brokerAlone)} of a core over ${IDLE_S} s`);
    }
    const rows: Row[] = [];
    for (const p of PARTITIONS) rows.push(await runOne(kafka, admin, brokers, brokerPid, p));
    say('');
    say(
      `${RECORDS} records, ${KEYS} keys, checkpoints every ${INTERVAL_MS} ms; times from the spawn of the job process; idle: ${IDLE_S} s, ${SETTLE_S} s after the input is committed`,
    );
    say('');
    for (const l of table(rows, brokerAlone)) say(l);
    if (rows.some((r) => !r.output.startsWith('exact'))) process.exitCode = 1;
  } finally {
    await admin.disconnect().catch(() => {});
    await stopBroker();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`partitions: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
