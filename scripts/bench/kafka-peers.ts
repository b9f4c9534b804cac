/**
 * Side by side with Kafka Streams (issue 15, part 5): the exactly-once keyed count-and-sum job on one
 * broker, in one run, as separate processes measured from outside:
 *
 *   kstate             our job as a process (scripts/bench/partitions-runner.ts: runKafkaJob of the
 *                      count job, connectors/kafka/test/jobs/count-job.ts): heap state, exactly-once,
 *                      a checkpoint every `--interval` ms, filesystem checkpoint storage.
 *   kstreams-rocksdb   Kafka Streams 4.1.1 (scripts/bench/kstreams/, built here with `mvn -q package`),
 *                      exactly_once_v2, a persistent RocksDB store with its changelog and the record
 *                      cache, commit.interval.ms = `--interval`, one stream thread.
 *   kstreams-memory    the same with the in-memory store.
 *   b2                 the raw kafkajs transactional loop (kafka-raw-loops.ts, scripts/bench/
 *                      kafka-peers-b2.ts as a process): per partition one transaction committed every
 *                      `--interval` ms, its state in a Map (a limit, not a correct stateful program).
 *                      Its sends of a fetched batch are all in flight at once, as kafka-throughput.ts's
 *                      B2, and kafkajs then commits some keys' outputs out of order.
 *   b2-ordered         the same loop sending a batch's chunks one after the other: each key's order
 *                      holds.
 *
 * Every engine does the same work per record: parse the JSON value, add one to the key's count and
 * `n` to its sum, emit `{k, n, count, sum}` keyed by k. One input topic (`--records` records over
 * `--keys` keys, ~`--value-bytes` byte values, `--partitions` partitions) is produced first, untimed;
 * each run gets a fresh output topic and consumer group.
 *
 * Measured from outside: the clock starts at the spawn of the process. Commit times are seen by
 * polling the group's committed offsets (kafkajs admin OffsetFetch, every 50 ms): each engine commits
 * its input offsets in the transaction that holds the outputs (sendOffsets / TxnOffsetCommit), so the
 * committed offsets move when, and only when, a transaction with output commits.
 *
 * - from start: `--records` / (spawn to the committed offsets reaching the end of every partition);
 * - steady: the records committed after the first commit that carried output / (first to last such
 *   commit);
 * - first output: spawn to the first commit that carried output;
 * - CPU per record: the process's CPU time (utime + stime of /proc/<pid>/stat, all threads) from
 *   spawn to the last commit, over `--records`; steady: its CPU between the first and the last
 *   commit over the records committed meanwhile; and the broker's over the whole run (when its pid is
 *   known).
 *
 * Afterwards (untimed) the process gets SIGTERM and kcat reads the output in read_committed mode:
 * exactly `--records` outputs, every input n once, and per key, in offset order, counts 1..n with
 * running sums and inputs in order (connectors/kafka/test/support/sequence-check.ts).
 *
 *     node scripts/bench/kafka-peers.ts                 # one run of each engine: about 3 minutes on 2 cores
 *     node scripts/bench/kafka-peers.ts --repeat=3      # medians of 3: about 7 minutes
 *     node scripts/bench/kafka-peers.ts --engines=kstate --repeat=1 --profile=/tmp/kstate-prof
 *
 * Flags: --records=1000000 --partitions=4 --keys=1000 --value-bytes=100 --interval=1000 (checkpoint,
 * commit.interval.ms and B2 commit interval, ms) --repeat=1 --engines=kstate,kstreams-rocksdb,
 * kstreams-memory,b2,b2-ordered --warmup=false (skip the untimed B2 run made first) --timeout=600 (s per run)
 * --dir=<scratch directory> --broker-pid=<pid> (with KAFKA_BROKERS: the broker's CPU from /proc)
 * --profile=<dir> (the kstate process runs with node --cpu-prof into <dir>; its top functions are
 * printed; the profiler's cost makes those runs slower: not for the table) --kstate-tree=<dir>
 * (another kstate tree, e.g. an export of an older commit with its node_modules: its
 * scripts/bench/partitions-runner.ts runs as engine kstate-tree, for a before/after in one run; the
 * ratios are then also printed against it; the ratio table's "paired" columns are the median and
 * range of the round-by-round ratios) --compile-cache=true (NODE_COMPILE_CACHE for every Node engine
 * alike, as `kstate run` enables for itself; false: each start strips and compiles anew) --ks-threads=1
 * (num.stream.threads) --ks-cache=true (the store's record cache) --build=false (skip mvn).
 *
 * Uses KAFKA_BROKERS when set, else starts a broker with the harness (and stops it at the end).
 * Needs java 17+, mvn and kcat. A benchmark, not a test: figures depend on the machine.
 * docs/benchmarks-kafka.md ("Side by side with Kafka Streams") records a run.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { createKafka } from '../../connectors/kafka/index.ts';
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import { javaBinary } from '../../connectors/kafka/local/install.ts';
import {
  checkRunningTotals,
  describeSequences,
  kcatRecords,
} from '../../connectors/kafka/test/support/sequence-check.ts';
import { summarizeProfile } from './cpu-profile.ts';
import { flag, intFlag } from './flags.ts';
import { createTopics, processCpuMs, produceInput } from './kafka-bench-input.ts';

type Kafka = ReturnType<typeof createKafka>;
type Admin = ReturnType<Kafka['admin']>;

// ---------------------------------------------------------------- flags

const ENGINE_IDS = [
  'kstate',
  'kstate-tree',
  'kstreams-rocksdb',
  'kstreams-memory',
  'b2',
  'b2-ordered',
] as const;
type EngineId = (typeof ENGINE_IDS)[number];

const RECORDS = intFlag('records', 1_000_000);
const PARTITIONS = intFlag('partitions', 4);
const KEYS = intFlag('keys', 1000);
const VALUE_BYTES = intFlag('value-bytes', 100);
const INTERVAL_MS = intFlag('interval', 1000);
const REPEAT = intFlag('repeat', 1);
const TIMEOUT_MS = intFlag('timeout', 600) * 1000;
const WARMUP = flag('warmup', 'true') !== 'false';
const BUILD = flag('build', 'true') !== 'false';
const SCRATCH = flag('dir', tmpdir());
/**
 * Node's compile cache for every Node engine alike (NODE_COMPILE_CACHE, kept under --dir across
 * runs): TypeScript type stripping and compilation at start are cached as `kstate run` does for
 * itself (cli.ts). Off, each process strips and compiles every module it loads at every start.
 */
