/**
 * Nexmark benchmark (issue 7 (d)): events per second of q5 (hot items: bids counted per auction in
 * sliding windows of 10 s every 2 s) and q8 (new users: persons joined with their auctions in 10 s
 * tumbling windows, after dedup of persons) through the real runtime (`runJob`), on the heap and the
 * level backend, with asynchronous checkpoints every second to filesystem storage; and, for q5, the
 * sliced sliding window against the naive assignment (a record written into each of its 5 windows,
 * as Flink does) as a ratio. The input is generated in memory first (examples/nexmark/generator.ts)
 * and read from an in-process source partitioned by key, so the figures are the operators' cost
 * without Kafka (docs/benchmarks-kafka.md has the Kafka path).
 *
 *     node scripts/bench/nexmark.ts [--events=1000000] [--partitions=2] [--repeat=3]
 *
 * A benchmark, not a test: figures depend on the machine. docs/examples.md records a run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { nexmarkEvents } from '../../examples/nexmark/generator.ts';
import { auctionCountsQuery, dedupPersons, newUsersQuery } from '../../examples/nexmark/job.ts';
import type { Auction, Bid, Person } from '../../examples/nexmark/model.ts';
import {
  FilesystemCheckpointStorage,
  levelBackend,
  runJob,
  type SourceRecord,
  StreamJob,
} from '../../framework/index.ts';
import { CollectingSink, TestSource } from '../../framework/testing/index.ts';

const flag = (name: string, fallback: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const EVENTS = Number(flag('events', '1000000'));
const PARTITIONS = Number(flag('partitions', '2'));
const REPEAT = Number(flag('repeat', '3'));

const scratch = mkdtempSync(join(tmpdir(), 'nexmark-bench-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

const e = nexmarkEvents({ events: EVENTS });
const rec = <T extends { dateTime: number }>(xs: readonly T[]): SourceRecord<T>[] =>
  xs.map((value) => ({ value, timestamp: value.dateTime }));
const input = { persons: rec(e.persons), auctions: rec(e.auctions), bids: rec(e.bids) };
const wm = { watermarks: { maxOutOfOrdernessMs: 5_000 } };

type Query = 'q5' | 'q5 naive' | 'q8';
type Backend = 'heap' | 'level';

async function once(
  query: Query,
  backend: Backend,
  run: number,
): Promise<{ rate: number; checkpoints: number; out: number }> {
  const job = new StreamJob(`nexmark-${query.replace(' ', '-')}-${backend}-${run}`);
  const sink = new CollectingSink<unknown>('out');
  let events: number;
  if (query === 'q8') {
    const persons = job.source(
      TestSource.byKey('persons', input.persons, (p: Person) => String(p.id), PARTITIONS),
      wm,
    );
    const auctions = job.source(
      TestSource.byKey('auctions', input.auctions, (a: Auction) => String(a.seller), PARTITIONS),
      wm,
    );
    newUsersQuery(dedupPersons(persons), auctions).sinkTo(sink);
    events = input.persons.length + input.auctions.length;
  } else {
    const bids = job.source(
      TestSource.byKey('bids', input.bids, (b: Bid) => String(b.auction), PARTITIONS),
      wm,
    );
    auctionCountsQuery(bids, query === 'q5' ? 'sliced' : 'naive').sinkTo(sink);
    events = input.bids.length;
  }
  const dir = join(scratch, job.jobId);
  let checkpoints = 0;
  const started = performance.now();
  await runJob(job.build(), {
    storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
    ...(backend === 'level' ? { backend: levelBackend(join(dir, 'state')) } : {}),
    checkpoints: { intervalMs: 1000, incremental: backend === 'level' },
    restart: { kind: 'none' },
    listener: { checkpointCompleted: () => checkpoints++ },
  }).done;
  const seconds = (performance.now() - started) / 1000;
  rmSync(dir, { recursive: true, force: true });
  return { rate: events / seconds, checkpoints, out: sink.output.committed.length };
}

const fmt = (r: number) => (r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : `${(r / 1e3).toFixed(1)} k/s`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(
  `Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), load ${loadavg()[0]!.toFixed(1)}; ${EVENTS} Nexmark events (${e.persons.length} persons, ${e.auctions.length} auctions, ${e.bids.length} bids), ${PARTITIONS} partitions, checkpoints every 1 s (async; incremental on level); median of ${REPEAT}\n`,
);
const rows: string[] = [];
const rates = new Map<string, number>();
for (const backend of ['heap', 'level'] as const) {
  for (const query of ['q5', 'q5 naive', 'q8'] as const) {
    const runs = [];
    for (let i = 0; i < REPEAT; i++) runs.push(await once(query, backend, i));
    const rate = median(runs.map((r) => r.rate));
    rates.set(`${query} ${backend}`, rate);
    const r = runs[0]!;
    rows.push(
      `| ${query} | ${backend} | ${fmt(rate)} | ${runs.map((x) => fmt(x.rate)).join(', ')} | ${r.checkpoints} | ${r.out} |`,
    );
    console.error(`  ${query} ${backend}: ${fmt(rate)}`);
  }
}
console.log('| query | backend | events/s (median) | runs | checkpoints (first run) | results |');
console.log('| --- | --- | ---: | --- | ---: | ---: |');
for (const r of rows) console.log(r);
console.log('\n| backend | q5 sliced / naive |');
console.log('| --- | ---: |');
for (const b of ['heap', 'level']) {
  console.log(`| ${b} | ${(rates.get(`q5 ${b}`)! / rates.get(`q5 naive ${b}`)!).toFixed(2)}x |`);
}
