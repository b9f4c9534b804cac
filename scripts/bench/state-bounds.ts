/**
 * State bounds over millions of keys (issue 7, bad input): a tumbling window, a session window, an
 * interval join, dedup and a CEP pattern each get 2 M records of 2 M distinct keys (a key is never
 * seen again, the worst case for per-key state), event time moving 1 ms per record and the
 * watermark following. Printed per operator: the heap after a full GC at 0.5, 1, 1.5 and 2 M records
 * and the keys still holding state at the end. Bounded state stays flat; the baseline (dedup with a
 * horizon that never expires, i.e. no window expiry and no TTL) shows what unbounded growth looks
 * like on the same scale.
 *
 *     node --expose-gc scripts/bench/state-bounds.ts [--records=2000000]
 *
 * Runs each operator through KeyedOperatorHarness on the heap backend (the state is on the JS
 * heap, so heap size is the measure). A measurement, not a test: docs/examples.md records a run.
 */
import {
  cep,
  Deduplicate,
  IntervalJoin,
  Pattern,
  sessionEventTime,
  tumblingEventTime,
} from '../../framework/index.ts';
import { KeyedOperatorHarness } from '../../framework/testing/index.ts';
import { aggregateWindows, windowOperator } from '../../framework/windows/operator.ts';

interface Ev {
  readonly key: string;
  readonly kind: 'a' | 'b';
  readonly t: number;
}

const RECORDS = Number(process.argv.find((a) => a.startsWith('--records='))?.slice(10) ?? 2_000_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const heapMb = () => {
  gc();
  return process.memoryUsage().heapUsed / 1e6;
};

const count = {
  createAccumulator: () => 0,
  add: (_e: Ev, n: number) => n + 1,
  getResult: (n: number) => n,
  merge: (a: number, b: number) => a + b,
};

const operators: Record<string, { fn: () => unknown; states: string[]; twoInput?: boolean }> = {
  'tumbling window 1 s': {
    fn: () =>
      windowOperator(tumblingEventTime({ sizeMs: 1000 }), undefined, aggregateWindows(count, undefined), 'w'),
    states: [],
  },
  'session window, gap 1 s': {
    fn: () =>
      windowOperator(sessionEventTime({ gapMs: 1000 }), undefined, aggregateWindows(count, undefined), 's'),
    states: [],
  },
  'interval join [0, 1 s]': {
    fn: () => new IntervalJoin<string, Ev, Ev, number>({ lowerMs: 0, upperMs: 1000, join: (a) => a.t }),
    states: ['interval-join.left', 'interval-join.right'],
    twoInput: true,
  },
  'dedup, horizon 1 s': {
    fn: () => new Deduplicate<string, Ev>({ horizonMs: 1000 }),
    states: ['dedup.kept'],
  },
  'CEP a -> b within 1 s': {
    fn: () =>
      cep(
        Pattern.begin<Ev>('a')
          .where((e) => e.kind === 'a')
          .followedBy('b')
          .where((e) => e.kind === 'b')
          .within(1000),
      ),
    states: [],
  },
  'baseline: dedup that never expires': {
    fn: () => new Deduplicate<string, Ev>({ horizonMs: 1e15 }),
    states: ['dedup.kept'],
  },
};

console.log(
  `Node ${process.version}; ${RECORDS.toLocaleString('en')} records of as many distinct keys, 1 ms of event time apart, a watermark every 1000 records; heap backend\n`,
);
console.log(
  '| operator | heap before | 25 % | 50 % | 75 % | 100 % | keys holding state at the end | records/s |',
);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [name, o] of Object.entries(operators)) {
  const fn = o.fn();
  const key = (e: Ev) => e.key;
  const h = o.twoInput
    ? await KeyedOperatorHarness.createTwoInput(fn as never, key, key)
    : await KeyedOperatorHarness.create(fn as never, key);
  const before = heapMb();
  const marks: string[] = [];
  const started = performance.now();
  for (let i = 0; i < RECORDS; i++) {
    const e: Ev = { key: `k${i}`, kind: i % 2 === 0 ? 'a' : 'b', t: i };
    if (o.twoInput && i % 2 === 1) h.processElement2(e as never, i);
    else h.processElement(e as never, i);
    if (i % 1000 === 999) h.advanceWatermark(i - 100);
    if (i % 4096 === 0) h.output.length = 0;
    if ((i + 1) % (RECORDS / 4) === 0) marks.push(`${heapMb().toFixed(0)} MB`);
  }
  const rate = RECORDS / ((performance.now() - started) / 1000);
  const left =
    o.states.length > 0
      ? o.states
          .map((s) => h.stateEntries(s))
          .reduce((a, b) => a + b, 0)
          .toLocaleString('en')
      : 'n/a';
  console.log(
    `| ${name} | ${before.toFixed(0)} MB | ${marks.join(' | ')} | ${left} | ${(rate / 1000).toFixed(0)} k/s |`,
  );
  await h.close();
}
