/**
 * Test support for the joins and dedup property tests: random event-time inputs, and a driver that
 * runs a keyed function through KeyedOperatorHarness with snapshot -> new backend -> restore at
 * chosen points (alternating heap and level backends).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { KeyedCoProcessFunction, KeyedProcessFunction } from '../../api/functions.ts';
import type { KeyedStateBackend } from '../../state/backend.ts';
import { HeapKeyedStateBackend } from '../../state/backends/heap/heap.ts';
import { LevelKeyedStateBackend } from '../../state/backends/level/level.ts';
import { type HarnessSnapshot, KeyedOperatorHarness } from '../../testing/harness.ts';

export interface Ev {
  readonly side: 0 | 1;
  readonly key: string;
  readonly t: number;
  readonly id: number;
}

/** One step of a run: a record, or a watermark. */
export type Step = { kind: 'record'; ev: Ev } | { kind: 'watermark'; wm: number };

/**
 * Random runs: records of 2 sides over 3 keys with timestamps that grow by 0..40 and jump back by up
 * to `disorder` (multiples of 5); after each record, with probability 1/4, a watermark of highest - disorder - 1
 * (no record is late) or, when `lateness` is set, sometimes highest - 1 (later records may be late).
 */
export function runs(o: { maxLen: number; disorder: number; lateness?: boolean }): fc.Arbitrary<Step[]> {
  const item = fc.record({
    side: fc.constantFrom<0 | 1>(0, 1),
    key: fc.constantFrom('a', 'b', 'c'),
    // Multiples of 5, so that timestamps often fall exactly on interval and window bounds.
    step: fc.integer({ min: 0, max: 8 }).map((x) => x * 5),
    back: fc.integer({ min: 0, max: Math.floor(o.disorder / 5) }).map((x) => x * 5),
    wm: fc.integer({ min: 0, max: 7 }),
  });
  return fc.array(item, { minLength: 1, maxLength: o.maxLen }).map((items) => {
    const steps: Step[] = [];
    let clock = 1000;
    let highest = Number.NEGATIVE_INFINITY;
    let wm = Number.NEGATIVE_INFINITY;
    items.forEach((it, id) => {
      clock += it.step;
      const t = clock - it.back;
      highest = Math.max(highest, t);
      steps.push({ kind: 'record', ev: { side: it.side, key: it.key, t, id } });
      const next =
        it.wm === 0 ? highest - o.disorder - 1 : o.lateness && it.wm === 1 ? highest - 1 : undefined;
      if (next !== undefined && next > wm) {
        wm = next;
        steps.push({ kind: 'watermark', wm });
      }
    });
    steps.push({ kind: 'watermark', wm: Number.MAX_SAFE_INTEGER });
    return steps;
  });
}

let dirs = 0;
const scratch = mkdtempSync(join(tmpdir(), 'joins-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

async function backend(level: boolean): Promise<KeyedStateBackend> {
  return level
    ? LevelKeyedStateBackend.open({ directory: join(scratch, `db-${dirs++}`) })
    : new HeapKeyedStateBackend();
}

export interface DriveResult<OUT> {
  readonly output: { value: OUT; timestamp: number | undefined }[];
  readonly side: Map<string, { value: unknown; timestamp: number | undefined }[]>;
  /** Per state name, the keys holding it after the final watermark. */
  readonly finalEntries: Record<string, number>;
  /** Records the function counted as dropped for being late (`ctx.lateRecordDropped()`), over all instances. */
  readonly lateRecordsDropped: number;
}

/**
 * Feed `steps` to a fresh instance of the function (made by `make`), restoring into a new
 * instance on a new backend before each step index in `restoreAt`; the n-th backend is level when
 * `level(n)`. Two-input functions take side 0 on input 1 and side 1 on input 2.
 */
export async function drive<OUT>(
  make: () => KeyedProcessFunction<string, Ev, OUT> | KeyedCoProcessFunction<string, Ev, Ev, OUT>,
  steps: readonly Step[],
  o: { restoreAt?: ReadonlySet<number>; level?: (n: number) => boolean; states?: readonly string[] } = {},
): Promise<DriveResult<OUT>> {
  const output: DriveResult<OUT>['output'] = [];
  const side: DriveResult<OUT>['side'] = new Map();
  let instances = 0;
  const open = async (restore?: HarnessSnapshot) => {
    const fn = make();
    const b = await backend(o.level?.(instances++) ?? false);
    const options = { backend: b, ...(restore ? { restore } : {}) };
    return 'processElement1' in fn
      ? KeyedOperatorHarness.createTwoInput(
          fn,
          (e: Ev) => e.key,
          (e: Ev) => e.key,
          options,
        )
      : KeyedOperatorHarness.create(fn, (e: Ev) => e.key, options);
  };
  const twoInput = 'processElement1' in make();
  let h = await open();
  let wm = Number.NEGATIVE_INFINITY;
  let lateRecordsDropped = 0;
  const drain = () => {
    lateRecordsDropped += h.lateRecordsDropped;
    h.lateRecordsDropped = 0;
    output.push(...h.output.splice(0));
    for (const [tag, list] of h.sideOutputs) {
      side.set(tag, [...(side.get(tag) ?? []), ...list.splice(0)]);
    }
  };
  for (const [i, s] of steps.entries()) {
    if (o.restoreAt?.has(i)) {
      drain();
      const snap = await h.snapshot();
      await h.close();
      h = await open(snap);
      if (wm > Number.NEGATIVE_INFINITY) h.advanceWatermark(wm);
    }
    if (s.kind === 'watermark') {
      wm = s.wm;
      h.advanceWatermark(s.wm);
    } else if (s.ev.side === 1 && twoInput) h.processElement2(s.ev as never, s.ev.t);
    else h.processElement(s.ev as never, s.ev.t);
  }
  drain();
  const finalEntries: Record<string, number> = {};
  for (const name of o.states ?? []) finalEntries[name] = h.stateEntries(name);
  await h.close();
  return { output, side, finalEntries, lateRecordsDropped };
}

/** Multiset comparison helper: sorted JSON lines. */
export const sorted = (values: readonly unknown[]): string[] => values.map((v) => JSON.stringify(v)).sort();