const COMPILE_CACHE = flag('compile-cache', 'true') !== 'false';
const PROFILE_DIR = flag('profile', '');
const KS_THREADS = intFlag('ks-threads', 1);
const KS_CACHE = flag('ks-cache', 'true') !== 'false';
/** Another checkout or export of kstate whose partitions-runner.ts runs as engine `kstate-tree`. */
const OTHER_TREE = flag('kstate-tree', '');
const ENGINES = flag('engines', ENGINE_IDS.filter((e) => e !== 'kstate-tree' || OTHER_TREE !== '').join(','))
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s.length > 0) as EngineId[];
for (const e of ENGINES) {
  if (!(ENGINE_IDS as readonly string[]).includes(e))
    throw new Error(`--engines: unknown engine ${e} (known: ${ENGINE_IDS.join(', ')})`);
}
if (ENGINES.includes('kstate-tree') && OTHER_TREE === '')
  throw new Error('--engines: kstate-tree needs --kstate-tree=<another kstate tree>');
/** How often the group's committed offsets are polled: the resolution of every commit time. */
const POLL_MS = 50;

const HERE = import.meta.dirname;
const KSTREAMS_DIR = join(HERE, 'kstreams');
const KSTREAMS_CLASSPATH = `${join(KSTREAMS_DIR, 'target', 'kafka-streams-peer.jar')}:${join(KSTREAMS_DIR, 'target', 'lib', '*')}`;

