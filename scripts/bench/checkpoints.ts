/**
 * Checkpoint benchmark for the heap and level keyed state backends. Prints markdown tables:
 *
 * 1. checkpoints (through the backend API, one task's backend, 1 % of the keys changed between two
 *    checkpoints, files written to a filesystem checkpoint storage with real fsyncs and commits):
 *    the synchronous pause at the barrier in async mode (`capture()`) and in sync mode (the whole
 *    checkpoint: capture, write, commit), the asynchronous duration (write and commit), the bytes
 *    each checkpoint adds to storage, and the restore time from storage and (level) by local
 *    recovery, for full and incremental checkpoints;
 * 2. throughput (through the real runtime: `runJob`, a TestSource, a keyed function that
 *    reads and rewrites the value of its key): records per second once the state is built and in
 *    a checkpoint (so an incremental run measures its steady state, not its first, full one), with
 *    checkpoints every second (async or sync, full or incremental) against checkpointing off;
 * 3. the level backend's write-behind cache: read-modify-write operations per second for cache
 *    sizes and write batch sizes, against one LevelDB call per read and per write.
 *
 *     node --max-old-space-size=12000 scripts/bench/checkpoints.ts --sizes=10MB,100MB,1GB
 *
 * Flags: --sizes=10MB,100MB (state sizes), --value-bytes=1000, --checkpoints=12 (per row),
 * --churn=0.01, --seconds=8 (measured per throughput run), --parts=checkpoints,
 * throughput,cache, --dir=<scratch directory> (default: the OS temp directory).
 *
 * A benchmark, not a test: figures depend on the machine. docs/level-backend.md records a run.
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { valueState } from '../../framework/api/descriptors.ts';
import type { KeyedContext, KeyedProcessFunction } from '../../framework/api/functions.ts';
import type { Source, SourceReader, SourceRecord } from '../../framework/api/source.ts';
import { FilesystemCheckpointStorage } from '../../framework/checkpoint/storage/filesystem.ts';
import type { Scope } from '../../framework/checkpoint/storage/storage.ts';
import { StreamJob } from '../../framework/datastream/index.ts';
import { runJob } from '../../framework/runtime/job.ts';
import type {
  CheckpointFiles,
  KeyedStateBackend,
  KeyedStateHandle,
  StateMeta,
} from '../../framework/state/backend.ts';
import { HeapKeyedStateBackend } from '../../framework/state/backends/heap/heap.ts';
import { LevelKeyedStateBackend } from '../../framework/state/backends/level/level.ts';
import { CollectingSink } from '../../framework/testing/sinks.ts';
import { flag } from './flags.ts';

// ---------------------------------------------------------------- flags

function bytesOf(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?$/i.exec(s.trim());
  if (m === null) throw new Error(`not a size: ${s}`);
  const unit = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9 }[(m[2] ?? 'B').toUpperCase() as 'B'];
  return Math.round(Number(m[1]) * unit);
}

const sizes = flag('sizes', '10MB,100MB').split(',').map(bytesOf);
const valueBytes = Number(flag('value-bytes', '1000'));
const checkpoints = Number(flag('checkpoints', '12'));
const churn = Number(flag('churn', '0.01'));
const seconds = Number(flag('seconds', '8'));
const parts = new Set(flag('parts', 'checkpoints,throughput,cache').split(','));
const scratch = mkdtempSync(join(flag('dir', tmpdir()), 'kstate-bench-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (what: string): string => join(scratch, `${what}-${dirs++}`);

const META: StateMeta = { name: 'v', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };

/** Garbage collections seen ([start, end] in performance.now() time), to explain pause outliers. */
const gcs: [number, number][] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push([e.startTime, e.startTime + e.duration]);
  if (gcs.length > 10_000) gcs.splice(0, 5_000);
}).observe({ entryTypes: ['gc'] });
const gcDuring = (from: number, to: number): boolean => gcs.some(([a, b]) => b >= from && a <= to);

interface Value {
  n: number;
  pad: Uint8Array;
}

/** A value of about `valueBytes` serialized bytes (random, so that nothing compresses it). */
function newValue(n: number): Value {
  return { n, pad: randomFillSync(new Uint8Array(valueBytes - 12)) };
}

