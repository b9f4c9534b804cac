/**
 * Serializer benchmark: msgpackr (as the framework configures it, and without records) vs JSON vs
 * node:v8 on representative state values. Prints one markdown table of serialize and deserialize
 * throughput (ops/s) and encoded size, with ratios against JSON (> 1 = faster / larger).
 *
 *     node scripts/bench/serializers.ts            # ~300 ms per cell
 *     node scripts/bench/serializers.ts --ms=1000  # steadier figures
 *
 * A benchmark, not a test: figures depend on the machine. docs/state.md records a run and the
 * default serializer chosen from it.
 */
import { performance } from 'node:perf_hooks';
import { deserialize as v8Deserialize, serialize as v8Serialize } from 'node:v8';
import { Packr } from 'msgpackr';
import type { Serializer } from '../../framework/api/serializer.ts';
import { jsonSerializer, msgpackSerializer } from '../../framework/state/serializers.ts';

const msArg = process.argv.find((a) => a.startsWith('--ms='));
const budgetMs = msArg === undefined ? 300 : Number(msArg.slice('--ms='.length));
if (!(budgetMs > 0)) throw new Error(`--ms must be a positive number, got ${msArg}`);

const plainPackr = new Packr({ useRecords: false });

const candidates: Serializer<unknown>[] = [
  jsonSerializer(),
  msgpackSerializer(),
  {
    id: 'msgpackr, no records',
    version: 1,
    serialize: (v) => plainPackr.pack(v),
    deserialize: (b) => plainPackr.unpack(b),
  },
  { id: 'node:v8', version: 1, serialize: (v) => v8Serialize(v), deserialize: (b) => v8Deserialize(b) },
];

const event = (i: number) => ({
  id: 100_000 + i,
  user: `user-${i % 977}`,
  amount: 19.99 + i,
  currency: 'EUR',
  ts: 1_700_000_000_000 + i * 1000,
  tags: ['web', 'promo'],
});

const values: [string, unknown][] = [
  ['small object (event)', event(1)],
  ['accumulator {sum, count}', { sum: 1234.5, count: 42 }],
  ['map entry [key, object]', ['user-42', { count: 3, lastSeen: 1_700_000_000_000 }]],
  ['100 numbers', Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? i * 1000 : i * 1.25))],
  ['string, 200 chars', 'the quick brown fox jumps over the lazy dog; '.repeat(5).slice(0, 200)],
  ['50 events (window)', Array.from({ length: 50 }, (_, i) => event(i))],
];

let sink = 0;

function opsPerSecond(run: () => void): number {
  for (let i = 0; i < 200; i++) run(); // warm up
  let ops = 0;
  const start = performance.now();
  let now = start;
  while (now - start < budgetMs) {
    for (let i = 0; i < 100; i++) run();
    ops += 100;
    now = performance.now();
  }
  return (ops * 1000) / (now - start);
}

interface Cell {
  readonly ser: number;
  readonly de: number;
  readonly bytes: number;
}

const fmtOps = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);
const fmtRatio = (n: number) => `${n.toFixed(2)}x`;

const lines: string[] = [
  `node ${process.version}, ${budgetMs} ms per cell; ratios against json (ops: higher is faster; bytes: lower is smaller)`,
  '',
  '| value | serializer | serialize ops/s | deserialize ops/s | bytes | ser vs json | de vs json | bytes vs json |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
];
const totals = new Map<string, { ser: number; de: number; bytes: number }>();

for (const [label, value] of values) {
  const cells = new Map<string, Cell>();
  for (const s of candidates) {
    const bytes = s.serialize(value);
    const ser = opsPerSecond(() => {
      sink += s.serialize(value).length;
    });
    const de = opsPerSecond(() => {
      sink += s.deserialize(bytes) === undefined ? 0 : 1;
    });
    cells.set(s.id, { ser, de, bytes: bytes.length });
  }
  const json = cells.get('json')!;
  for (const [id, c] of cells) {
    lines.push(
      `| ${label} | ${id} | ${fmtOps(c.ser)} | ${fmtOps(c.de)} | ${c.bytes} | ${fmtRatio(c.ser / json.ser)} | ` +
        `${fmtRatio(c.de / json.de)} | ${fmtRatio(c.bytes / json.bytes)} |`,
    );
    const t = totals.get(id) ?? { ser: 0, de: 0, bytes: 0 };
    // Geometric means over the values.
    t.ser += Math.log(c.ser / json.ser);
    t.de += Math.log(c.de / json.de);
    t.bytes += Math.log(c.bytes / json.bytes);
    totals.set(id, t);
  }
}
lines.push(
  '',
  '| serializer | geometric mean: ser vs json | de vs json | bytes vs json |',
  '| --- | ---: | ---: | ---: |',
);
for (const [id, t] of totals) {
  const g = (x: number) => fmtRatio(Math.exp(x / values.length));
  lines.push(`| ${id} | ${g(t.ser)} | ${g(t.de)} | ${g(t.bytes)} |`);
}
console.log(lines.join('\n'));
if (sink === 42) console.log(''); // keeps the results observable