const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- engines

interface Launch {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  /** The consumer group whose committed offsets tell the commits. */
  readonly groupId: string;
}

interface RunContext {
  readonly brokers: string;
  readonly input: string;
  readonly output: string;
  /** Unique per run: job id, application id, group and transactional id prefix. */
  readonly id: string;
  /** A fresh scratch directory for state and checkpoints. */
  readonly dir: string;
}

interface Engine {
  readonly id: EngineId;
  readonly what: string;
  readonly state: string;
  /**
   * Whether per-key order is required of its output. B2 sends a batch's chunks all at once on one
   * kafkajs producer, which may reorder them: its order is reported, not required.
   */
  readonly keepsOrder: boolean;
  launch(c: RunContext): Launch;
}

const ENGINE_INFO: Record<EngineId, Engine> = {
  kstate: {
    id: 'kstate',
    what: 'kstate (runKafkaJob, partitions-runner.ts)',
    state: 'heap',
    keepsOrder: true,
    launch: (c) => kstateJob(c, join(HERE, 'partitions-runner.ts'), PROFILE_DIR),
  },
  'kstate-tree': {
    id: 'kstate-tree',
    what: `kstate at ${OTHER_TREE}`,
    state: 'heap',
    keepsOrder: true,
    launch: (c) => kstateJob(c, join(OTHER_TREE, 'scripts', 'bench', 'partitions-runner.ts'), ''),
  },
  'kstreams-rocksdb': {
    id: 'kstreams-rocksdb',
    what: 'Kafka Streams 4.1.1, exactly_once_v2',
    state: 'RocksDB',
    keepsOrder: true,
    launch: (c) => kafkaStreams(c, 'rocksdb'),
  },
  'kstreams-memory': {
    id: 'kstreams-memory',
    what: 'Kafka Streams 4.1.1, exactly_once_v2',
    state: 'in-memory store',
    keepsOrder: true,
    launch: (c) => kafkaStreams(c, 'memory'),
  },
  b2: {
    id: 'b2',
    what: 'B2: raw kafkajs transactional loop',
    state: 'Map',
    keepsOrder: false,
    launch: (c) => rawLoop(c, false),
  },
  'b2-ordered': {
    id: 'b2-ordered',
    what: 'B2, sends in order',
    state: 'Map',
    keepsOrder: true,
    launch: (c) => rawLoop(c, true),
  },
};

function rawLoop(c: RunContext, ordered: boolean): Launch {
  return {
    command: process.execPath,
    args: [join(HERE, 'kafka-peers-b2.ts')],
    env: {
      KAFKA_BROKERS: c.brokers,
      GROUP_ID: c.id,
      INPUT: c.input,
      OUTPUT: c.output,
      PARTITIONS: String(PARTITIONS),
      INTERVAL_MS: String(INTERVAL_MS),
      ORDERED: String(ordered),
    },
    groupId: c.id,
  };
}

/** The count job through `runner` (a partitions-runner.ts), with node's CPU profiler when `profileDir` is set. */
function kstateJob(c: RunContext, runner: string, profileDir: string): Launch {
  return {
    command: process.execPath,
    args: [...(profileDir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]), runner],
    env: {
      KAFKA_BROKERS: c.brokers,
      JOB_ID: c.id,
      INPUT: c.input,
      OUTPUT: c.output,
      STATE_DIR: c.dir,
      CHECKPOINT_MS: String(INTERVAL_MS),
      TASKS: String(PARTITIONS),
    },
    groupId: c.id,
  };
}

function kafkaStreams(c: RunContext, store: 'rocksdb' | 'memory'): Launch {
  return {
    command: javaBinary(),
    args: ['-cp', KSTREAMS_CLASSPATH, 'kstate.bench.KafkaStreamsPeer'],
    env: {
      KAFKA_BROKERS: c.brokers,
      APP_ID: c.id,
      INPUT: c.input,
      OUTPUT: c.output,
      STATE_DIR: c.dir,
      STORE: store,
      COMMIT_MS: String(INTERVAL_MS),
      THREADS: String(KS_THREADS),
      CACHE: String(KS_CACHE),
    },
    groupId: c.id,
  };
}