/** Deterministic pseudo-random numbers. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

// ---------------------------------------------------------------- stats and formatting

function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

function ms(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x < 1) return `${x.toFixed(2)} ms`;
  if (x < 1000) return `${x.toFixed(x < 10 ? 1 : 0)} ms`;
  return `${(x / 1000).toFixed(x < 10_000 ? 2 : 1)} s`;
}

function size(b: number): string {
  if (b < 1e3) return `${b} B`;
  if (b < 1e6) return `${(b / 1e3).toFixed(1)} kB`;
  if (b < 1e9) return `${(b / 1e6).toFixed(1)} MB`;
  return `${(b / 1e9).toFixed(2)} GB`;
}

function rate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)} k` : x.toFixed(0);
}

function table(head: string[], rows: string[][], right = new Set<number>()): void {
  console.log(`| ${head.join(' | ')} |`);
  console.log(`| ${head.map((_, i) => (right.has(i) ? '---:' : '---')).join(' | ')} |`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log();
}

// ---------------------------------------------------------------- backends

type Kind = 'heap' | 'level';

async function makeBackend(kind: Kind, directory: string): Promise<KeyedStateBackend> {
  return kind === 'heap' ? new HeapKeyedStateBackend() : LevelKeyedStateBackend.open({ directory });
}

/** Lets the level backend's background batches land (memory stays bounded while filling). */
async function settle(b: KeyedStateBackend): Promise<void> {
  if (b instanceof LevelKeyedStateBackend) await b.flushed();
}

async function fill(b: KeyedStateBackend, keys: number): Promise<void> {
  b.register(META);
  for (let i = 0; i < keys; i++) {
    b.put('v', `key-${i}`, newValue(0));
    if (i % 10_000 === 9_999) await settle(b);
  }
  await settle(b);
}

/** Read-modify-write of `count` distinct pseudo-random keys. */
async function change(b: KeyedStateBackend, keys: number, count: number, next: () => number): Promise<void> {
  const seen = new Set<number>();
  while (seen.size < count) {
    const i = Math.floor(next() * keys);
    if (seen.has(i)) continue;
    seen.add(i);
    const v = b.get('v', `key-${i}`) as Value;
    b.put('v', `key-${i}`, { n: v.n + 1, pad: v.pad });
    if (seen.size % 10_000 === 0) await settle(b);
  }
}

function storageFiles(storage: FilesystemCheckpointStorage, scope: Scope, id: number): CheckpointFiles {
  return {
    write: (name, bytes) => storage.writeFile(scope, id, name, bytes),
    read: (ref) => storage.readFile(ref),
  };
}

// ---------------------------------------------------------------- 1. checkpoints

interface CheckpointRow {
  kind: Kind;
  target: number;
  mode: 'full' | 'incremental';
  keys: number;
  fullBytes: number;
  pauseAsync: number[];
  /** Captures during which a garbage collection ran. */
  gcPauses: number;
  pauseSync: number[];
  asyncMs: number[];
  bytes: number[];
  types: string[];
  restoreStorage: number;
  restoreLocal: number;
}

