import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { outputTag } from '../../api/functions.ts';
import type { KeyedStateBackend } from '../../state/backend.ts';
import { HeapKeyedStateBackend } from '../../state/backends/heap/heap.ts';
import { temporaryLevelBackend } from '../../state/backends/level/testing.ts';
import { KeyedOperatorHarness } from '../../testing/harness.ts';
import type { CepMatch } from '../engine.ts';
import { cep } from '../operator.ts';
import { buildPattern, type Ev, eventsArb, type PatternDesc, patternArb } from './random-patterns.ts';
import { referenceMatches } from './reference.ts';

/**
 * Done-when (b), the operator: random patterns over random, out-of-order events of two keys, with
 * watermarks, late events, and snapshot -> new instance -> restore at random points (with work done
 * after the snapshot thrown away and replayed, as after a crash). Per key, the matches emitted, in
 * order, equal the brute-force reference's over the key's on-time events in event-time order.
 */
type Action =
  | { readonly kind: 'event'; readonly ev: Ev; readonly ts: number }
  | { readonly kind: 'wm'; readonly to: number }
  | { readonly kind: 'ckpt'; readonly lost: number };

const actionsArb = eventsArb(10, ['k1', 'k2'], 2).chain((events) =>
  fc
    .array(
      fc.oneof(
        fc.record({
          at: fc.nat(events.length),
          kind: fc.constant('wm' as const),
          to: fc.integer({ min: 0, max: 14 }),
        }),
        fc.record({ at: fc.nat(events.length), kind: fc.constant('ckpt' as const), lost: fc.nat(3) }),
      ),
      { maxLength: 6 },
    )
    .map((controls) => {
      const actions: Action[] = [];
      for (let i = 0; i <= events.length; i++) {
        for (const c of controls.filter((x) => x.at === i)) {
          actions.push(c.kind === 'wm' ? { kind: 'wm', to: c.to } : { kind: 'ckpt', lost: c.lost });
        }
        const e = events[i];
        if (e) actions.push({ kind: 'event', ev: e.ev, ts: e.ts });
      }
      return actions;
    }),
);

const late = outputTag<Ev>('late');

function expected(desc: PatternDesc, actions: readonly Action[]) {
  let wm = Number.NEGATIVE_INFINITY;
  const onTime: { ev: Ev; ts: number }[] = [];
  const lateIds: number[] = [];
  for (const a of actions) {
    if (a.kind === 'wm') wm = Math.max(wm, a.to);
    if (a.kind === 'event') {
      if (a.ts <= wm) lateIds.push(a.ev.id);
      else onTime.push({ ev: a.ev, ts: a.ts });
    }
  }
  const pattern = buildPattern(desc);
  const byKey = new Map<string, CepMatch<Ev>[]>();
  for (const key of ['k1', 'k2']) {
    const seq = onTime.filter((e) => e.ev.key === key).sort((a, b) => a.ts - b.ts || a.ev.id - b.ev.id);
    const names = pattern.spec.stages.filter((s) => s.kind === 'positive').map((s) => s.name);
    const ms = referenceMatches(
      pattern.spec,
      seq.map((e) => ({ ts: e.ts, value: e.ev })),
    ).map((m) => {
      const events: Record<string, Ev[]> = {};
      m.idx.forEach((r, i) => {
        const list = events[names[m.lab[i]!]!] ?? [];
        list.push(seq[r]!.ev);
        events[names[m.lab[i]!]!] = list;
      });
      return {
        pattern: 'pattern',
        version: 0,
        events,
        start: seq[m.idx[0]!]!.ts,
        end: seq[m.idx[m.idx.length - 1]!]!.ts,
      };
    });
    byKey.set(key, ms);
  }
  return { byKey, lateIds: lateIds.sort((a, b) => a - b) };
}

async function actual(
  desc: PatternDesc,
  actions: readonly Action[],
  backend: () => Promise<KeyedStateBackend>,
) {
  const create = async (
    restore?: Awaited<ReturnType<KeyedOperatorHarness<string, Ev, CepMatch<Ev>>['snapshot']>>,
  ) =>
    KeyedOperatorHarness.create(cep<string, Ev>(buildPattern(desc), { late }), (e: Ev) => e.key, {
      backend: await backend(),
      ...(restore ? { restore } : {}),
    });
  const matches: CepMatch<Ev>[] = [];
  const lateIds: number[] = [];
  let restores = 0;
  let h = await create();
  const harvest = () => {
    matches.push(...h.output.splice(0).map((r) => r.value));
    lateIds.push(...(h.sideOutputs.get('late')?.splice(0) ?? []).map((r) => (r.value as Ev).id));
  };
  const apply = (a: Action) => {
    if (a.kind === 'event') h.processElement(a.ev, a.ts);
    else if (a.kind === 'wm') h.advanceWatermark(a.to);
  };
  let wm = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < actions.length; i++) {
    const a = actions[i]!;
    if (a.kind === 'ckpt') {
      const snap = await h.snapshot();
      harvest();
      // Work after the snapshot is lost in the "crash", then replayed by the new instance.
      for (const b of actions.slice(i + 1, i + 1 + a.lost)) apply(b);
      await h.close();
      h = await create(snap);
      h.advanceWatermark(wm);
      restores++;
      continue;
    }
    apply(a);
    if (a.kind === 'wm') wm = Math.max(wm, a.to);
  }
  h.advanceWatermark(Number.POSITIVE_INFINITY);
  harvest();
  await h.close();
  const byKey = new Map<string, CepMatch<Ev>[]>();
  for (const key of ['k1', 'k2']) {
    byKey.set(
      key,
      matches.filter((m) => Object.values(m.events)[0]![0]!.key === key),
    );
  }
  return { byKey, lateIds: lateIds.sort((a, b) => a - b), restores };
}

async function check(runs: number, backend: () => Promise<KeyedStateBackend>) {
  let restores = 0;
  let matches = 0;
  await fc.assert(
    fc.asyncProperty(patternArb(3), actionsArb, async (desc, actions) => {
      const want = expected(desc, actions);
      const got = await actual(desc, actions, backend);
      assert.deepEqual(got.lateIds, want.lateIds);
      assert.deepEqual(got.byKey, want.byKey);
      restores += got.restores;
      for (const ms of want.byKey.values()) matches += ms.length;
    }),
    { numRuns: runs },
  );
  assert.ok(restores > runs, `only ${restores} restores in ${runs} runs`);
  assert.ok(matches > runs / 2, `only ${matches} matches in ${runs} runs`);
  return { restores, matches };
}

export const HEAP_RUNS = 2000;
export const LEVEL_RUNS = 300;

test(`operator on the heap backend equals the reference across restores (${HEAP_RUNS} cases)`, async () => {
  const r = await check(HEAP_RUNS, async () => new HeapKeyedStateBackend());
  console.log(`heap: ${r.restores} restores, ${r.matches} matches`);
});

test(`operator on the level backend equals the reference across restores (${LEVEL_RUNS} cases)`, async () => {
  const r = await check(LEVEL_RUNS, () => temporaryLevelBackend());
  console.log(`level: ${r.restores} restores, ${r.matches} matches`);
});
