/**
 * Kafka throughput benchmark: records per second of a keyed count-and-sum job from a Kafka topic to a
 * Kafka topic, as raw kafkajs loops (the limits) and as our job through `runKafkaJob`.
 *
 *   A   raw kafkajs consume-and-produce: a consumer group's eachBatch -> idempotent producer(s),
 *       offsets auto-committed by kafkajs after each batch (at-least-once).
 *   B1  raw kafkajs transactional loop, one transaction per fetched batch (send + sendOffsets + commit).
 *   B2  raw kafkajs transactional loop, per partition one open transaction, committed by a timer every
 *       `--interval` ms (the job's checkpoint cadence).
 *   C-F our job (KafkaSource -> keyBy -> keyed count/sum -> KafkaSink), checkpoints every
 *       `--interval` ms, filesystem checkpoint storage: at-least-once / exactly-once x heap / level.
 *
 * Every scenario gets fresh topics with `--records` pre-produced input records (~`--value-bytes`
 * JSON values, keyed over `--keys` keys, `--partitions` partitions; produced before the clock starts).
 * The clock runs from the start of the consumer (or `runKafkaJob`) until every input record has been
 * processed and its output is committed: A, the outputs of every input acknowledged; B, committed;
 * C-F, the job's committed consumer offsets (which its checkpoint commits carry) reach the end of the
 * input, which for exactly-once means the transactions holding all outputs are committed and for
 * at-least-once that all outputs were acknowledged first. Afterwards (untimed) the output is read back
 * with kcat in read_committed mode and checked: exactly N distinct inputs, no duplicates (A, B, E, F);
 * at least N (C, D).
 *
 * All loops do the same per-record work: JSON.parse the value, update a per-key count and sum, emit
 * `{k, n, count, sum}` keyed by k. Raw loops keep that state in a Map.
 *
 *     node scripts/bench/kafka-throughput.ts                       # defaults: about a minute on 2 cores
 *     node scripts/bench/kafka-throughput.ts --repeat=3                  # medians, about 3 minutes
 *     node scripts/bench/kafka-throughput.ts --records=500000 --partitions=8
 *     node scripts/bench/kafka-throughput.ts --scenarios=A,E        # a subset
 *
 * Flags: --records=200000 --partitions=4 --keys=1000 --value-bytes=100 --interval=1000 (checkpoint
 * and B2 commit interval, ms) --repeat=1 (median of n runs) --scenarios=A,B1,B2,C,D,E,F
 * --warmup=false (skip the untimed run of A made first) --dir=<scratch directory> (default: the OS
 * temp directory) --profile=<dir> (CPU profile of each run, see `profiled`) --broker-pid=<pid> (with
 * KAFKA_BROKERS: the broker's CPU time is read from /proc). Job settings to try (default: the
 * framework's): --source-buffer=<KafkaSource bufferRecords> --sink-batch=<KafkaSink batchRecords>
 * --fetch-bytes=<consumer maxBytesPerPartition>.
 *
 * Uses KAFKA_BROKERS when set, else starts a broker with the harness (and stops it at the end).
 * A benchmark, not a test: figures depend on the machine. docs/benchmarks-kafka.md records a run.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createKafka, KafkaSink, KafkaSource, runKafkaJob } from '../../connectors/kafka/index.ts';
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import {
  type CheckpointStats,
  FilesystemCheckpointStorage,
  HeapKeyedStateBackend,
  type KeyedProcessFunction,
  levelBackend,
  StreamJob,
  valueState,
} from '../../framework/index.ts';
import { summarizeProfile } from './cpu-profile.ts';
import { flag, intFlag } from './flags.ts';
import { createTopics, processCpuMs, produceInput } from './kafka-bench-input.ts';
import {
  chunks,
  consumerFor,
  type EachBatchPayload,
  heapTransform,
  startTransactionalLoop,
  type TransactionalLoop,
} from './kafka-raw-loops.ts';

type Kafka = ReturnType<typeof createKafka>;
type Producer = ReturnType<Kafka['producer']>;
type Admin = ReturnType<Kafka['admin']>;

// ---------------------------------------------------------------- flags

const ALL = ['A', 'B1', 'B2', 'C', 'D', 'E', 'F'] as const;
type ScenarioId = (typeof ALL)[number];

const RECORDS = intFlag('records', 200_000);
const PARTITIONS = intFlag('partitions', 4);
const KEYS = intFlag('keys', 1000);
const VALUE_BYTES = intFlag('value-bytes', 100);
const INTERVAL_MS = intFlag('interval', 1000);
const REPEAT = intFlag('repeat', 1);
/** An untimed run of A first: a fresh broker (JIT, page cache) and a fresh node make the first run slow. */
const WARMUP = flag('warmup', 'true') !== 'false';
const SCENARIOS = flag('scenarios', ALL.join(','))
  .split(',')
  .map((s) => s.trim().toUpperCase())
  .filter((s) => s.length > 0);
