/**
 * The Kafka connectors' own cost per record (issue 15, part 5), without a broker: what kstate does
 * between a fetched batch and a producer's `sendBatch`, against what the raw kafkajs loop (B2 of
 * scripts/bench/kafka-peers.ts) does between the same two points, in one process, alternating.
 *
 *   kstate  the count job (connectors/kafka/test/jobs/count-job.ts: keyBy, two value states on the
 *           heap backend, a KafkaSink with exactly-once transactions) through runJob, checkpoints
 *           every second; its source is the Kafka source's own `PartitionReader`, fed batches of
 *           kafkajs-shaped messages the way the consumer hub feeds it (a batch offered, the next one
 *           a turn of the event loop later, or when the reader asks for room); its sink's producers
 *           are stubs whose `sendBatch` resolves at once.
 *   loop    B2's per-batch work (kafka-raw-loops.ts: `heapTransform` per message, sends of 500 in
 *           order) over the same batches, into the same stub.
 *
 * Neither side decodes a fetch response or encodes a Produce request (kafkajs's work, the same for
 * both), so the difference printed is what kstate adds per record on its own side of the Kafka
 * client: the part the 0.9-of-B2 goal is about. Messages are made per batch, just before it is
 * offered, as kafkajs decodes each fetch; keys are partitioned as Kafka's default partitioner does.
 *
 *     node scripts/bench/kafka-path.ts [--records=1000000] [--keys=1000] [--batch=5000] [--rounds=5]
 *         [--capacity=5000] (the reader's, KafkaSource bufferRecords) [--storage=files|memory]
 *
 * Printed: wall time per record of each side (median of the rounds, and each round), and kstate's
 * CPU per record (user + system of the process, all threads: its collector's helpers too).
 *
 * A measurement, not a test: docs/benchmarks-kafka.md records a run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KafkaMessage } from '../../connectors/kafka/internal/kafkajs.ts';
import { KafkaSink } from '../../connectors/kafka/sink/kafka-sink.ts';
import { PartitionReader } from '../../connectors/kafka/source/partition-reader.ts';
import {
  CountAndSum,
  checkpointStorage,
  type In,
  type Out,
} from '../../connectors/kafka/test/jobs/count-job.ts';
import {
  MemoryCheckpointStorage,
  type PullSourceReader,
  type Source,
  type SourceBatch,
  StreamJob,
} from '../../framework/index.ts';
import { runJob } from '../../framework/runtime/job.ts';
import { keyGroupOf, keyId } from '../../framework/state/keys.ts';
import { flag, intFlag } from './flags.ts';
import { inputValue } from './kafka-bench-input.ts';
import { chunks, heapTransform } from './kafka-raw-loops.ts';

const RECORDS = intFlag('records', 1_000_000);
const KEYS = intFlag('keys', 1000);
const BATCH = intFlag('batch', 5000);
const ROUNDS = intFlag('rounds', 5);
const CAPACITY = intFlag('capacity', 5000);
/** Where checkpoints go: `files` (the job's default, FilesystemCheckpointStorage in a temporary directory) or `memory`. */
const STORAGE = flag('storage', 'files');
const PARTITIONS = 4;
const TOPIC = 'in';

/** Per partition, the input's values (JSON text, ~100 bytes as kafka-peers.ts writes them) and keys. */
const parts: { key: string; value: string }[][] = Array.from({ length: PARTITIONS }, () => []);
for (let n = 0; n < RECORDS; n++) {
  const k = `k${n % KEYS}`;
  const value = inputValue(k, n, 100);
  parts[keyGroupOf(keyId(k), PARTITIONS)]!.push({ key: k, value });
}

/** Messages `from` up to `from + count` of partition p, shaped as kafkajs's fetch decoder makes them. */
function fetchBatch(p: number, from: number, count: number, ts: string): KafkaMessage[] {
  const src = parts[p]!;
  const out: KafkaMessage[] = [];
  for (let i = from; i < Math.min(from + count, src.length); i++) {
    const r = src[i]!;
    out.push({
      magicByte: 2,
      attributes: 0,
      timestamp: ts,
      offset: String(i),
      key: Buffer.from(r.key),
      value: Buffer.from(r.value),
      headers: {},
      isControlRecord: false,
      batchContext: undefined,
    } as unknown as KafkaMessage);
  }
  return out;
}

/** CPU (user + system, all threads) per record since `from`, in ns; kstate's rounds. */
const cpu: number[] = [];
function cpuNs(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return ((d.user + d.system) * 1000) / RECORDS;
}

/** Resolved at once, counting records: the producers of both sides. */
let sent = 0;
const stubTransaction = () => ({
  sendBatch: async (b: { topicMessages: { messages: unknown[] }[] }) => {
    for (const t of b.topicMessages) sent += t.messages.length;
  },
  send: async (b: { messages: unknown[] }) => {
    sent += b.messages.length;
  },
  sendOffsets: async () => {},
  commit: async () => {},
  abort: async () => {},
  isActive: () => true,
});
const stubKafka = {
  producer: () => ({
    connect: async () => {},
    disconnect: async () => {},
    transaction: async () => stubTransaction(),
  }),
};

