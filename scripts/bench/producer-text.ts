/**
 * The producer thread's two ways to hand text keys and values to kafkajs (issue 15, eighth session;
 * connectors/kafka/internal/producer-thread-protocol.ts `unpackSend`): as strings sliced from the
 * packed text, which kafkajs measures and encodes as UTF-8 per record, or, for ASCII text, as views
 * of the text's bytes, which it copies. Each round encodes the same records (the count job's output:
 * keys `k<i>`, JSON values) with kafkajs's record encoder as the project patches it, both ways,
 * alternating.
 *
 *     node scripts/bench/producer-text.ts [--records=2000] [--repeat=200] [--rounds=6]
 *
 * Prints ns per record of each way per round, and the medians' ratio. A measurement, not a test:
 * docs/benchmarks-kafka.md records a run.
 */
import { createRequire } from 'node:module';
import '../../connectors/kafka/internal/kafkajs.ts';
import { intFlag } from './flags.ts';

const RECORDS = intFlag('records', 2000);
const REPEAT = intFlag('repeat', 200);
const ROUNDS = intFlag('rounds', 6);

type RecordEncoder = (r: {
  offsetDelta: number;
  timestampDelta: number;
  key: string | Buffer;
  value: string | Buffer;
  headers: Record<string, never>;
}) => unknown;
const encodeRecord = createRequire(import.meta.url)(
  'kafkajs/src/protocol/recordBatch/record/v0',
) as RecordEncoder;

const keys: string[] = [];
const values: string[] = [];
let text = '';
for (let i = 0; i < RECORDS; i++) {
  keys.push(`k${i % 1000}`);
  values.push(JSON.stringify({ k: `k${i % 1000}`, n: i, count: i % 77, sum: i * 31 }));
  text += keys[i]! + values[i]!;
}

function asStrings(): unknown[] {
  const out: unknown[] = [];
  let at = 0;
  for (let i = 0; i < RECORDS; i++) {
    const k = at + keys[i]!.length;
    const v = k + values[i]!.length;
    const key = text.slice(at, k);
    const value = text.slice(k, v);
    at = v;
    out.push(encodeRecord({ offsetDelta: i, timestampDelta: 0, key, value, headers: {} }));
  }
  return out;
}

function asBytes(): unknown[] {
  const bytes = Buffer.from(text, 'latin1');
  const out: unknown[] = [];
  let at = 0;
  for (let i = 0; i < RECORDS; i++) {
    const k = at + keys[i]!.length;
    const v = k + values[i]!.length;
    const key = bytes.subarray(at, k);
    const value = bytes.subarray(k, v);
    at = v;
    out.push(encodeRecord({ offsetDelta: i, timestampDelta: 0, key, value, headers: {} }));
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const times: Record<'strings' | 'bytes', number[]> = { strings: [], bytes: [] };
for (let round = 0; round < ROUNDS; round++)
  for (const [name, f] of [
    ['strings', asStrings],
    ['bytes', asBytes],
  ] as const) {
    const t = process.hrtime.bigint();
    for (let r = 0; r < REPEAT; r++) f();
    times[name].push(Number(process.hrtime.bigint() - t) / (RECORDS * REPEAT));
  }
for (const [name, ts] of Object.entries(times))
  process.stdout.write(
    `${name.padEnd(8)} ${median(ts).toFixed(0)} ns/record  [${ts.map((t) => t.toFixed(0)).join(', ')}]\n`,
  );
process.stdout.write(`bytes / strings: ${(median(times.bytes) / median(times.strings)).toFixed(2)}\n`);
