/**
 * Query latency of time-indexed state on the level backend, through the state API directly (the
 * reads an HTTP query makes after routing: `readLatest`, `readAsOf`, `readRange` over the backend's
 * native version store), at 1 M keys with `--versions` versions each.
 *
 *   node scripts/bench/queries.ts [--keys=1000000] [--versions=3] [--samples=20000]
 *
 * Keys are read in random order, so with the default cache (50 000 decoded values) most reads miss
 * it and go to LevelDB (`getSync`). Prints a table of p50 / p99 / max in microseconds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timeIndexedState } from '../../framework/api/descriptors.ts';
import { LevelKeyedStateBackend } from '../../framework/state/backends/level/level.ts';
import { createKeyedStateStore } from '../../framework/state/handles.ts';
import { readAsOf, readLatest, readRange, versionStore } from '../../framework/state/time-index.ts';

const arg = (name: string, dflt: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? dflt : Number(a.slice(name.length + 3));
};
const KEYS = arg('keys', 1_000_000);
const VERSIONS = arg('versions', 3);
const SAMPLES = arg('samples', 20_000);

const dir = mkdtempSync(join(tmpdir(), 'kstate-bench-queries-'));
const backend = await LevelKeyedStateBackend.open({ directory: dir });
let current = '';
const store = createKeyedStateStore(backend, {
  currentKey: () => current,
  processingTime: () => 0,
  watermark: () => Number.NEGATIVE_INFINITY,
});
const prices = store.getTimeIndexedState(timeIndexedState<{ price: number; currency: string }>('prices'));
const key = (i: number) => `product-${i}`;

const t0 = performance.now();
for (let i = 0; i < KEYS; i++) {
  current = key(i);
  for (let v = 0; v < VERSIONS; v++)
    prices.put(v * 1000 + (i % 997), { price: i + v / 100, currency: 'EUR' });
  if (i % 50_000 === 0) await backend.flushed();
}
await backend.flushed();
const loadS = (performance.now() - t0) / 1000;
console.error(`loaded ${KEYS} keys x ${VERSIONS} versions in ${loadS.toFixed(1)} s`);

const versions = versionStore(backend, 'prices');
let seed = 42;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
const measure = (read: (k: string) => unknown): number[] => {
  const out: number[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    const k = key(Math.floor(rnd() * KEYS));
    const a = performance.now();
    const r = read(k);
    out.push((performance.now() - a) * 1000);
    if (r === undefined) throw new Error(`no answer for ${k}`);
  }
  return out.sort((a, b) => a - b);
};
const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const rows: [string, number[]][] = [
  ['point (latest version)', measure((k) => readLatest(versions, k))],
  ['as-of (t = 1500)', measure((k) => readAsOf(versions, k, 1500))],
  [`range (all ${VERSIONS} versions)`, measure((k) => readRange(versions, k, 0, 1e9))],
];
console.log(
  `| read (${KEYS.toLocaleString('en')} keys x ${VERSIONS} versions, level) | p50 µs | p99 µs | max µs |`,
);
console.log('| --- | ---: | ---: | ---: |');
for (const [name, xs] of rows) {
  console.log(
    `| ${name} | ${pct(xs, 0.5).toFixed(1)} | ${pct(xs, 0.99).toFixed(1)} | ${xs[xs.length - 1]!.toFixed(0)} |`,
  );
}
console.log(`(LevelDB point reads: ${backend.stats.reads}; load ${loadS.toFixed(1)} s)`);
await backend.close();
rmSync(dir, { recursive: true, force: true });