async function checkpointRow(
  kind: Kind,
  target: number,
  mode: 'full' | 'incremental',
): Promise<CheckpointRow> {
  const keys = Math.max(1, Math.round(target / (valueBytes + 12)));
  const dir = freshDir(`${kind}-db`);
  const backend = await makeBackend(kind, dir);
  await fill(backend, keys);
  const storageDir = freshDir('storage');
  const storage = new FilesystemCheckpointStorage({ directory: storageDir, retain: 3 });
  const scope: Scope = { jobId: 'bench', taskId: `${kind}-${mode}` };
  const next = rng(42);
  const row: CheckpointRow = {
    kind,
    target,
    mode,
    keys,
    fullBytes: 0,
    pauseAsync: [],
    gcPauses: 0,
    pauseSync: [],
    asyncMs: [],
    bytes: [],
    types: [],
    restoreStorage: Number.NaN,
    restoreLocal: Number.NaN,
  };
  let previous: KeyedStateHandle | undefined;
  for (let id = 1; id <= checkpoints + 1; id++) {
    if (id > 1) await change(backend, keys, Math.max(1, Math.round(keys * churn)), next);
    const t0 = performance.now();
    const capture = backend.capture(id);
    const t1 = performance.now();
    const handle = await capture.writeCheckpoint!(
      storageFiles(storage, scope, id),
      mode === 'incremental' ? previous : undefined,
    );
    await storage.commit({
      formatVersion: 1,
      jobId: scope.jobId,
      taskId: scope.taskId,
      checkpointId: id,
      timestamp: Date.now(),
      files: handle.files,
      type: handle.type,
      payload: {},
    });
    const t2 = performance.now();
    capture.release();
    const inherited = new Set(previous?.files.map((f) => f.path) ?? []);
    const added = handle.files.filter((f) => !inherited.has(f.path)).reduce((s, f) => s + f.bytes, 0);
    previous = handle;
    if (id === 1) {
      row.fullBytes = added; // the first checkpoint (all state) is not counted
      continue;
    }
    row.pauseAsync.push(t1 - t0);
    if (gcDuring(t0, t1)) row.gcPauses++;
    row.pauseSync.push(t2 - t0);
    row.asyncMs.push(t2 - t1);
    row.bytes.push(added);
    row.types.push(handle.type);
  }
  // Restore from storage, into a new backend on a new directory.
  {
    const restoreDir = freshDir(`${kind}-restore`);
    const fresh = await makeBackend(kind, restoreDir);
    const t = performance.now();
    await fresh.restoreHandle!(previous!, storageFiles(storage, scope, 10_000));
    row.restoreStorage = performance.now() - t;
    await fresh.close();
    rmSync(restoreDir, { recursive: true, force: true });
  }
  await backend.close();
  if (kind === 'level') {
    // Local recovery: a restart on the same directory, whose database holds the last checkpoint.
    const again = (await makeBackend(kind, dir)) as LevelKeyedStateBackend;
    const t = performance.now();
    await again.restoreHandle(previous!, storageFiles(storage, scope, 10_001));
    row.restoreLocal = performance.now() - t;
    if (again.lastRestore?.from !== 'local')
      throw new Error(`expected local recovery: ${again.lastRestore?.reason}`);
    await again.close();
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(storageDir, { recursive: true, force: true });
  return row;
}

async function checkpointPart(): Promise<void> {
  const rows: CheckpointRow[] = [];
  for (const target of sizes) {
    for (const kind of ['heap', 'level'] as const) {
      for (const mode of ['full', 'incremental'] as const) {
        const row = await checkpointRow(kind, target, mode);
        rows.push(row);
        console.error(`  checkpoints: ${kind} ${size(target)} ${mode} done`);
      }
    }
  }
  console.log(
    `### Checkpoints (backend API; ${checkpoints} checkpoints per row, ${churn * 100} % of the keys changed before each; ` +
      `values of ${valueBytes} B; filesystem storage in ${scratch})\n`,
  );
  table(
    [
      'backend',
      'state',
      'keys',
      'checkpoints',
      'async: pause p50 / p99',
      'sync: pause p50 / p99',
      'async duration p50',
      'bytes per checkpoint p50 (mean)',
      'restore from storage',
      'restore, local recovery',
    ],
    rows.map((r) => [
      r.kind,
      size(r.fullBytes),
      String(r.keys),
      r.mode === 'full' ? 'full' : `incremental (${r.types.filter((t) => t === 'full').length} full)`,
      `${ms(pct(r.pauseAsync, 50))} / ${ms(pct(r.pauseAsync, 99))}${r.gcPauses > 0 ? ` (GC in ${r.gcPauses})` : ''}`,
      `${ms(pct(r.pauseSync, 50))} / ${ms(pct(r.pauseSync, 99))}`,
      ms(pct(r.asyncMs, 50)),
      `${size(pct(r.bytes, 50))} (${size(Math.round(r.bytes.reduce((s, x) => s + x, 0) / r.bytes.length))})`,
      ms(r.restoreStorage),
      r.kind === 'level' ? ms(r.restoreLocal) : 'n/a',
    ]),
    new Set([2, 4, 5, 6, 7, 8, 9]),
  );
}

// ---------------------------------------------------------------- 2. throughput

interface Event {
  readonly key: string;
  readonly update: boolean;
}

/**
 * One partition: a record per key (building the state), then read-modify-writes for `seconds`, 99 %
 * of them on a hot 1 % of the keys and 1 % on any key (so a checkpoint a second sees a churn of a
 * few percent, as in the checkpoint table), then the end. Records are made as they are polled.
 */
class GeneratedSource implements Source<Event> {
  readonly uid = 'events';
  readonly #keys: number;
  /** Set once the whole state is built. */
  built = false;
  /** The updates (and the clock) start once this says so: the built state is in a checkpoint. */
  readonly #ready: () => boolean;
  constructor(keys: number, ready: () => boolean) {
    this.#keys = keys;
    this.#ready = ready;
  }
  partitions(): number {
    return 1;
  }
  createReader(): SourceReader<Event> {
    const keys = this.#keys;
    const source = this;
    const next = rng(7);
    let i = 0;
    let updatesFrom = Number.NaN;
    return {
      async poll(max) {
        if (!Number.isNaN(updatesFrom) && performance.now() - updatesFrom > seconds * 1000) return 'end';
        const records: SourceRecord<Event>[] = [];
        if (i >= keys && !source.#ready()) {
          // Steady state only: wait until a checkpoint holds the built state (for incremental
          // checkpoints, the full first one is not measured).
          source.built = true;
          await new Promise((r) => setTimeout(r, 5));
          return { records, position: i };
        }
        for (let n = 0; n < max; n++, i++) {
          if (i < keys) records.push({ value: { key: `key-${i}`, update: false } });
          // The batch that completes the build ends there: no update (nor the clock) may start
          // before the built state is in a checkpoint.
          else if (!source.#ready()) break;
          else {
            if (Number.isNaN(updatesFrom)) updatesFrom = performance.now();
            const hot = next() < 0.99;
            const k = Math.floor(next() * (hot ? Math.max(1, Math.floor(keys / 100)) : keys));
            records.push({ value: { key: `key-${k}`, update: true } });
          }
        }
        return { records, position: i };
      },
      async close() {},
    };
  }
}

class ReadModifyWrite implements KeyedProcessFunction<string, Event, never> {
  first = Number.NaN;
  last = Number.NaN;
  updates = 0;
  processElement(e: Event, ctx: KeyedContext<string>): void {
    const state = ctx.getState(valueState<Value>('v'));
    const v = state.value();
    state.update(v === undefined ? newValue(0) : { n: v.n + 1, pad: v.pad });
    if (e.update) {
      if (this.updates++ === 0) this.first = performance.now();
      this.last = performance.now();
    }
  }
}

type Checkpointing = 'off' | 'async full' | 'async incremental' | 'sync full' | 'sync incremental';

async function throughputRun(
  kind: Kind,
  target: number,
  checkpointing: Checkpointing,
): Promise<{ rate: number; checkpoints: number }> {
  const keys = Math.max(1, Math.round(target / (valueBytes + 12)));
  const fn = new ReadModifyWrite();
  const job = new StreamJob(`tp-${kind}`);
  // Completed checkpoints since the state was built: the second one was triggered after the build.
  let afterBuild = 0;
  const source = new GeneratedSource(keys, () => checkpointing === 'off' || afterBuild >= 2);
  job
    .source(source)
    .keyBy((e) => e.key)
    .process(fn, { uid: 'rmw' })
    .sinkTo(new CollectingSink<never>('out'));
  const base = freshDir(`tp-${kind}`);
  let checkpoints = 0;
  const running = runJob(job.build(), {
    storage: new FilesystemCheckpointStorage({ directory: join(base, 'storage') }),
    backend:
      kind === 'heap'
        ? () => new HeapKeyedStateBackend()
        : (scope) => LevelKeyedStateBackend.open({ directory: join(base, 'db', scope.taskId) }),
    checkpoints:
      checkpointing === 'off'
        ? { intervalMs: 0 }
        : {
            intervalMs: 1000,
            // At least 1 s of processing between two checkpoints (else a sync checkpoint that takes
            // longer than the interval is followed by the next at once, and nothing is processed).
            minPauseMs: 1000,
            snapshot: checkpointing.startsWith('sync') ? 'sync' : 'async',
            incremental: checkpointing.endsWith('incremental'),
          },
    restart: { kind: 'none' },
    listener: {
      checkpointCompleted: () => {
        if (source.built) afterBuild++;
        if (fn.updates > 0) checkpoints++;
      },
    },
  });
  await running.done;
  rmSync(base, { recursive: true, force: true });
  return { rate: fn.updates / ((fn.last - fn.first) / 1000), checkpoints: Math.max(0, checkpoints - 1) };
}

async function throughputPart(): Promise<void> {
  const configs: Checkpointing[] = [
    'off',
    'async full',
    'async incremental',
    'sync full',
    'sync incremental',
  ];
  const rows: string[][] = [];
  for (const target of sizes) {
    for (const kind of ['heap', 'level'] as const) {
      const results = new Map<Checkpointing, { rate: number; checkpoints: number }>();
      for (const c of configs) {
        results.set(c, await throughputRun(kind, target, c));
        console.error(`  throughput: ${kind} ${size(target)} ${c} done`);
      }
      const off = results.get('off')!.rate;
      rows.push([
        kind,
        size(target),
        `${rate(off)}/s`,
        ...configs.slice(1).map((c) => {
          const r = results.get(c)!;
          return `${rate(r.rate)}/s (${(r.rate / off).toFixed(2)}, ${r.checkpoints} chk)`;
        }),
      ]);
    }
  }
  console.log(
    `### Throughput (runJob, one task; read-modify-writes for ${seconds} s after the state is built, 99 % of them on 1 % of the keys; ` +
      'checkpoints every 1 s, at least 1 s apart, to filesystem storage; in brackets: the ratio to checkpointing off, and the checkpoints completed meanwhile)\n',
  );
  table(['backend', 'state', 'checkpointing off', ...configs.slice(1)], rows, new Set([2, 3, 4, 5, 6]));
}

// ---------------------------------------------------------------- 3. the level backend's cache

async function cacheRun(
  label: string,
  make: () => Promise<KeyedStateBackend>,
  keys: number,
  ops: number,
): Promise<string[]> {
  const b = await make();
  b.register(META);
  const value = (n: number) => ({ n, tag: 'x'.repeat(80) });
  for (let i = 0; i < keys; i++) {
    b.put('v', `key-${i}`, value(0));
    if (i % 10_000 === 9_999) await settle(b);
  }
  await settle(b);
  const next = rng(3);
  const hot = Math.max(1, Math.floor(keys / 10));
  const t = performance.now();
  for (let i = 0; i < ops; i++) {
    // 90 % of the accesses go to 10 % of the keys.
    const k = next() < 0.9 ? Math.floor(next() * hot) : Math.floor(next() * keys);
    const v = b.get('v', `key-${k}`) as { n: number };
    b.put('v', `key-${k}`, value(v.n + 1));
    // Yield as a task loop does between rounds (background writes go on meanwhile); now and then
    // wait for them, so that the slowest configuration cannot queue up unbounded work.
    if (i % 256 === 255) await new Promise((r) => setImmediate(r));
    if (i % 50_000 === 49_999) await settle(b);
  }
  await settle(b);
  const elapsed = (performance.now() - t) / 1000;
  const reads = b instanceof LevelKeyedStateBackend ? b.stats.reads : 0;
  const batches = b instanceof LevelKeyedStateBackend ? b.stats.batches : 0;
  await b.close();
  return [label, `${rate(ops / elapsed)}/s`, String(reads), String(batches)];
}

async function cachePart(): Promise<void> {
  const keys = 100_000;
  const ops = 300_000;
  const level = (cacheEntries: number, writeBatchEntries: number) => () =>
    LevelKeyedStateBackend.open({ directory: freshDir('cache'), cacheEntries, writeBatchEntries });
  const rows = [
    await cacheRun('heap (reference)', async () => new HeapKeyedStateBackend(), keys, ops),
    await cacheRun(
      'level, no read cache, a flush per write (coalesced while a batch is written)',
      level(0, 1),
      keys,
      ops,
    ),
    await cacheRun('level, writes batched by 4096, no read cache', level(0, 4096), keys, ops),
    await cacheRun('level, cache 1 000 entries, batches of 4096', level(1_000, 4096), keys, ops),
    await cacheRun('level, cache 10 000 entries, batches of 4096', level(10_000, 4096), keys, ops),
    await cacheRun('level, cache 50 000 entries (default), batches of 4096', level(50_000, 4096), keys, ops),
    await cacheRun('level, cache 50 000 entries, batches of 256', level(50_000, 256), keys, ops),
    await cacheRun('level, cache 200 000 entries (all), batches of 4096', level(200_000, 4096), keys, ops),
  ];
  console.log(
    `### The level backend's write-behind cache (backend API; ${keys} keys of ~100 B, ${ops} read-modify-writes, ` +
      '90 % of them on 10 % of the keys)\n',
  );
  table(
    ['configuration', 'read-modify-writes', 'getSync reads', 'batches written'],
    rows,
    new Set([1, 2, 3]),
  );
}

// ---------------------------------------------------------------- main

console.log(
  `Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ` +
    `sizes ${sizes.map(size).join(', ')}\n`,
);
if (parts.has('cache')) await cachePart();
if (parts.has('checkpoints')) await checkpointPart();
if (parts.has('throughput')) await throughputPart();