/** `mvn -q package` in scripts/bench/kstreams (untimed; quick when nothing changed). */
function buildKafkaStreams(): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    execFile(
      process.env.MVN ?? 'mvn',
      ['-q', '-B', 'package'],
      { cwd: KSTREAMS_DIR, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`mvn -q package in ${KSTREAMS_DIR} failed: ${error.message}\n${stdout}${stderr}`));
          return;
        }
        say(
          `Kafka Streams peer built (mvn -q package, ${((performance.now() - started) / 1000).toFixed(1)} s)`,
        );
        resolve();
      },
    );
  });
}

// ---------------------------------------------------------------- one run

interface RunResult {
  /** Spawn to the last commit (every input's output committed). */
  readonly totalMs: number;
  /** Spawn to the first commit that carried output. */
  readonly firstOutputMs: number;
  /** Records committed by the first commit with output. */
  readonly firstCommitted: number;
  /** Spawn to the first record taken, as the process reports it (undefined if it did not). */
  readonly firstRecordMs: number | undefined;
  /** Spawn to kstate's first completed checkpoint, or to Kafka Streams' RUNNING state. */
  readonly firstCheckpointMs: number | undefined;
  readonly runningMs: number | undefined;
  /** CPU of the process from spawn to the last commit, and between the first and the last commit. */
  readonly cpuMs: number | undefined;
  readonly steadyCpuMs: number | undefined;
  readonly brokerCpuMs: number | undefined;
  /** Moves of the committed offsets seen (commits of one or more partitions within a poll). */
  readonly commitsSeen: number;
  readonly load: number;
  readonly verified: string;
  readonly verifiedShort: string;
  readonly verifiedOk: boolean;
}

const fromStart = (r: RunResult) => (RECORDS * 1000) / r.totalMs;
const steady = (r: RunResult) =>
  r.totalMs > r.firstOutputMs ? ((RECORDS - r.firstCommitted) * 1000) / (r.totalMs - r.firstOutputMs) : 0;

let brokerPid: number | undefined =
  flag('broker-pid', '') === '' ? undefined : Number(flag('broker-pid', ''));
let runCounter = 0;
const runTag = Date.now().toString(36);

/**
 * Lines of a child's stdout and stderr: the last ones kept for a failure message, and the first time
 * of each event the process reports as `<event> <epoch ms>` (`first-record`; kstate `first-commit`,
 * its first completed checkpoint, with or without output; Kafka Streams `running`).
 */
function collectOutput(child: ChildProcess): { tail: string[]; events: Map<string, number> } {
  const tail: string[] = [];
  const events = new Map<string, number>();
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => {
      tail.push(line);
      if (tail.length > 30) tail.shift();
      const m = /^(first-record|first-commit|running) (\d+)$/.exec(line);
      if (m && !events.has(m[1]!)) events.set(m[1]!, Number(m[2]));
    });
  }
  return { tail, events };
}

/** Sends SIGTERM and waits for the exit (SIGKILL after `graceMs`). */
async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function committedOffsets(admin: Admin, groupId: string, input: string): Promise<bigint[]> {
  const [topic] = await admin.fetchOffsets({ groupId, topics: [input] });
  const out: bigint[] = [];
  for (const p of topic?.partitions ?? []) out[p.partition] = BigInt(p.offset);
  return out;
}

