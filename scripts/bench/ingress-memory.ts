/**
 * Ingress memory under a slow operator (issue 15): what the record path from a Kafka fetch to the
 * task holds while the task cannot keep up. The whole input is produced first (`--records` records of
 * ~`--value-bytes` JSON values over `--partitions` partitions), so Kafka holds a backlog far larger
 * than any buffer when the job starts; the job (KafkaSource -> a map that spins `--op-us` µs per
 * record -> KafkaSink, at-least-once, heap state, checkpoints every second) then runs for `--seconds`.
 *
 * Sampled every `--sample-ms` (1000) from the first record processed on, after a full GC (run with
 * --expose-gc):
 * - records in the input channels: records decoded (the source's serde counts its calls; a record is
 *   decoded as it enters its channel) minus records the operator processed;
 * - the heap in use and the array buffers (kafkajs's fetch responses: a fetched message's key and
 *   value are views of its response's buffer, so a fetch held in part is held whole), each above
 *   their values before the job started.
 * Printed per `--buffers` value (KafkaSource `bufferRecords`): the peak and the mean of each over the
 * run, the records processed per second, and the bound the design promises: per partition
 * `bufferRecords` decoded records plus one fetch (`maxBytesPerPartition`, 1 MiB).
 *
 *     node --expose-gc scripts/bench/ingress-memory.ts
 *     node --expose-gc scripts/bench/ingress-memory.ts --buffers=5000,1000,20000 --op-us=200
 *
 * Flags: --records=600000 --partitions=4 --value-bytes=100 --op-us=100 --seconds=30 --sample-ms=1000
 * --buffers=5000,1000. Uses KAFKA_BROKERS when set, else starts a broker with the harness. A
 * measurement, not a test: docs/benchmarks-kafka.md ("Ingress redesign") records a run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKafka, KafkaSink, KafkaSource, runKafkaJob, serde } from '../../connectors/kafka/index.ts';
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import { FilesystemCheckpointStorage, HeapKeyedStateBackend, StreamJob } from '../../framework/index.ts';
import { flag } from './flags.ts';
import { createTopics, produceInput } from './kafka-bench-input.ts';

const RECORDS = Number(flag('records', '600000'));
const PARTITIONS = Number(flag('partitions', '4'));
const VALUE_BYTES = Number(flag('value-bytes', '100'));
const OP_US = Number(flag('op-us', '100'));
const SECONDS = Number(flag('seconds', '30'));
/** Each sample runs a full GC; a second apart, they cost the job little. */
const SAMPLE_MS = Number(flag('sample-ms', '1000'));
const BUFFERS = flag('buffers', '5000,1000').split(',').map(Number);
const FETCH_BYTES = 1_048_576;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

interface In {
  readonly k: string;
  readonly n: number;
}

function spin(us: number): void {
  const end = performance.now() + us / 1000;
  while (performance.now() < end) {
    // a slow operator
  }
}

function memory(): { heap: number; buffers: number } {
  gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, buffers: m.arrayBuffers };
}

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

async function run(brokers: string[], bufferRecords: number, round: number): Promise<string> {
  const kafka = createKafka({ brokers }, '-ingress-memory');
  const admin = kafka.admin();
  await admin.connect();
  const id = `ingress-memory.${Date.now().toString(36)}.${round}`;
  const input = `${id}.in`;
  const output = `${id}.out`;
  const dir = mkdtempSync(join(tmpdir(), 'ingress-memory-'));
  try {
    await createTopics(admin, [input, output], PARTITIONS);
    await produceInput(kafka, input, { records: RECORDS, keys: 1000, valueBytes: VALUE_BYTES });
    let decoded = 0;
    let processed = 0;
    const json = serde.jsonSerde<In>();
    const counting = {
      ...json,
      deserialize(bytes: Buffer | null, topic: string) {
        decoded++;
        return json.deserialize(bytes, topic);
      },
    };
    const job = new StreamJob(id);
    job
      .source(new KafkaSource<In>({ topic: input, serde: counting, bufferRecords }))
      .map((e) => {
        spin(OP_US);
        processed++;
        return e;
      })
      .sinkTo(
        new KafkaSink<In>({
          topic: output,
          guarantee: 'at-least-once',
          encode: (v) => ({ key: v.k, value: JSON.stringify(v) }),
        }),
      );
    const before = memory();
    const running = await runKafkaJob(job, {
      connection: { brokers },
      storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
      backend: () => new HeapKeyedStateBackend(),
      checkpoints: { intervalMs: 1000, guarantee: 'at-least-once' },
      restart: { kind: 'none' },
    });
    const samples: { inChannels: number; heap: number; buffers: number }[] = [];
    while (processed === 0) await new Promise((r) => setTimeout(r, 20));
    const t0 = performance.now();
    const processedAtStart = processed;
    while (performance.now() - t0 < SECONDS * 1000) {
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
      const inChannels = decoded - processed;
      const m = memory();
      samples.push({ inChannels, heap: m.heap - before.heap, buffers: m.buffers - before.buffers });
    }
    const rate = ((processed - processedAtStart) * 1000) / (performance.now() - t0);
    await running.stop();
    const steady = samples;
    const peak = (f: (s: (typeof samples)[number]) => number) => Math.max(...steady.map(f));
    const mean = (f: (s: (typeof samples)[number]) => number) =>
      steady.reduce((a, s) => a + f(s), 0) / steady.length;
    return [
      `| ${bufferRecords} | ${PARTITIONS * bufferRecords} + ${PARTITIONS} fetches`,
      `${peak((s) => s.inChannels).toLocaleString('en-US')} / ${Math.round(mean((s) => s.inChannels)).toLocaleString('en-US')}`,
      `${mb(peak((s) => s.heap))} / ${mb(mean((s) => s.heap))}`,
      `${mb(peak((s) => s.buffers))} / ${mb(mean((s) => s.buffers))}`,
      `${Math.round(rate).toLocaleString('en-US')} |`,
    ].join(' | ');
  } finally {
    await admin.deleteTopics({ topics: [input, output] }).catch(() => {});
    await admin.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const external = process.env.KAFKA_BROKERS?.trim();
  let brokers: string[];
  let stop: () => Promise<void> = async () => {};
  if (external) brokers = external.split(',').map((b) => b.trim());
  else {
    console.log('starting a Kafka broker with the harness ...');
    const broker = await startBroker();
    brokers = [broker.brokers];
    stop = broker.stop;
  }
  try {
    console.log(
      `${RECORDS.toLocaleString('en-US')} records of ~${VALUE_BYTES} B in ${PARTITIONS} partitions, an operator of ${OP_US} µs per record, ${SECONDS} s per run, fetches of ${mb(FETCH_BYTES)} per partition`,
    );
    const rows: string[] = [];
    for (const [i, b] of BUFFERS.entries()) {
      console.log(`bufferRecords ${b} ...`);
      rows.push(await run(brokers, b, i));
    }
    console.log(
      '\n| bufferRecords | bound (records) | records in the channels: peak / mean | heap above start: peak / mean | array buffers above start: peak / mean | records/s processed |',
    );
    console.log('| ---: | --- | ---: | ---: | ---: | ---: |');
    for (const r of rows) console.log(r);
  } finally {
    await stop();
  }
}

await main();
