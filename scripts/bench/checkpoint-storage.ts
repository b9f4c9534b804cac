/**
 * Checkpoint storage benchmark: the level backend's checkpoints written to S3 (S3Proxy on loopback,
 * its filesystem-nio2 backend) against a filesystem storage, and the restore of a task that moves to
 * an instance without its local copy against one that restarts beside it (local recovery).
 *
 * For each state size, one level backend is filled with values of ~`--value-bytes` random bytes, then
 * for each storage variant, `--repeat` times: a full checkpoint; ~`--churn` of the keys changed
 * (read-modify-write); an incremental checkpoint on it. A checkpoint is what a task's asynchronous
 * part does: capture, write the run files (`fileConcurrency` at once), commit the metadata. After the
 * last one: the restore of its handle into a new backend on an empty directory (download and rebuild)
 * and, after closing the backend, into a backend on the same directory (local recovery: no download).
 *
 *     node --max-old-space-size=8000 scripts/bench/checkpoint-storage.ts --sizes=10MB,100MB,1GB
 *
 * Flags: --sizes=10MB,100MB (level state), --value-bytes=1000, --churn=0.05, --repeat=3 (rounds per
 * size below 500 MB), --repeat-large=1 (at 500 MB and above), --variants=none,fs,s3,s3-serial (none:
 * run files built and dropped, what a checkpoint costs before storage; s3-serial: `fileConcurrency`
 * 1, the chain's one-file-at-a-time uploads and reads before issue 14), --dir=<scratch directory> (default: the OS
 * temp directory; S3Proxy's buckets go there too), --s3-endpoint=http://... (use a running store,
 * with AWS_* credentials in the environment, instead of starting S3Proxy).
 *
 * A benchmark, not a test: figures depend on the machine. docs/checkpoint-storage.md records a run.
 */
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { S3CheckpointStorage } from '../../connectors/s3/index.ts';
import { type RunningS3Proxy, startS3Proxy } from '../../connectors/s3/local/s3proxy.ts';
import { createTestBucket } from '../../connectors/s3/test/buckets.ts';
import type { BaseCheckpointStorage } from '../../framework/checkpoint/storage/base.ts';
import { FilesystemCheckpointStorage } from '../../framework/checkpoint/storage/filesystem.ts';
import { MemoryCheckpointStorage } from '../../framework/checkpoint/storage/memory.ts';
import { sha256Hex } from '../../framework/checkpoint/storage/metadata-codec.ts';
import type { FileRef, Scope } from '../../framework/checkpoint/storage/storage.ts';
import type { CheckpointFiles, KeyedStateHandle, StateMeta } from '../../framework/state/backend.ts';
import { LevelKeyedStateBackend } from '../../framework/state/backends/level/level.ts';
import { flag } from './flags.ts';

// ---------------------------------------------------------------- flags

function bytesOf(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?$/i.exec(s.trim());
  if (m === null) throw new Error(`not a size: ${s}`);
  const unit = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9 }[(m[2] ?? 'B').toUpperCase() as 'B'];
  return Math.round(Number(m[1]) * unit);
}

type Variant = 'none' | 'fs' | 's3' | 's3-serial';
const sizes = flag('sizes', '10MB,100MB').split(',').map(bytesOf);
const valueBytes = Number(flag('value-bytes', '1000'));
const churn = Number(flag('churn', '0.05'));
const repeat = Number(flag('repeat', '3'));
const repeatLarge = Number(flag('repeat-large', '1'));
const variants = flag('variants', 'none,fs,s3,s3-serial').split(',') as Variant[];
const givenEndpoint = flag('s3-endpoint', '');
const scratch = mkdtempSync(join(flag('dir', tmpdir()), 'kstate-storage-bench-'));
let proxy: RunningS3Proxy | undefined;
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (what: string): string => join(scratch, `${what}-${dirs++}`);

const META: StateMeta = { name: 'v', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 };
const FILE_CONCURRENCY: Record<Variant, number> = { none: 4, fs: 4, s3: 4, 's3-serial': 1 };
const LABEL: Record<Variant, string> = {
  none: 'none (run files built, not stored)',
  fs: 'filesystem',
  s3: 'S3 (S3Proxy)',
  's3-serial': 'S3, 1 file at a time',
};