/**
 * The Kafka source's reader, fed as the hub feeds it; ends (for runJob) once every message of its
 * partition was handed out.
 */
class FedSource implements Source<In> {
  readonly uid = 'kafka-in';
  partitions(): number {
    return PARTITIONS;
  }
  createReader(p: number): PullSourceReader<In> {
    const total = parts[p]!.length;
    let offered = 0;
    let handed = 0;
    let ts = Date.now();
    const offer = (): void => {
      if (offered >= total) return;
      const batch = fetchBatch(p, offered, BATCH, String(ts++));
      offered += batch.length;
      const { full } = reader.offer(batch, {
        first: batch[0]!.offset,
        last: batch[batch.length - 1]!.offset,
      });
      // As kafkajs: a partition not paused is fetched again after this turn; a paused one on resume.
      if (!full) setImmediate(offer);
    };
    const reader = new PartitionReader<In>({
      topic: TOPIC,
      partition: p,
      startOffset: 0n,
      capacity: CAPACITY,
      decodeValue: (value) => (value === null ? null : JSON.parse(value.toString('utf8'))) as In,
      onDecodeError: 'fail',
      onRoom: () => setImmediate(offer),
    });
    setImmediate(offer);
    return {
      bufferRecords: CAPACITY,
      pollNext(max: number): SourceBatch<In> | 'end' | undefined {
        if (handed >= total) return 'end';
        const b = reader.pollNext(max);
        if (b !== undefined) handed += b.records.length;
        return b;
      },
      onAvailable: (l) => reader.onAvailable(l),
      storedOrigin: (o) => reader.storedOrigin(o),
      close: () => reader.close(),
    };
  }
}

async function kstate(): Promise<number> {
  // The count job (as countJob builds it) with this process's source and the stub producers.
  const sink = new KafkaSink<Out>({
    topic: 'out',
    guarantee: 'exactly-once',
    encode: (v) => ({ key: v.k, value: JSON.stringify(v) }),
  });
  sink.bind(stubKafka as never);
  const job = new StreamJob('kafka-path');
  job
    .source(new FedSource())
    .keyBy((e) => e.k)
    .process(new CountAndSum(), { uid: 'count-and-sum' })
    .sinkTo(sink);
  const graph = job.build();
  sent = 0;
  const dir = mkdtempSync(join(tmpdir(), 'kafka-path-'));
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  await runJob(graph, {
    storage: STORAGE === 'memory' ? new MemoryCheckpointStorage() : checkpointStorage(dir),
    checkpoints: { intervalMs: 1000 },
    restart: { kind: 'none' },
  }).done;
  const ns = Number(process.hrtime.bigint() - t0) / RECORDS;
  cpu.push(cpuNs(c0));
  rmSync(dir, { recursive: true, force: true });
  if (sent !== RECORDS) throw new Error(`kstate sent ${sent} records, not ${RECORDS}`);
  return ns;
}

async function loop(): Promise<number> {
  sent = 0;
  const transform = heapTransform();
  const t0 = process.hrtime.bigint();
  // Partitions in turn, a batch at a time, as B2's eachBatch (sends in order) does them.
  const txns = parts.map(() => stubTransaction());
  const offsets = parts.map(() => 0);
  let ts = Date.now();
  for (let more = true; more; ) {
    more = false;
    for (let p = 0; p < PARTITIONS; p++) {
      const batch = fetchBatch(p, offsets[p]!, BATCH, String(ts++));
      if (batch.length === 0) continue;
      more = true;
      offsets[p]! += batch.length;
      const messages = batch.map((m) => transform(m.value));
      for (const c of chunks(messages)) await txns[p]!.send({ messages: c });
      await new Promise((r) => setImmediate(r));
    }
  }
  const ns = Number(process.hrtime.bigint() - t0) / RECORDS;
  if (sent !== RECORDS) throw new Error(`the loop sent ${sent} records, not ${RECORDS}`);
  return ns;
}

const ks: number[] = [];
const lp: number[] = [];
await kstate(); // warm-up
await loop();
for (let r = 0; r < ROUNDS; r++) {
  ks.push(await kstate());
  lp.push(await loop());
}
const median = (xs: number[]) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const k = median(ks);
const l = median(lp);
process.stdout.write(
  `${RECORDS} records, ${KEYS} keys, ${PARTITIONS} partitions, fetches of ${BATCH}, checkpoints every 1 s, medians of ${ROUNDS}\n` +
    `  kstate (reader, job, Kafka sink):  ${k.toFixed(0)} ns/record  [${ks.map((x) => x.toFixed(0)).join(', ')}]; CPU ${median(cpu.slice(1)).toFixed(0)} ns/record\n` +
    `  B2's loop:                         ${l.toFixed(0)} ns/record  [${lp.map((x) => x.toFixed(0)).join(', ')}]\n` +
    `  kstate adds:                       ${(k - l).toFixed(0)} ns/record (${(k / l).toFixed(2)} x the loop)\n`,
);
