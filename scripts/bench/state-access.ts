/**
 * Keyed state access per record (issue 15, part 5): the count-and-sum job's state work alone (two
 * value states, read and written per record, 1000 keys) through the handles an operator gets (the
 * task's heap backend seen through the operator's scoped view), with handles bound to their state
 * (`StateAccess`, `KeyedStateBackend.bind`) against the same backend without `bind` (every access
 * looks up the scoped name, then the state, then the key: the path before bound handles). Both in
 * this process, alternating rounds; prints ns per record and the ratio.
 *
 *     node scripts/bench/state-access.ts [--records=2000000] [--rounds=5]
 *
 * A measurement, not a test: docs/benchmarks-kafka.md records a run.
 */
import { type ValueState, type ValueStateDescriptor, valueState } from '../../framework/index.ts';
import { scopedBackend } from '../../framework/runtime/scoped-backend.ts';
import type { KeyedStateBackend } from '../../framework/state/backend.ts';
import { HeapKeyedStateBackend } from '../../framework/state/backends/heap/heap.ts';
import { createKeyedStateStore } from '../../framework/state/handles.ts';
import { intFlag } from './flags.ts';

const RECORDS = intFlag('records', 2_000_000);
const ROUNDS = intFlag('rounds', 5);
const KEYS = 1000;
const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);

/** The backend's methods without `bind`: handles then bind through the named methods. */
function unbound(b: KeyedStateBackend): KeyedStateBackend {
  const { bind: _bind, ...rest } = b as KeyedStateBackend & { bind?: unknown };
  return rest;
}

function run(bound: boolean): number {
  const heap = new HeapKeyedStateBackend();
  const scoped = scopedBackend(heap, 'count-and-sum');
  let key = keys[0]!;
  const store = createKeyedStateStore(bound ? scoped : unbound(scoped), {
    currentKey: () => key,
    processingTime: () => 0,
    watermark: () => Number.NEGATIVE_INFINITY,
  });
  // As FunctionContext.getState: the operator's handles by state name (a job asks on every record).
  const handles = new Map<string, ValueState<number>>();
  const getState = (d: ValueStateDescriptor<number>): ValueState<number> => {
    let h = handles.get(d.name);
    if (h === undefined) {
      h = store.getState(d);
      handles.set(d.name, h);
    }
    return h;
  };
  let check = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < RECORDS; i++) {
    key = keys[i % KEYS]!;
    // As the job does it: the handles asked for on every record.
    const count = getState(valueState<number>('count'));
    const sum = getState(valueState<number>('sum'));
    const c = (count.value() ?? 0) + 1;
    const s = (sum.value() ?? 0) + i;
    count.update(c);
    sum.update(s);
    check += c;
  }
  const ns = Number(process.hrtime.bigint() - t0) / RECORDS;
  if (check !== expected) throw new Error(`wrong counts: ${check} != ${expected}`);
  return ns;
}

let expected = 0;
for (let i = 0; i < RECORDS; i++) expected += Math.floor(i / KEYS) + 1;

const byName: number[] = [];
const bound: number[] = [];
run(false); // warm-up, both paths
run(true);
for (let r = 0; r < ROUNDS; r++) {
  const first = r % 2 === 0;
  (first ? byName : bound).push(run(!first));
  (first ? bound : byName).push(run(first));
}
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const a = median(byName);
const b = median(bound);
process.stdout.write(
  `${RECORDS} records, ${KEYS} keys, 2 value states read and written per record, heap backend, medians of ${ROUNDS}\n` +
    `  by name (no bind):  ${a.toFixed(0)} ns/record  [${byName.map((x) => x.toFixed(0)).join(', ')}]\n` +
    `  bound handles:      ${b.toFixed(0)} ns/record  [${bound.map((x) => x.toFixed(0)).join(', ')}]\n` +
    `  bound / by name:    ${(b / a).toFixed(2)} of the time (${(a - b).toFixed(0)} ns less per record)\n`,
);