interface Value {
  n: number;
  pad: Uint8Array;
}

/** A value of about `valueBytes` serialized bytes (random: nothing compresses it). */
function newValue(n: number): Value {
  return { n, pad: randomFillSync(new Uint8Array(valueBytes - 12)) };
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

// ---------------------------------------------------------------- formatting

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)]!;
}

function ms(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x < 1000) return `${x.toFixed(x < 10 ? 1 : 0)} ms`;
  return `${(x / 1000).toFixed(x < 10_000 ? 2 : 1)} s`;
}

function size(b: number): string {
  if (b < 1e3) return `${b} B`;
  if (b < 1e6) return `${(b / 1e3).toFixed(1)} kB`;
  if (b < 1e9) return `${(b / 1e6).toFixed(1)} MB`;
  return `${(b / 1e9).toFixed(2)} GB`;
}

const mbps = (bytes: number, millis: number): string => `${(bytes / 1e6 / (millis / 1000)).toFixed(1)} MB/s`;
const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '-');

function table(head: string[], rows: string[][]): void {
  console.log(`| ${head.join(' | ')} |`);
  console.log(`| ${head.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log();
}

const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

// ---------------------------------------------------------------- one size

interface Row {
  variant: Variant;
  state: number;
  keys: number;
  fullMs: number[];
  fullBytes: number;
  fullFiles: number;
  incrMs: number[];
  incrBytes: number[];
  incrTypes: string[];
  restoreStorageMs: number;
  restoreLocalMs: number;
  /** S3 requests of the last full and the last incremental checkpoint, and of the restore. */
  requests: { full: string; incr: string; restore: string } | undefined;
}

/**
 * Storage that stores nothing: each file's checksum is taken (as every storage does) and its bytes
 * dropped; commits do nothing. What a checkpoint costs before any storage: the capture, reading the
 * database and building the run files.
 */
class NoStorage extends MemoryCheckpointStorage {
  override async writeFile(scope: Scope, id: number, name: string, bytes: Uint8Array): Promise<FileRef> {
    return {
      path: `${scope.jobId}/${scope.taskId}/files/${id}-${name}`,
      bytes: bytes.byteLength,
      sha256: sha256Hex(bytes),
    };
  }
  override async commit(): Promise<void> {}
}

async function openStorage(variant: Variant, bucket: string): Promise<BaseCheckpointStorage> {
  if (variant === 'none') return new NoStorage();
  if (variant === 'fs')
    return new FilesystemCheckpointStorage({ directory: freshDir('fs-storage'), retain: 3 });
  const endpoint = proxy?.endpoint ?? givenEndpoint;
  return new S3CheckpointStorage({
    bucket,
    prefix: 'bench',
    endpoint,
    retain: 3,
    ...(proxy === undefined
      ? {}
      : { credentials: { accessKeyId: proxy.accessKeyId, secretAccessKey: proxy.secretAccessKey } }),
  });
}

function closeStorage(storage: BaseCheckpointStorage): void {
  if (storage instanceof S3CheckpointStorage) storage.close();
}

function requestsOf(storage: BaseCheckpointStorage): Record<string, number> | undefined {
  return storage instanceof S3CheckpointStorage ? { ...storage.requests } : undefined;
}

function requestDelta(before: Record<string, number> | undefined, storage: BaseCheckpointStorage): string {
  const now = requestsOf(storage);
  if (before === undefined || now === undefined) return '';
  return Object.entries(now)
    .map(([k, v]) => [k, v - before[k]!] as const)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${v} ${k.toUpperCase()}`)
    .join(', ');
}

function filesOf(storage: BaseCheckpointStorage, scope: Scope, id: number): CheckpointFiles {
  return {
    write: (name, bytes) => storage.writeFile(scope, id, name, bytes),
    read: (ref) => storage.readFile(ref),
  };
}

