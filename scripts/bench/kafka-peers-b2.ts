/**
 * The B2 process of scripts/bench/kafka-peers.ts: the raw kafkajs transactional loop of
 * kafka-raw-loops.ts (per input partition one transactional producer and one open transaction,
 * committed with its offsets every INTERVAL_MS), alone in its process so that it is measured from
 * outside like the job and Kafka Streams.
 *
 *   KAFKA_BROKERS, GROUP_ID (also the transactional id prefix), INPUT, OUTPUT, PARTITIONS (the
 *   input's), INTERVAL_MS (default 1000), ORDERED (true: a batch's sends one after the other, which
 *   keeps each key's order; default false: all in flight at once, as kafka-throughput.ts's B2)
 *
 * Prints `first-record <epoch ms>` once the first record was taken. Runs until SIGTERM (aborts what
 * is open, disconnects, exits 0); exits 1 when a send or commit fails.
 */
import { createKafka } from '../../connectors/kafka/index.ts';
import { startTransactionalLoop } from './kafka-raw-loops.ts';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const kafka = createKafka({ brokers: env('KAFKA_BROKERS').split(',') }, '-b2');
const loop = await startTransactionalLoop(kafka, {
  input: env('INPUT'),
  output: env('OUTPUT'),
  groupId: env('GROUP_ID'),
  transactionalIdPrefix: env('GROUP_ID'),
  partitions: Number(env('PARTITIONS')),
  intervalMs: Number(process.env.INTERVAL_MS ?? 1000),
  orderedSends: process.env.ORDERED === 'true',
});
const firstRecord = setInterval(() => {
  const at = loop.firstRecordAt();
  if (at === 0) return;
  clearInterval(firstRecord);
  process.stdout.write(`first-record ${Math.round(Date.now() - (performance.now() - at))}\n`);
}, 20);
process.on('SIGTERM', () => {
  clearInterval(firstRecord);
  void loop.stop().then(() => process.exit(0));
});
loop.failure.catch((e: unknown) => {
  process.stderr.write(`b2 failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