async function runEngine(
  engine: Engine,
  admin: Admin,
  brokers: string,
  input: string,
  ends: readonly bigint[],
  label: string,
): Promise<RunResult> {
  const id = `peers-${runTag}-${++runCounter}-${engine.id}`;
  const output = `${id}.out`;
  await createTopics(admin, [output], PARTITIONS);
  const dir = mkdtempSync(join(SCRATCH, 'kafka-peers-'));
  const launch = engine.launch({ brokers, input, output, id, dir });
  const load = loadavg()[0]!;
  say(`  ${label}: ${engine.what}, ${engine.state} (load average ${load.toFixed(2)})`);

  const brokerStart = processCpuMs(brokerPid);
  const start = performance.now();
  const startEpoch = Date.now();
  const child = spawn(launch.command, [...launch.args], {
    env: {
      ...process.env,
      ...(COMPILE_CACHE ? { NODE_COMPILE_CACHE: join(SCRATCH, 'kafka-peers-compile-cache') } : {}),
      ...launch.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = collectOutput(child);
  const since = (event: string) => {
    const at = out.events.get(event);
    return at === undefined ? undefined : at - startEpoch;
  };
  let exit: string | undefined;
  child.once('exit', (code, signal) => {
    exit = `exited with ${signal ?? `code ${code}`}`;
  });
  child.once('error', (e) => {
    exit = `could not start: ${e.message}`;
  });
  try {
    let first: { ms: number; committed: number; cpu: number | undefined } | undefined;
    let last = 0n;
    let commitsSeen = 0;
    let lastLine = start;
    for (;;) {
      if (exit !== undefined) throw new Error(`${label}: the process ${exit}:\n${out.tail.join('\n')}`);
      const now = performance.now();
      if (now - start > TIMEOUT_MS)
        throw new Error(`${label}: not done after ${TIMEOUT_MS} ms (${last}/${RECORDS} committed)`);
      let offsets: bigint[];
      try {
        offsets = await committedOffsets(admin, launch.groupId, input);
      } catch {
        offsets = []; // the group's coordinator may not answer yet
      }
      const seen = performance.now();
      const total = offsets.reduce((s, o) => s + (o > 0n ? o : 0n), 0n);
      if (total > last) {
        commitsSeen++;
        last = total;
        first ??= { ms: seen - start, committed: Number(total), cpu: processCpuMs(child.pid) };
      }
      if (ends.every((e, p) => (offsets[p] ?? -1n) >= e)) {
        const cpu = processCpuMs(child.pid);
        const brokerEnd = processCpuMs(brokerPid);
        const totalMs = seen - start;
        say(`    ${label}: done after ${(totalMs / 1000).toFixed(2)} s; stopping the process`);
        await stopChild(child, 30_000);
        const v = await checkOutput(output, engine.keepsOrder);
        return {
          totalMs,
          firstOutputMs: first!.ms,
          firstCommitted: first!.committed,
          firstRecordMs: since('first-record'),
          firstCheckpointMs: since('first-commit'),
          runningMs: since('running'),
          cpuMs: cpu,
          steadyCpuMs: cpu === undefined || first!.cpu === undefined ? undefined : cpu - first!.cpu,
          brokerCpuMs:
            brokerStart === undefined || brokerEnd === undefined ? undefined : brokerEnd - brokerStart,
          commitsSeen,
          load,
          verified: v.text,
          verifiedShort: v.short,
          verifiedOk: v.ok,
        };
      }
      if (seen - lastLine >= 5000) {
        lastLine = seen;
        say(`    ${label}: ${((seen - start) / 1000).toFixed(1)} s, ${last}/${RECORDS} committed`);
      }
      await sleep(Math.max(0, POLL_MS - (performance.now() - now)));
    }
  } finally {
    await stopChild(child, 30_000);
    const internal = (await admin.listTopics().catch(() => [] as string[])).filter(
      (t) => t.startsWith(id) && t !== output,
    );
    await admin.deleteTopics({ topics: [output, ...internal] }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- the untimed output check

interface OutRecord {
  readonly k: string;
  readonly n: number;
  readonly count: number;
  readonly sum: number;
}

/**
 * kcat, read_committed: exactly RECORDS outputs, each input n once, keyed by their k, and per key in
 * offset order counts 1..n with running sums and inputs in order (reported, and required only when
 * `ordered`).
 */
async function checkOutput(
  topic: string,
  ordered: boolean,
): Promise<{ text: string; short: string; ok: boolean }> {
  let records: Awaited<ReturnType<typeof kcatRecords<OutRecord>>>;
  try {
    records = await kcatRecords<OutRecord>(topic);
  } catch (e) {
    const text = `not checked (kcat: ${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
    return { text, short: text, ok: false };
  }
  const seen = new Uint8Array(RECORDS);
  let duplicates = 0;
  let foreign = 0;
  let wrongKey = 0;
  for (const r of records) {
    const n = r.value.n;
    if (!Number.isInteger(n) || n < 0 || n >= RECORDS) foreign++;
    else if (seen[n] === 1) duplicates++;
    else seen[n] = 1;
    if (r.key !== r.value.k) wrongKey++;
  }
  const missing = seen.reduce((m, s) => m + (s === 0 ? 1 : 0), 0);
  const seq = checkRunningTotals(records, {
    what: 'per key, counts 1..n, running sums, inputs in order',
    key: (v) => v.k,
    count: (v) => v.count,
    sum: (v) => v.sum,
    addend: (v) => v.n,
    order: (v) => v.n,
  });
  const ok =
    records.length === RECORDS &&
    missing === 0 &&
    duplicates === 0 &&
    foreign === 0 &&
    wrongKey === 0 &&
    (!ordered || seq.broken.length === 0);
  const text = `${records.length} records, ${missing} missing, ${duplicates} duplicates${foreign ? `, ${foreign} foreign` : ''}${wrongKey ? `, ${wrongKey} keyed wrong` : ''}; ${seq.broken.length === 0 ? `per key counts 1..n in order (${seq.keys} keys)` : `${ordered ? '' : 'order not required: '}${describeSequences(seq)}`}`;
  const order =
    seq.broken.length === 0
      ? 'per key counts 1..n in order'
      : `per key order broken in ${seq.broken.length} of ${seq.keys} keys${ordered ? '' : ' (not required)'}`;
  const short = `${records.length} records, ${missing} missing, ${duplicates} duplicates; ${order}`;
  return { text, short, ok };
}

// ---------------------------------------------------------------- the table

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmtRate = (r: number) => Math.round(r).toLocaleString('en-US');
const fmtUs = (cpuMs: number | undefined, records: number) =>
  cpuMs === undefined || records <= 0 ? '?' : `${((cpuMs * 1000) / records).toFixed(1)} µs`;
const secs = (ms: number | undefined) => (ms === undefined ? '?' : `${(ms / 1000).toFixed(2)} s`);
const defined = (xs: readonly (number | undefined)[]): number[] => xs.filter((x) => x !== undefined);

interface Row {
  readonly engine: Engine;
  readonly runs: readonly RunResult[];
  readonly fromStart: number;
  readonly steady: number;
  readonly firstOutputMs: number;
}

function rowOf(engine: Engine, runs: readonly RunResult[]): Row {
  return {
    engine,
    runs,
    fromStart: median(runs.map(fromStart)),
    steady: median(runs.map(steady)),
    firstOutputMs: median(runs.map((r) => r.firstOutputMs)),
  };
}

function table(rows: readonly Row[]): string[] {
  const lines = [
    '| engine | state | records/s from start | steady records/s | runs: from start / steady | first committed output after | first record after | CPU/record: process | CPU/record: process, steady | CPU/record: broker | commits seen | load avg | committed output (kcat, read_committed) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of rows) {
    const cpu = defined(r.runs.map((x) => x.cpuMs));
    const steadyCpu = defined(r.runs.map((x) => x.steadyCpuMs));
    const steadyRecords = median(r.runs.map((x) => RECORDS - x.firstCommitted));
    const broker = defined(r.runs.map((x) => x.brokerCpuMs));
    const failed = r.runs.filter((x) => !x.verifiedOk);
    const firstRecord = defined(r.runs.map((x) => x.firstRecordMs));
    lines.push(
      `| ${r.engine.what} | ${r.engine.state} | ${fmtRate(r.fromStart)} | ${fmtRate(r.steady)} | ${r.runs.map((x) => `${Math.round(fromStart(x) / 1000)}k / ${Math.round(steady(x) / 1000)}k`).join(', ')} | ${(r.firstOutputMs / 1000).toFixed(2)} s | ${firstRecord.length ? `${(median(firstRecord) / 1000).toFixed(2)} s` : '?'} | ${fmtUs(cpu.length ? median(cpu) : undefined, RECORDS)} | ${fmtUs(steadyCpu.length ? median(steadyCpu) : undefined, steadyRecords)} | ${fmtUs(broker.length ? median(broker) : undefined, RECORDS)} | ${median(r.runs.map((x) => x.commitsSeen))} | ${r.runs.map((x) => x.load.toFixed(1)).join(', ')} | ${failed.length === 0 ? r.runs[0]!.verifiedShort : `**FAILED** ${failed[0]!.verifiedShort}`} |`,
    );
  }
  return lines;
}

function ratios(rows: readonly Row[]): string[] {
  const kstate = rows.find((r) => r.engine.id === 'kstate');
  if (!kstate) return [];
  const lines = [
    '| kstate / | records/s from start | steady records/s | time to first committed output | paired: from start | paired: steady |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    if (r === kstate) continue;
    lines.push(
      `| ${r.engine.what}, ${r.engine.state} | ${(kstate.fromStart / r.fromStart).toFixed(2)} | ${(kstate.steady / r.steady).toFixed(2)} | ${(kstate.firstOutputMs / r.firstOutputMs).toFixed(2)} | ${paired(kstate, r, fromStart)} | ${paired(kstate, r, steady)} |`,
    );
  }
  return lines;
}

/**
 * The ratio of `a` to `b` round by round (their runs of one round ran one after the other), as the
 * median and the range: this VM's speed moves on a scale of tens of seconds, which the medians of
 * each engine's runs mix into the ratio; a round's pair mostly shares its phase.
 */
function paired(a: Row, b: Row, rate: (r: RunResult) => number): string {
  const n = Math.min(a.runs.length, b.runs.length);
  const rs = Array.from({ length: n }, (_, i) => rate(a.runs[i]!) / rate(b.runs[i]!));
  if (n === 1) return rs[0]!.toFixed(2);
  return `${median(rs).toFixed(2)} (${Math.min(...rs).toFixed(2)}-${Math.max(...rs).toFixed(2)})`;
}

// ---------------------------------------------------------------- --profile

/** The newest .cpuprofile in PROFILE_DIR after a profiled kstate run: its summary. */
function reportProfile(): void {
  const files = readdirSync(PROFILE_DIR)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(PROFILE_DIR, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (files.length === 0) {
    say(`    no .cpuprofile in ${PROFILE_DIR}`);
    return;
  }
  say(`    profile: ${files[0]}`);
  for (const line of summarizeProfile(JSON.parse(readFileSync(files[0]!, 'utf8')))) say(`    ${line}`);
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (BUILD && ENGINES.some((e) => e.startsWith('kstreams'))) await buildKafkaStreams();
  if (PROFILE_DIR !== '') mkdirSync(PROFILE_DIR, { recursive: true });
  const external = process.env.KAFKA_BROKERS?.trim();
  let brokers: string;
  let stopBroker: () => Promise<void> = async () => {};
  let version = 'external';
  if (external) {
    brokers = external;
  } else {
    say('starting a Kafka broker with the harness ...');
    const broker = await startBroker();
    brokers = broker.brokers;
    stopBroker = broker.stop;
    version = broker.version;
    brokerPid = broker.pid;
    // kcat (sequence-check.ts) reads the brokers from the environment.
    process.env.KAFKA_BROKERS = brokers;
    say(`Kafka ${broker.version} on ${broker.brokers} (started in ${broker.startMs} ms)`);
  }
  const kafka = createKafka({ brokers: brokers.split(',') }, '-peers');
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cpu = cpus();
    say(
      `node ${process.version}, ${cpu.length} x ${cpu[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Kafka ${version} at ${brokers}; Node compile cache ${COMPILE_CACHE ? 'on' : 'off'}`,
    );
    const input = `peers-${runTag}.in`;
    say(
      `producing ${RECORDS} input records (~${VALUE_BYTES} B values, ${KEYS} keys, ${PARTITIONS} partitions) to ${input} ...`,
    );
    await createTopics(admin, [input], PARTITIONS);
    await produceInput(kafka, input, { records: RECORDS, keys: KEYS, valueBytes: VALUE_BYTES });
    const ends: bigint[] = [];
    for (const o of await admin.fetchTopicOffsets(input)) ends[o.partition] = BigInt(o.high);
    const total = ends.reduce((s, e) => s + e, 0n);
    if (total !== BigInt(RECORDS))
      throw new Error(`input ${input} holds ${total} records, expected ${RECORDS}`);
    say(
      `${ENGINES.join(', ')}: interval ${INTERVAL_MS} ms, ${REPEAT} run(s) each, Kafka Streams with ${KS_THREADS} stream thread(s), record cache ${KS_CACHE ? 'on' : 'off'}`,
    );
    if (WARMUP) {
      say('warm-up run (not reported):');
      await runEngine(ENGINE_INFO.b2, admin, brokers, input, ends, 'b2 warm-up');
    }
    const runs = new Map<EngineId, RunResult[]>(ENGINES.map((e) => [e, []]));
    for (let rep = 1; rep <= REPEAT; rep++) {
      // Each round starts with the next engine, so that no engine always runs first or last.
      for (let i = 0; i < ENGINES.length; i++) {
        const id = ENGINES[(i + rep - 1) % ENGINES.length]!;
        const label = `${id} #${rep}`;
        const r = await runEngine(ENGINE_INFO[id], admin, brokers, input, ends, label);
        runs.get(id)!.push(r);
        say(
          `  ${label}: ${fmtRate(fromStart(r))} records/s from start, ${fmtRate(steady(r))} steady; first committed output after ${(r.firstOutputMs / 1000).toFixed(2)} s (${r.firstCommitted} records), first record after ${secs(r.firstRecordMs)}${r.firstCheckpointMs === undefined ? '' : `, first checkpoint after ${secs(r.firstCheckpointMs)}`}${r.runningMs === undefined ? '' : `, RUNNING after ${secs(r.runningMs)}`}; CPU per record ${fmtUs(r.cpuMs, RECORDS)} (steady ${fmtUs(r.steadyCpuMs, RECORDS - r.firstCommitted)}), broker ${fmtUs(r.brokerCpuMs, RECORDS)}; ${r.commitsSeen} commits seen; output: ${r.verified}${r.verifiedOk ? '' : ' -- CHECK FAILED'}`,
        );
        if (id === 'kstate' && PROFILE_DIR !== '') reportProfile();
      }
    }
    const rows = ENGINES.map((e) => rowOf(ENGINE_INFO[e], runs.get(e)!));
    say('');
    say(
      `${RECORDS} records, ${PARTITIONS} partitions, ${KEYS} keys, ~${VALUE_BYTES} B values, checkpoint / commit interval ${INTERVAL_MS} ms, ${REPEAT === 1 ? 'one run' : `median of ${REPEAT} runs`} per row, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} at the end`,
    );
    say('');
    for (const l of table(rows)) say(l);
    say('');
    for (const l of ratios(rows)) say(l);
    await admin.deleteTopics({ topics: [input] }).catch(() => {});
    if (rows.some((r) => r.runs.some((x) => !x.verifiedOk))) process.exitCode = 1;
  } finally {
    await admin.disconnect().catch(() => {});
    await stopBroker();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`kafka-peers: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