/** What a task's asynchronous part does: capture, write the run files, commit the metadata. */
async function checkpoint(
  backend: LevelKeyedStateBackend,
  storage: BaseCheckpointStorage,
  scope: Scope,
  id: number,
  previous: KeyedStateHandle | undefined,
): Promise<{ handle: KeyedStateHandle; ms: number; bytes: number }> {
  const t = performance.now();
  const capture = backend.capture(id);
  let handle: KeyedStateHandle;
  try {
    handle = await capture.writeCheckpoint!(filesOf(storage, scope, id), previous);
  } finally {
    capture.release();
  }
  await storage.commit({
    formatVersion: 1,
    jobId: scope.jobId,
    taskId: scope.taskId,
    checkpointId: id,
    timestamp: Date.now(),
    files: [...handle.files],
    type: handle.type,
    payload: { keyedHandle: handle },
  });
  const elapsed = performance.now() - t;
  const inherited = new Set(previous?.files.map((f) => f.path) ?? []);
  const bytes = handle.files.filter((f) => !inherited.has(f.path)).reduce((s, f) => s + f.bytes, 0);
  return { handle, ms: elapsed, bytes };
}

/** Read-modify-write of `count` distinct pseudo-random keys. */
async function change(
  b: LevelKeyedStateBackend,
  keys: number,
  count: number,
  next: () => number,
): Promise<void> {
  const seen = new Set<number>();
  while (seen.size < count) {
    const i = Math.floor(next() * keys);
    if (seen.has(i)) continue;
    seen.add(i);
    const v = b.get('v', `key-${i}`) as Value;
    b.put('v', `key-${i}`, { n: v.n + 1, pad: randomFillSync(v.pad) });
    if (seen.size % 10_000 === 0) await b.flushed();
  }
  await b.flushed();
}

async function open(directory: string, variant: Variant): Promise<LevelKeyedStateBackend> {
  const b = await LevelKeyedStateBackend.open({ directory, fileConcurrency: FILE_CONCURRENCY[variant] });
  b.register(META);
  return b;
}