for (const s of SCENARIOS) {
  if (!(ALL as readonly string[]).includes(s))
    throw new Error(`--scenarios: unknown scenario ${s} (known: ${ALL.join(', ')})`);
}
const SCRATCH = flag('dir', tmpdir());
const PROFILE_DIR = flag('profile', '');
/** Job settings to experiment with (default: the framework's defaults, flags unset). */
const optionalInt = (name: string) => (flag(name, '') === '' ? undefined : intFlag(name, 1));
const SOURCE_BUFFER = optionalInt('source-buffer');
const SINK_BATCH = optionalInt('sink-batch');
const FETCH_BYTES = optionalInt('fetch-bytes');
/** Longest a single run may take before it is reported as failed. */
const RUN_TIMEOUT_MS = Math.max(120_000, RECORDS * 2);

const say = (line: string) => process.stdout.write(`${line}\n`);

// ---------------------------------------------------------------- the work every loop does

interface In {
  readonly k: string;
  readonly n: number;
}
interface Out {
  readonly k: string;
  readonly n: number;
  readonly count: number;
  readonly sum: number;
}

class CountAndSum implements KeyedProcessFunction<string, In, Out> {
  processElement(
    e: In,
    ctx: Parameters<KeyedProcessFunction<string, In, Out>['processElement']>[1],
    out: { collect(v: Out): void },
  ): void {
    const count = ctx.getState(valueState<number>('count'));
    const sum = ctx.getState(valueState<number>('sum'));
    const c = (count.value() ?? 0) + 1;
    const s = (sum.value() ?? 0) + e.n;
    count.update(c);
    sum.update(s);
    out.collect({ k: e.k, n: e.n, count: c, sum: s });
  }
}

function benchJob(jobId: string, input: string, output: string, guarantee: Guarantee): StreamJob {
  const job = new StreamJob(jobId);
  job
    .source(
      new KafkaSource<In>({
        topic: input,
        ...(SOURCE_BUFFER === undefined ? {} : { bufferRecords: SOURCE_BUFFER }),
      }),
    )
    .keyBy((e) => e.k)
    .process(new CountAndSum(), { uid: 'count-and-sum' })
    .sinkTo(
      new KafkaSink<Out>({
        topic: output,
        guarantee,
        encode: (v) => ({ key: v.k, value: JSON.stringify(v) }),
        ...(SINK_BATCH === undefined ? {} : { batchRecords: SINK_BATCH }),
      }),
    );
  return job;
}

// ---------------------------------------------------------------- scenarios

type Guarantee = 'at-least-once' | 'exactly-once';

interface Scenario {
  readonly id: ScenarioId;
  readonly what: string;
  readonly guarantee: Guarantee;
  readonly state: string;
  readonly commits: string;
}

