/**
 * Sliding-window benchmark: events per second of a keyed sliding-window count (an aggregate with
 * merge, as Nexmark q5 counts bids per auction), with the record added to one slice of
 * gcd(size, slide) ("sliced", the default) against the record added to each of the size/slide
 * windows containing it ("naive", Flink's layout), on the heap and the level backend.
 *
 * Through the real runtime: `runJob`, one task, an in-memory source of `--events` records over
 * `--keys` keys at `--rate` records per second of event time (in order; the watermark trails by
 * 1 s), checkpoints every second to a filesystem checkpoint storage, results to a collecting sink.
 * Events/s = events / wall time from start to the end of input (all windows fired). Prints a
 * markdown table.
 *
 *     node scripts/bench/windows.ts
 *
 * Flags: --events=300000 --keys=200 --rate=2000 --windows=10s/1s,60s/1s --backends=heap,level
 * --runs=3 (best of n per row: the machine may be shared).
 *
 * A benchmark, not a test: figures depend on the machine. docs/windows.md records a run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AggregateFunction } from '../../framework/api/state.ts';
import { FilesystemCheckpointStorage } from '../../framework/checkpoint/storage/filesystem.ts';
import { StreamJob } from '../../framework/datastream/index.ts';
import { runJob } from '../../framework/runtime/job.ts';
import { HeapKeyedStateBackend } from '../../framework/state/backends/heap/heap.ts';
import { LevelKeyedStateBackend } from '../../framework/state/backends/level/level.ts';
import { CollectingSink } from '../../framework/testing/sinks.ts';
import { TestSource } from '../../framework/testing/sources.ts';
import { slidingEventTime } from '../../framework/windows/assigners.ts';
import { flag } from './flags.ts';

const events = Number(flag('events', '300000'));
const keys = Number(flag('keys', '200'));
const rate = Number(flag('rate', '2000'));
const runs = Number(flag('runs', '3'));
const backends = flag('backends', 'heap,level').split(',') as ('heap' | 'level')[];
const windows = flag('windows', '10s/1s,60s/1s')
  .split(',')
  .map((w) => {
    const m = /^(\d+)s\/(\d+)s$/.exec(w);
    if (!m) throw new Error(`--windows: expected <size>s/<slide>s, got ${w}`);
    return { name: w, sizeMs: Number(m[1]) * 1000, slideMs: Number(m[2]) * 1000 };
  });

interface Bid {
  readonly auction: string;
  readonly price: number;
}

const records = Array.from({ length: events }, (_, i) => ({
  value: { auction: `a${(i * 7) % keys}`, price: 1 + (i % 100) } satisfies Bid,
  timestamp: Math.floor((i * 1000) / rate),
}));

const count: AggregateFunction<Bid, number, number> = {
  createAccumulator: () => 0,
  add: (_, acc) => acc + 1,
  getResult: (acc) => acc,
  merge: (a, b) => a + b,
};

async function run(
  backend: 'heap' | 'level',
  w: (typeof windows)[number],
  assignment: 'sliced' | 'naive',
): Promise<{ eps: number; results: number }> {
  const base = mkdtempSync(join(tmpdir(), 'kstate-bench-windows-'));
  try {
    const job = new StreamJob('bench-windows');
    const sink = new CollectingSink<string>('out');
    job
      .source(new TestSource('bids', [records]), { watermarks: { maxOutOfOrdernessMs: 1000 } })
      .keyBy((b) => b.auction)
      .window(slidingEventTime({ sizeMs: w.sizeMs, slideMs: w.slideMs }), { assignment })
      .aggregate(count, (n, ctx) => `${ctx.key} ${ctx.window.end} ${n}`, { uid: 'hot-items' })
      .sinkTo(sink);
    const started = performance.now();
    const running = runJob(job.build(), {
      storage: new FilesystemCheckpointStorage({ directory: join(base, 'storage') }),
      backend:
        backend === 'heap'
          ? () => new HeapKeyedStateBackend()
          : (scope) => LevelKeyedStateBackend.open({ directory: join(base, 'db', scope.taskId) }),
      checkpoints: { intervalMs: 1000 },
    });
    await running.done;
    const seconds = (performance.now() - started) / 1000;
    return { eps: events / seconds, results: sink.output.committed.length };
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

console.log(
  `${events.toLocaleString('en-US')} events over ${keys} keys, ${rate}/s of event time; one task; checkpoints every 1 s; ${cpus()[0]?.model ?? 'cpu'} x ${cpus().length}; node ${process.version}\n`,
);
console.log(
  '| window (size/slide) | backend | sliced events/s | naive events/s | sliced / naive | results |',
);
console.log('| --- | --- | ---: | ---: | ---: | ---: |');
for (const w of windows) {
  for (const backend of backends) {
    const best = { sliced: 0, naive: 0 };
    let results = 0;
    for (let r = 0; r < runs; r++) {
      for (const assignment of ['sliced', 'naive'] as const) {
        const res = await run(backend, w, assignment);
        if (results !== 0 && res.results !== results) {
          throw new Error(`sliced and naive emitted ${results} and ${res.results} results`);
        }
        results = res.results;
        best[assignment] = Math.max(best[assignment], res.eps);
      }
    }
    console.log(
      `| ${w.name} | ${backend} | ${fmt(best.sliced)} | ${fmt(best.naive)} | ${(best.sliced / best.naive).toFixed(2)} | ${fmt(results)} |`,
    );
  }
}
