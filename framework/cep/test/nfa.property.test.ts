import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compilePattern } from '../compile.ts';
import { advanceTime, type PartialMatch, step } from '../nfa.ts';
import { buildPattern, type Ev, eventsArb, patternArb } from './random-patterns.ts';
import { referenceMatches } from './reference.ts';

/**
 * Done-when (b), the NFA alone: over random patterns and random event sequences (one key, already in
 * event-time order), the NFA's matches, in emission order, equal the brute-force reference's.
 */
export const NFA_RUNS = 3000;

function nfaMatches(d: ReturnType<typeof buildPattern>, events: readonly { ts: number; ev: Ev }[]) {
  const nfa = compilePattern(d);
  let partials: PartialMatch[] = [];
  const out: { idx: number[]; lab: number[] }[] = [];
  events.forEach((e, seq) => {
    partials = advanceTime(nfa, partials, e.ts).alive;
    const r = step(nfa, partials, { seq, ts: e.ts, value: e.ev }, (s) => events[s]!.ev);
    partials = r.partials;
    for (const m of r.matches) out.push({ idx: [...m.ev], lab: [...m.at] });
  });
  return out;
}

test(`NFA matches equal the brute-force reference (${NFA_RUNS} random patterns and sequences)`, () => {
  let withMatches = 0;
  let total = 0;
  fc.assert(
    fc.property(patternArb(4), eventsArb(10, ['k'], 3), (desc, raw) => {
      const events = [...raw].sort((a, b) => a.ts - b.ts || a.ev.id - b.ev.id);
      const pattern = buildPattern(desc);
      const expected = referenceMatches(
        pattern.spec,
        events.map((e) => ({ ts: e.ts, value: e.ev })),
      ).map((m) => ({ idx: [...m.idx], lab: [...m.lab] }));
      const actual = nfaMatches(pattern, events);
      assert.deepEqual(actual, expected);
      total += expected.length;
      if (expected.length > 0) withMatches++;
    }),
    { numRuns: NFA_RUNS },
  );
  // The property is only worth something if many cases have matches.
  console.log(`${withMatches} cases with matches, ${total} matches`);
  assert.ok(withMatches > NFA_RUNS / 4, `only ${withMatches} of ${NFA_RUNS} cases had matches`);
  assert.ok(total > NFA_RUNS, `only ${total} matches`);
});