const SCENARIO_INFO: Record<ScenarioId, Scenario> = {
  A: {
    id: 'A',
    what: 'raw kafkajs consume -> produce',
    guarantee: 'at-least-once',
    state: 'Map',
    commits: 'offsets auto-committed after each batch',
  },
  B1: {
    id: 'B1',
    what: 'raw kafkajs transactional loop',
    guarantee: 'exactly-once',
    state: 'Map',
    commits: 'one transaction per fetched batch',
  },
  B2: {
    id: 'B2',
    what: 'raw kafkajs transactional loop',
    guarantee: 'exactly-once',
    state: 'Map',
    commits: `per partition, one transaction committed every ${INTERVAL_MS} ms`,
  },
  C: {
    id: 'C',
    what: 'our job (runKafkaJob)',
    guarantee: 'at-least-once',
    state: 'heap',
    commits: `checkpoint every ${INTERVAL_MS} ms`,
  },
  D: {
    id: 'D',
    what: 'our job (runKafkaJob)',
    guarantee: 'at-least-once',
    state: 'level',
    commits: `checkpoint every ${INTERVAL_MS} ms`,
  },
  E: {
    id: 'E',
    what: 'our job (runKafkaJob)',
    guarantee: 'exactly-once',
    state: 'heap',
    commits: `checkpoint every ${INTERVAL_MS} ms`,
  },
  F: {
    id: 'F',
    what: 'our job (runKafkaJob)',
    guarantee: 'exactly-once',
    state: 'level',
    commits: `checkpoint every ${INTERVAL_MS} ms`,
  },
};

interface RunResult {
  /** From consumer / job start to everything committed. */
  readonly ms: number;
  /** CPU time of this process (user + system) over `ms`: the loop, its clients, the job. */
  readonly cpuMs: number;
  /** CPU time of the broker's process over `ms`, when its pid is known. */
  readonly brokerCpuMs: number | undefined;
  /** From start to the first record taken. */
  readonly firstRecordMs: number;
  readonly checkpoints?: { count: number; meanSyncMs: number; meanAsyncMs: number; maxAsyncMs: number };
  readonly transactions?: number;
  /** Consumer-group rebalances seen by a raw loop's consumer. */
  readonly rebalances?: number;
  /** The output check (untimed). */
  readonly verified: string;
  readonly verifiedOk: boolean;
  readonly load: number;
}

interface Topics {
  readonly input: string;
  readonly output: string;
  /** Input end offset per partition. */
  readonly ends: readonly bigint[];
}

/** The broker's pid (harness broker, or `--broker-pid`), for its CPU time from /proc. */
let brokerPid: number | undefined =
  flag('broker-pid', '') === '' ? undefined : Number(flag('broker-pid', ''));
const brokerCpuMs = () => processCpuMs(brokerPid);

/** Wall time, this process's CPU time and the broker's CPU time, from now until `stop()`. */
function startClock(): {
  readonly start: number;
  stop(): { ms: number; cpuMs: number; brokerCpuMs: number | undefined };
} {
  const start = performance.now();
  const cpu = process.cpuUsage();
  const broker = brokerCpuMs();
  return {
    start,
    stop() {
      const ms = performance.now() - start;
      const used = process.cpuUsage(cpu);
      const brokerNow = brokerCpuMs();
      return {
        ms,
        cpuMs: (used.user + used.system) / 1000,
        brokerCpuMs: broker === undefined || brokerNow === undefined ? undefined : brokerNow - broker,
      };
    },
  };
}

let runCounter = 0;
const runTag = Date.now().toString(36);

async function freshTopics(
  admin: Admin,
  kafka: Kafka,
  brokers: readonly string[],
  id: string,
): Promise<Topics> {
  const base = `bench.${runTag}.${id.toLowerCase()}.${++runCounter}`;
  const input = `${base}.in`;
  const output = `${base}.out`;
  await createTopics(admin, [input, output], PARTITIONS);
  await produceInput(kafka, input, { records: RECORDS, keys: KEYS, valueBytes: VALUE_BYTES });
  const offsets = await admin.fetchTopicOffsets(input);
  const ends: bigint[] = [];
  for (const o of offsets) ends[o.partition] = BigInt(o.high);
  const total = ends.reduce((s, e) => s + e, 0n);
  if (total !== BigInt(RECORDS))
    throw new Error(`input ${input} holds ${total} records, expected ${RECORDS}`);
  const check = await checkRecords(brokers, input, true);
  if (!check.ok) throw new Error(`input ${input} is not every n once: ${check.text}`);
  return { input, output, ends };
}