async function sizeRows(target: number, bucket: string): Promise<Row[]> {
  const keys = Math.max(1, Math.round(target / (valueBytes + 12)));
  const runs = target >= 500e6 ? repeatLarge : repeat;
  const dir = freshDir('level');
  let backend = await open(dir, variants[0]!);
  const t0 = performance.now();
  for (let i = 0; i < keys; i++) {
    backend.put('v', `key-${i}`, newValue(0));
    if (i % 10_000 === 9_999) await backend.flushed();
  }
  await backend.flushed();
  log(`${size(target)}: ${keys} keys filled in ${ms(performance.now() - t0)}`);
  const next = rng(42);
  interface Live {
    readonly row: Row;
    readonly storage: BaseCheckpointStorage;
    readonly scope: Scope;
    id: number;
    handle: KeyedStateHandle | undefined;
    restoreStorage: number[];
    restoreLocal: number[];
    requests: { full: string; incr: string; restore: string };
  }
  const live: Live[] = [];
  for (const variant of variants) {
    live.push({
      row: {
        variant,
        state: 0,
        keys,
        fullMs: [],
        fullBytes: 0,
        fullFiles: 0,
        incrMs: [],
        incrBytes: [],
        incrTypes: [],
        restoreStorageMs: Number.NaN,
        restoreLocalMs: Number.NaN,
        requests: undefined,
      },
      storage: await openStorage(variant, bucket),
      scope: { jobId: 'bench', taskId: `${variant}-${Math.round(target / 1e6)}mb` },
      id: 1,
      handle: undefined,
      restoreStorage: [],
      restoreLocal: [],
      requests: { full: '', incr: '', restore: '' },
    });
  }
  /** The variant whose settings the open backend has, and whose last checkpoint its database holds. */
  let current: Live | undefined;
  /**
   * Closes the backend and opens it again on the same directory with `v`'s settings: a restart
   * beside the local database, which holds the last checkpoint (of `current`): local recovery, timed.
   */
  const reopen = async (v: Live): Promise<void> => {
    await backend.close();
    backend = await open(dir, v.row.variant);
    if (current === undefined) return;
    const before = requestsOf(current.storage);
    const t = performance.now();
    await backend.restoreHandle(current.handle!, filesOf(current.storage, current.scope, 1e9));
    current.restoreLocal.push(performance.now() - t);
    if (backend.lastRestore?.from !== 'local') {
      throw new Error(`expected a local restore: ${backend.lastRestore?.reason}`);
    }
    const requests = requestDelta(before, current.storage);
    if (requests !== '') throw new Error(`local recovery made S3 requests: ${requests}`);
  };
  // Rounds: each variant in turn (so that load from elsewhere and LevelDB's compactions after the
  // fill weigh on all alike): a full checkpoint, changes, an incremental checkpoint on it.
  for (let r = 0; r < runs; r++) {
    for (const v of live) {
      if (current !== v) {
        if (current !== undefined || FILE_CONCURRENCY[v.row.variant] !== FILE_CONCURRENCY[variants[0]!]) {
          await reopen(v);
        }
        current = v;
      }
      let before = requestsOf(v.storage);
      const full = await checkpoint(backend, v.storage, v.scope, v.id++, undefined);
      v.requests.full = requestDelta(before, v.storage);
      if (full.handle.type !== 'full') throw new Error('expected a full checkpoint');
      v.row.fullMs.push(full.ms);
      v.row.fullBytes = full.bytes;
      v.row.fullFiles = full.handle.files.length;
      await change(backend, keys, Math.max(1, Math.round(keys * churn)), next);
      before = requestsOf(v.storage);
      const incr = await checkpoint(backend, v.storage, v.scope, v.id++, full.handle);
      v.requests.incr = requestDelta(before, v.storage);
      v.row.incrMs.push(incr.ms);
      v.row.incrBytes.push(incr.bytes);
      v.row.incrTypes.push(incr.handle.type);
      v.handle = incr.handle;
      log(
        `${size(target)} ${v.row.variant}: full ${ms(full.ms)} (${size(full.bytes)}), incremental ${ms(incr.ms)} (${size(incr.bytes)}, ${incr.handle.type})`,
      );
    }
  }
  // The last variant's local recovery (the others' were timed when the next one took over).
  await reopen(current!);
  await backend.close();
  // A task moving to an instance without its local copy: download and rebuild on an empty directory.
  for (let r = 0; r < runs; r++) {
    for (const v of live) {
      if (v.row.variant === 'none') continue;
      const restoreDir = freshDir('restore');
      const fresh = await open(restoreDir, v.row.variant);
      const before = requestsOf(v.storage);
      const t = performance.now();
      await fresh.restoreHandle(v.handle!, filesOf(v.storage, v.scope, 1e9));
      v.restoreStorage.push(performance.now() - t);
      v.requests.restore = requestDelta(before, v.storage);
      if (fresh.lastRestore?.from !== 'storage') throw new Error('expected a restore from storage');
      await fresh.close();
      rmSync(restoreDir, { recursive: true, force: true });
      log(`${size(target)} ${v.row.variant}: restore without the local copy ${ms(v.restoreStorage.at(-1)!)}`);
    }
  }
  for (const v of live) {
    v.row.state = v.row.fullBytes;
    v.row.restoreStorageMs = median(v.restoreStorage);
    v.row.restoreLocalMs = median(v.restoreLocal);
    if (v.storage instanceof S3CheckpointStorage) v.row.requests = v.requests;
    closeStorage(v.storage);
  }
  rmSync(dir, { recursive: true, force: true });
  return live.map((v) => v.row);
}

/** A few MB up and down first, so that the JVM's first requests (its JIT warming up) are not measured. */
async function warmUp(bucket: string): Promise<void> {
  const storage = await openStorage('s3', bucket);
  const scope: Scope = { jobId: 'warm-up', taskId: 's0-p0' };
  const refs = [];
  for (let i = 0; i < 40; i++) {
    refs.push(
      await storage.writeFile(scope, 1, `f${i}`, randomFillSync(new Uint8Array(i % 4 === 0 ? 9e6 : 5e5))),
    );
  }
  for (const ref of refs) await storage.readFile(ref);
  await storage.discard(scope, 1);
  closeStorage(storage);
}

// ---------------------------------------------------------------- main

