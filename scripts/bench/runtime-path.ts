/**
 * The runtime's own cost per record (issue 15, part 5), without Kafka: the count job's path from an
 * input channel to a sink (task loop, watermark valve, fan-out, keyed process operator with two value
 * states on the heap backend, sink operator), checkpoints every second, against a plain loop doing the
 * same work in the same process (a Map of {count, sum} per key, the output object and its
 * JSON.stringify, which the Kafka sink's encoder does). Kafka's part (fetch decoding, JSON.parse,
 * produce encoding, transactions) is the same in both engines of scripts/bench/kafka-peers.ts, so the
 * difference printed here is what kstate adds per record over the B2 loop on its own side.
 *
 * Records: `--records` {k, n} objects (already decoded), `--keys` keys over 4 partitions (TestSource,
 * keyed as Kafka's default partitioner would), made once; rounds alternate the two paths.
 *
 *     node scripts/bench/runtime-path.ts [--records=2000000] [--keys=1000] [--rounds=5]
 *
 * A measurement, not a test: docs/benchmarks-kafka.md records a run.
 */

import { CountAndSum, type In, type Out } from '../../connectors/kafka/test/jobs/count-job.ts';
import {
  type KeyedProcessFunction,
  MemoryCheckpointStorage,
  type Sink,
  type SinkWriter,
  type SourceRecord,
  StreamJob,
} from '../../framework/index.ts';
import { runJob } from '../../framework/runtime/job.ts';
import { TestSource } from '../../framework/testing/index.ts';
import { intFlag } from './flags.ts';

const RECORDS = intFlag('records', 2_000_000);
const KEYS = intFlag('keys', 1000);
const ROUNDS = intFlag('rounds', 5);
const PARTITIONS = 4;

const input: SourceRecord<In>[] = [];
for (let n = 0; n < RECORDS; n++)
  input.push({ value: { k: `k${n % KEYS}`, n }, timestamp: 1_700_000_000_000 });

// One source for every round (bounded partitions, read from the start by each run's fresh tasks).
const source = TestSource.byKey('in', input, (e) => e.k, PARTITIONS);

/** Encodes every record as the Kafka sink's encoder does, and keeps only a checksum. */
class EncodingSink implements Sink<Out> {
  readonly uid = 'encode';
  bytes = 0;
  sum = 0;
  createWriter(): SinkWriter<Out> {
    return {
      write: (v) => {
        this.bytes += JSON.stringify(v).length;
        this.sum += v.count;
      },
      prepareCommit: () => undefined,
      commit: async () => {},
      abort: async () => {},
      close: async () => {},
    };
  }
}

async function framework(): Promise<{ ns: number; check: number }> {
  const sink = new EncodingSink();
  const job = new StreamJob('runtime-path');
  job
    .source(source)
    .keyBy((e) => e.k)
    .process(new CountAndSum() as KeyedProcessFunction<string, In, Out>, { uid: 'count-and-sum' })
    .sinkTo(sink);
  const t0 = process.hrtime.bigint();
  const running = runJob(job.build(), {
    storage: new MemoryCheckpointStorage(),
    checkpoints: { intervalMs: 1000 },
    restart: { kind: 'none' },
  });
  await running.done;
  return { ns: Number(process.hrtime.bigint() - t0) / RECORDS, check: sink.sum };
}

function baseline(): { ns: number; check: number } {
  const t0 = process.hrtime.bigint();
  const state = new Map<string, { count: number; sum: number }>();
  let bytes = 0;
  let sum = 0;
  // Partition by partition, as the tasks see them (the order within a key is the same).
  for (const r of input) {
    const e = r.value;
    let s = state.get(e.k);
    if (s === undefined) {
      s = { count: 0, sum: 0 };
      state.set(e.k, s);
    }
    s.count++;
    s.sum += e.n;
    const out: Out = { k: e.k, n: e.n, count: s.count, sum: s.sum };
    bytes += JSON.stringify(out).length;
    sum += out.count;
  }
  if (bytes === 0) throw new Error('nothing encoded');
  return { ns: Number(process.hrtime.bigint() - t0) / RECORDS, check: sum };
}

const fw: number[] = [];
const base: number[] = [];
await framework(); // warm-up
baseline();
for (let r = 0; r < ROUNDS; r++) {
  const a = await framework();
  const b = baseline();
  if (a.check !== b.check) throw new Error(`the paths disagree: ${a.check} != ${b.check}`);
  fw.push(a.ns);
  base.push(b.ns);
}
const median = (xs: number[]) => xs.slice().sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const f = median(fw);
const b = median(base);
process.stdout.write(
  `${RECORDS} records, ${KEYS} keys, ${PARTITIONS} partitions, checkpoints every 1 s (memory storage), medians of ${ROUNDS}\n` +
    `  runtime (runJob):  ${f.toFixed(0)} ns/record  [${fw.map((x) => x.toFixed(0)).join(', ')}]\n` +
    `  plain loop:        ${b.toFixed(0)} ns/record  [${base.map((x) => x.toFixed(0)).join(', ')}]\n` +
    `  runtime adds:      ${(f - b).toFixed(0)} ns/record (${(f / b).toFixed(2)} x the loop)\n`,
);