/** Resolves when `done()` holds, polling; progress lines every 2 s; rejects on `failed` or timeout. */
async function waitUntil(
  label: string,
  done: () => boolean | Promise<boolean>,
  progress: () => string,
  failed?: Promise<unknown>,
): Promise<void> {
  const start = performance.now();
  let lastLine = start;
  let failure: unknown;
  let hasFailed = false;
  failed?.catch((e: unknown) => {
    failure = e;
    hasFailed = true;
  });
  for (;;) {
    if (hasFailed) throw failure;
    if (await done()) return;
    const now = performance.now();
    if (now - start > RUN_TIMEOUT_MS)
      throw new Error(`${label}: not done after ${RUN_TIMEOUT_MS} ms (${progress()})`);
    if (now - lastLine >= 2000) {
      lastLine = now;
      say(`    ${label}: ${((now - start) / 1000).toFixed(1)} s, ${progress()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Per input partition, the offset after the last record whose output is acknowledged / committed. */
function progressTracker(t: Topics) {
  const reached = t.ends.map(() => 0n);
  return {
    advance(partition: number, next: bigint) {
      if (next > reached[partition]!) reached[partition] = next;
    },
    done: () => reached.every((r, p) => r >= t.ends[p]!),
    text: () => `${reached.reduce((s, r) => s + r, 0n)}/${RECORDS}`,
  };
}

/**
 * A: consume -> transform -> produce; eachBatch returns once its outputs are acknowledged, and kafkajs
 * commits the batch's offsets after it (auto-commit): at-least-once.
 */
async function runRawLoop(
  kafka: Kafka,
  t: Topics,
  label: string,
): Promise<Omit<RunResult, 'verified' | 'verifiedOk' | 'load'>> {
  const transform = heapTransform();
  const consumer = consumerFor(kafka, `bench-raw-${runTag}-${runCounter}`);
  const producers: Producer[] = [];
  const progress = progressTracker(t);
  let rebalances = 0;
  let first = 0;
  const clock = startClock();
  try {
    for (let p = 0; p < PARTITIONS; p++) {
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      producers.push(producer);
    }
    await consumer.connect();
    await consumer.subscribe({ topics: [t.input], fromBeginning: true });
    consumer.on(consumer.events.REBALANCING, () => rebalances++);
    let failed!: (e: unknown) => void;
    const failure = new Promise<never>((_, reject) => {
      failed = reject;
    });
    await consumer.run({
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatch: async ({ batch }: EachBatchPayload) => {
        if (batch.messages.length === 0) return;
        if (first === 0) first = performance.now();
        const messages = batch.messages.map((m) => transform(m.value));
        try {
          const producer = producers[batch.partition]!;
          await Promise.all(chunks(messages).map((c) => producer.send({ topic: t.output, messages: c })));
        } catch (e) {
          failed(e);
          throw e;
        }
        progress.advance(batch.partition, BigInt(batch.lastOffset()) + 1n);
      },
    });
    await waitUntil(label, progress.done, () => `${progress.text()} inputs acknowledged downstream`, failure);
    return { ...clock.stop(), firstRecordMs: first - clock.start, rebalances };
  } finally {
    await consumer.disconnect().catch(() => {});
    await Promise.allSettled(producers.map((p) => p.disconnect()));
  }
}

/** B1 / B2: the transactional loop of kafka-raw-loops.ts, in this process; done when every input's output is committed. */
async function runRawTransactional(
  kafka: Kafka,
  t: Topics,
  label: string,
  intervalMs: number | undefined,
): Promise<Omit<RunResult, 'verified' | 'verifiedOk' | 'load'>> {
  const id = `bench-tx-${runTag}-${runCounter}`;
  const progress = progressTracker(t);
  let loop: TransactionalLoop | undefined;
  const clock = startClock();
  try {
    loop = await startTransactionalLoop(kafka, {
      input: t.input,
      output: t.output,
      groupId: id,
      transactionalIdPrefix: id,
      partitions: PARTITIONS,
      intervalMs,
      committed: progress.advance,
    });
    const l = loop;
    await waitUntil(
      label,
      progress.done,
      () => `${progress.text()} inputs committed in ${l.transactions()} transactions`,
      l.failure,
    );
    return {
      ...clock.stop(),
      firstRecordMs: l.firstRecordAt() - clock.start,
      transactions: l.transactions(),
      rebalances: l.rebalances(),
    };
  } finally {
    await loop?.stop();
  }
}

/** C-F: the job through runKafkaJob; done when the job's committed offsets reach the input's end. */
async function runOurJob(
  admin: Admin,
  brokers: readonly string[],
  t: Topics,
  label: string,
  guarantee: Guarantee,
  state: 'heap' | 'level',
): Promise<Omit<RunResult, 'verified' | 'verifiedOk' | 'load'>> {
  const jobId = `bench-job-${runTag}-${runCounter}`;
  const dir = mkdtempSync(join(SCRATCH, 'kafka-bench-'));
  const stats: CheckpointStats[] = [];
  let first = 0;
  const clock = startClock();
  const job = await runKafkaJob(benchJob(jobId, t.input, t.output, guarantee), {
    connection: { brokers },
    storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
    backend: state === 'level' ? levelBackend(join(dir, 'state')) : () => new HeapKeyedStateBackend(),
    checkpoints: { intervalMs: INTERVAL_MS, guarantee },
    restart: { kind: 'none' },
    ...(FETCH_BYTES === undefined ? {} : { consumer: { maxBytesPerPartition: FETCH_BYTES } }),
    listener: { checkpointCompleted: (s) => stats.push(s) },
  });
  try {
    const recordsIn = () => job.tasks().reduce((s, task) => s + task.recordsIn, 0);
    let committedOffsets = 0n;
    let lastOffsetPoll = 0;
    await waitUntil(
      label,
      async () => {
        if (first === 0 && recordsIn() > 0) first = performance.now();
        if (recordsIn() < RECORDS) return false;
        // Each checkpoint commit carries the task's offsets (sendOffsets): once they reach the end of
        // the input, every output is committed (exactly-once) or was acknowledged first (at-least-once).
        const now = performance.now();
        if (now - lastOffsetPoll < 50) return false;
        lastOffsetPoll = now;
        const [offsets] = await admin.fetchOffsets({ groupId: jobId, topics: [t.input] });
        committedOffsets = 0n;
        let all = true;
        for (const p of offsets?.partitions ?? []) {
          const o = BigInt(p.offset);
          if (o >= 0n) committedOffsets += o;
          if (o < t.ends[p.partition]!) all = false;
        }
        return all && (offsets?.partitions.length ?? 0) === PARTITIONS;
      },
      () =>
        `${recordsIn()}/${RECORDS} records in, ${stats.length} checkpoints completed, committed offsets ${committedOffsets}`,
      job.done,
    );
    const measured = clock.stop();
    const n = stats.length;
    const mean = (f: (s: CheckpointStats) => number) =>
      n === 0 ? 0 : stats.reduce((a, s) => a + f(s), 0) / n;
    return {
      ...measured,
      firstRecordMs: first - clock.start,
      checkpoints: {
        count: n,
        meanSyncMs: mean((s) => s.syncMs),
        meanAsyncMs: mean((s) => s.asyncMs),
        maxAsyncMs: Math.max(0, ...stats.map((s) => s.asyncMs)),
      },
    };
  } finally {
    await job.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- --profile

/**
 * With `--profile=<dir>`: a CPU profile (inspector, this process only) of each run, from the start of
 * the clock to the end of its teardown, written to `<dir>/<scenario>-<n>.cpuprofile` (open it in
 * Chrome DevTools), and a summary: self time by code area and the top functions.
 */
async function profiled<T>(name: string, run: () => Promise<T>): Promise<T> {
  if (PROFILE_DIR === '') return run();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await run();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    mkdirSync(PROFILE_DIR, { recursive: true });
    const file = join(PROFILE_DIR, `${name}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    say(`    profile: ${file}`);
    for (const line of summarizeProfile(profile)) say(`    ${line}`);
  }
}

// ---------------------------------------------------------------- the untimed output check

function kcat(brokers: readonly string[], topic: string): Promise<string> {
  return new Promise((resolve, reject) => {
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
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    );
  });
}

/** Records read with kcat (read_committed), by their `n`: each of 0..N-1 exactly once (exact) or at least once. */
async function checkRecords(
  brokers: readonly string[],
  topic: string,
  exact: boolean,
): Promise<{ text: string; ok: boolean }> {
  let stdout: string;
  try {
    stdout = await kcat(brokers, topic);
  } catch (e) {
    return {
      text: `not checked (kcat: ${e instanceof Error ? e.message.split('\n')[0] : String(e)})`,
      ok: true,
    };
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
  const ok = missing === 0 && (!exact || duplicates === 0);
  return { text: `${total} records, ${missing} missing, ${duplicates} duplicates`, ok };
}

// ---------------------------------------------------------------- main

interface Row {
  readonly s: Scenario;
  readonly runs: RunResult[];
  readonly median: RunResult;
  readonly rate: number;
}

function median(runs: RunResult[]): RunResult {
  const sorted = [...runs].sort((a, b) => a.ms - b.ms);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const fmtRate = (r: number) => Math.round(r).toLocaleString('en-US');
/** CPU milliseconds over the run -> microseconds per input record. */
const fmtUs = (cpuMs: number | undefined) =>
  cpuMs === undefined ? '?' : `${((cpuMs * 1000) / RECORDS).toFixed(1)} µs`;
const fmtRatio = (r: number | undefined) => (r === undefined ? '–' : `${r.toFixed(2)}`);

async function runScenario(
  id: ScenarioId,
  kafka: Kafka,
  admin: Admin,
  brokers: readonly string[],
  rep: number,
): Promise<RunResult> {
  const s = SCENARIO_INFO[id];
  const label = rep === 0 ? `${id} warm-up` : `${id} #${rep}`;
  say(`  ${label}: ${s.what}, ${s.guarantee}, ${s.state}; producing ${RECORDS} input records ...`);
  const t = await freshTopics(admin, kafka, brokers, id);
  const load = loadavg()[0]!;
  say(`  ${label}: ${t.input} ready (load average ${load.toFixed(2)}); running`);
  const r = await profiled(
    `${id}-${rep}`,
    (): Promise<Omit<RunResult, 'verified' | 'verifiedOk' | 'load'>> => {
      switch (id) {
        case 'A':
          return runRawLoop(kafka, t, label);
        case 'B1':
          return runRawTransactional(kafka, t, label, undefined);
        case 'B2':
          return runRawTransactional(kafka, t, label, INTERVAL_MS);
        case 'C':
          return runOurJob(admin, brokers, t, label, 'at-least-once', 'heap');
        case 'D':
          return runOurJob(admin, brokers, t, label, 'at-least-once', 'level');
        case 'E':
          return runOurJob(admin, brokers, t, label, 'exactly-once', 'heap');
        case 'F':
          return runOurJob(admin, brokers, t, label, 'exactly-once', 'level');
      }
    },
  );
  const v = await checkRecords(brokers, t.output, s.guarantee === 'exactly-once');
  const result: RunResult = { ...r, verified: v.text, verifiedOk: v.ok, load };
  const cp = r.checkpoints
    ? `, ${r.checkpoints.count} checkpoints (mean sync ${r.checkpoints.meanSyncMs.toFixed(1)} ms, async ${r.checkpoints.meanAsyncMs.toFixed(0)} ms, max async ${r.checkpoints.maxAsyncMs.toFixed(0)} ms)`
    : r.transactions !== undefined
      ? `, ${r.transactions} transactions`
      : '';
  const rb = r.rebalances ? `, ${r.rebalances} rebalances` : '';
  say(
    `  ${label}: ${fmtRate((RECORDS * 1000) / r.ms)} records/s (${(r.ms / 1000).toFixed(2)} s, first record after ${r.firstRecordMs.toFixed(0)} ms, CPU per record: node ${fmtUs(r.cpuMs)}, broker ${fmtUs(r.brokerCpuMs)}${cp}${rb}); output: ${v.text}${v.ok ? '' : ' -- CHECK FAILED'}`,
  );
  await admin.deleteTopics({ topics: [t.input, t.output] }).catch(() => {});
  return result;
}

function table(rows: readonly Row[]): string[] {
  const a = rows.find((r) => r.s.id === 'A')?.rate;
  const b = rows.find((r) => r.s.id === 'B2')?.rate;
  const lines = [
    '| | loop | guarantee | state | commits | records/s | runs (records/s) | vs A | vs B2 | first record after | CPU/record: node | CPU/record: broker | checkpoints (mean async) | load avg | committed output (kcat, read_committed) |',
    '| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |',
  ];
  for (const r of rows) {
    const m = r.median;
    const vsB = r.s.guarantee === 'exactly-once' && b !== undefined ? b : undefined;
    lines.push(
      `| ${r.s.id} | ${r.s.what} | ${r.s.guarantee} | ${r.s.state} | ${r.s.commits} | ${fmtRate(r.rate)} | ${r.runs.map((x) => `${Math.round(RECORDS / x.ms)}k`).join(', ')} | ${fmtRatio(a === undefined ? undefined : r.rate / a)} | ${fmtRatio(vsB === undefined ? undefined : r.rate / vsB)} | ${m.firstRecordMs.toFixed(0)} ms | ${fmtUs(m.cpuMs)} | ${fmtUs(m.brokerCpuMs)} | ${m.checkpoints ? `${m.checkpoints.count} (${m.checkpoints.meanAsyncMs.toFixed(0)} ms)` : m.transactions !== undefined ? `${m.transactions} transactions` : '–'} | ${m.load.toFixed(1)} | ${m.verified}${m.verifiedOk ? '' : ' **FAILED**'} |`,
    );
  }
  return lines;
}

async function main(): Promise<void> {
  const external = process.env.KAFKA_BROKERS?.trim();
  let brokers: string[];
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
      `node ${process.version}, ${cpu.length} x ${cpu[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Kafka ${version} at ${brokers.join(',')}`,
    );
    say(
      `${RECORDS} records (~${VALUE_BYTES} B values, ${KEYS} keys), ${PARTITIONS} partitions, interval ${INTERVAL_MS} ms, ${REPEAT} run(s) per scenario: ${SCENARIOS.join(', ')}`,
    );
    if (WARMUP) {
      say('warm-up run (not reported):');
      await runScenario('A', kafka, admin, brokers, 0);
    }
    // Rounds of every scenario (not every repeat of one scenario in a row), so that a change in the
    // machine's load spreads over all rows.
    const runs = new Map<ScenarioId, RunResult[]>();
    for (let rep = 1; rep <= REPEAT; rep++) {
      for (const id of SCENARIOS as ScenarioId[]) {
        const r = await runScenario(id, kafka, admin, brokers, rep);
        runs.set(id, [...(runs.get(id) ?? []), r]);
      }
    }
    const rows: Row[] = [...runs].map(([id, rs]) => {
      const m = median(rs);
      return { s: SCENARIO_INFO[id], runs: rs, median: m, rate: (RECORDS * 1000) / m.ms };
    });
    say('');
    say(
      `${RECORDS} records, ${PARTITIONS} partitions, ${KEYS} keys, checkpoint / B2 interval ${INTERVAL_MS} ms, ${REPEAT === 1 ? 'one run' : `median of ${REPEAT} runs`} per row; ratios: records/s against A, and exactly-once rows against B2 (same commit cadence)`,
    );
    say('');
    for (const l of table(rows)) say(l);
    if (rows.some((r) => r.runs.some((x) => !x.verifiedOk))) process.exitCode = 1;
  } finally {
    await admin.disconnect().catch(() => {});
    await stopBroker();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`kafka-throughput: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