const load0 = loadavg();
console.log(
  `Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
    `load average at the start ${load0.map((x) => x.toFixed(1)).join(' ')}`,
);
if (variants.some((v) => v.startsWith('s3'))) {
  if (givenEndpoint === '') {
    proxy = await startS3Proxy({ dataDir: join(scratch, 's3proxy-data'), log });
    log(`S3Proxy ${proxy.version} on ${proxy.endpoint} (pid ${proxy.pid})`);
  }
}
const store = {
  endpoint: proxy?.endpoint ?? givenEndpoint,
  accessKeyId: proxy?.accessKeyId ?? process.env.AWS_ACCESS_KEY_ID ?? '',
  secretAccessKey: proxy?.secretAccessKey ?? process.env.AWS_SECRET_ACCESS_KEY ?? '',
  region: 'us-east-1',
};
const bucket = variants.some((v) => v.startsWith('s3')) ? await createTestBucket(store, 'bench') : '';
if (bucket !== '') {
  const t = performance.now();
  await warmUp(bucket);
  log(`S3 warmed up in ${ms(performance.now() - t)}`);
}
const all: Row[] = [];
try {
  for (const target of sizes) all.push(...(await sizeRows(target, bucket)));
} finally {
  await proxy?.stop();
}
const load1 = loadavg();

console.log(
  `\n### Checkpoints of the level backend to filesystem and S3 storage (values of ${valueBytes} B; incremental: ` +
    `after ${churn * 100} % of the keys changed; median of ${repeat} (${repeatLarge} at 500 MB and above); load average at the end ` +
    `${load1.map((x) => x.toFixed(1)).join(' ')}. S3: ${proxy === undefined ? store.endpoint : `S3Proxy ${proxy.version} on loopback, filesystem-nio2 backend on the same disk`}: no network)\n`,
);
const head = [
  'state',
  'storage',
  'run files',
  'full: duration',
  'full: throughput',
  'incremental: bytes',
  'incremental: duration',
  'incremental: throughput',
  'restore, no local copy',
  'restore, local recovery',
  'no local copy / local',
];
const rows: string[][] = [];
for (const r of all) {
  const full = median(r.fullMs);
  const incr = median(r.incrMs);
  const incrBytes = median(r.incrBytes);
  const fulls = r.incrTypes.filter((t) => t !== 'incremental').length;
  rows.push([
    `${size(r.state)} (${r.keys} keys)`,
    `${LABEL[r.variant]} (fileConcurrency ${FILE_CONCURRENCY[r.variant]})`,
    String(r.fullFiles),
    ms(full),
    mbps(r.fullBytes, full),
    `${size(incrBytes)}${fulls > 0 ? ` (${fulls} full)` : ''}`,
    ms(incr),
    mbps(incrBytes, incr),
    ms(r.restoreStorageMs),
    ms(r.restoreLocalMs),
    ratio(r.restoreStorageMs, r.restoreLocalMs),
  ]);
}
table(head, rows);

const fsRow = (state: number) => all.find((r) => r.variant === 'fs' && r.keys === state);
const ratioRows: string[][] = [];
for (const r of all) {
  const f = fsRow(r.keys);
  if (r.variant === 'fs' || r.variant === 'none' || f === undefined) continue;
  ratioRows.push([
    size(r.state),
    `${LABEL[r.variant]} / filesystem`,
    ratio(median(r.fullMs), median(f.fullMs)),
    ratio(median(r.incrMs), median(f.incrMs)),
    ratio(r.restoreStorageMs, f.restoreStorageMs),
  ]);
}
if (ratioRows.length > 0) {
  console.log('### Ratios (duration with S3 / duration with the filesystem: above 1 is slower)\n');
  table(
    ['state', 'storage', 'full checkpoint', 'incremental checkpoint', 'restore, no local copy'],
    ratioRows,
  );
}

const reqRows = all
  .filter((r) => r.requests !== undefined)
  .map((r) => [size(r.state), LABEL[r.variant], r.requests!.full, r.requests!.incr, r.requests!.restore]);
if (reqRows.length > 0) {
  console.log(
    '### S3 requests (the last full and incremental checkpoint, the restore without a local copy)\n',
  );
  table(['state', 'storage', 'full checkpoint', 'incremental checkpoint', 'restore, no local copy'], reqRows);
}
