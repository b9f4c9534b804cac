import fc from 'fast-check';
import { type AfterMatchSkip, type Condition, Pattern } from '../pattern.ts';

/**
 * Random patterns over the whole pattern API, and random events, for the property tests. A pattern is
 * generated as a plain description (printable when a property fails) and built with the API.
 */
export interface Ev {
  readonly id: number;
  readonly t: 'a' | 'b' | 'c';
  readonly v: number;
  readonly key: string;
}

export type CondDesc =
  | { readonly c: 'true' }
  | { readonly c: 'type'; readonly t: Ev['t'] }
  | { readonly c: 'notType'; readonly t: Ev['t'] }
  | { readonly c: 'vAtLeast'; readonly n: number }
  | { readonly c: 'even' }
  /** v greater than the last event of an earlier (or the same) stage; true when it has none. */
  | { readonly c: 'gtLast'; readonly stage: string }
  /** the sum of v over the stage's events so far plus this one stays <= n. */
  | { readonly c: 'sumAtMost'; readonly stage: string; readonly n: number };

export interface StageDesc {
  readonly name: string;
  readonly join: 'next' | 'followedBy' | 'followedByAny';
  readonly cond: CondDesc;
  readonly quant: 'once' | { times: [number, number] } | { atLeast: number };
  readonly optional: boolean;
  readonly greedy: boolean;
  readonly inner: 'relaxed' | 'consecutive' | 'allowCombinations';
  readonly until: CondDesc | undefined;
  /** Negations in front of the stage (not for the first stage). */
  readonly negations: readonly { readonly kind: 'notNext' | 'notFollowedBy'; readonly cond: CondDesc }[];
}

export interface PatternDesc {
  readonly stages: readonly StageDesc[];
  readonly within: number | undefined;
  readonly skip: AfterMatchSkip;
}

export function condition(d: CondDesc): Condition<Ev> | undefined {
  switch (d.c) {
    case 'true':
      return undefined;
    case 'type':
      return (e) => e.t === d.t;
    case 'notType':
      return (e) => e.t !== d.t;
    case 'vAtLeast':
      return (e) => e.v >= d.n;
    case 'even':
      return (e) => e.v % 2 === 0;
    case 'gtLast':
      return (e, ctx) => {
        const xs = ctx.events(d.stage);
        return xs.length === 0 || e.v > xs[xs.length - 1]!.v;
      };
    case 'sumAtMost':
      return (e, ctx) => ctx.events(d.stage).reduce((s, x) => s + x.v, e.v) <= d.n;
  }
}

const simpleCond = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('a', 'b', 'c').map((t) => ({ c: 'type', t }) as CondDesc) },
  { weight: 1, arbitrary: fc.constantFrom('a', 'b', 'c').map((t) => ({ c: 'notType', t }) as CondDesc) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((n) => ({ c: 'vAtLeast', n }) as CondDesc) },
  { weight: 1, arbitrary: fc.constant({ c: 'even' } as CondDesc) },
  { weight: 1, arbitrary: fc.constant({ c: 'true' } as CondDesc) },
);

function condFor(names: readonly string[]): fc.Arbitrary<CondDesc> {
  return fc.oneof(
    { weight: 6, arbitrary: simpleCond },
    {
      weight: 1,
      arbitrary: fc.constantFrom(...names).map((stage) => ({ c: 'gtLast', stage }) as CondDesc),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(...names), fc.integer({ min: 2, max: 6 }))
        .map(([stage, n]) => ({ c: 'sumAtMost', stage, n }) as CondDesc),
    },
  );
}

const stageArb = (i: number): fc.Arbitrary<StageDesc> => {
  const names = Array.from({ length: i + 1 }, (_, j) => `s${j}`);
  return fc.record({
    name: fc.constant(`s${i}`),
    join: fc.constantFrom('next', 'followedBy', 'followedByAny'),
    cond: condFor(names),
    quant: fc.oneof(
      { weight: 3, arbitrary: fc.constant('once' as const) },
      {
        weight: 2,
        arbitrary: fc
          .tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 2 }))
          .map(([a, d]) => ({ times: [a, a + d] as [number, number] })),
      },
      { weight: 2, arbitrary: fc.integer({ min: 1, max: 2 }).map((n) => ({ atLeast: n })) },
    ),
    optional: fc.boolean(),
    greedy: fc.boolean(),
    inner: fc.constantFrom('relaxed', 'consecutive', 'allowCombinations'),
    until: fc.option(simpleCond, { nil: undefined, freq: 4 }),
    negations: fc.array(fc.record({ kind: fc.constantFrom('notNext', 'notFollowedBy'), cond: simpleCond }), {
      maxLength: i === 0 ? 0 : 1,
    }),
  }) as fc.Arbitrary<StageDesc>;
};

/** Random valid patterns of 1 to `maxStages` positive stages. */
export function patternArb(maxStages = 3): fc.Arbitrary<PatternDesc> {
  return fc
    .integer({ min: 1, max: maxStages })
    .chain((n) =>
      fc.record({
        stages: fc.tuple(...Array.from({ length: n }, (_, i) => stageArb(i))),
        within: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
        skipKind: fc.constantFrom('noSkip', 'skipToNext', 'skipPastLastEvent', 'skipToFirst', 'skipToLast'),
        skipStage: fc.integer({ min: 0, max: n - 1 }),
      }),
    )
    .map(({ stages, within, skipKind, skipStage }) => normalise(stages, within, skipKind, skipStage));
}

/** Make a generated description valid: the rules of `compilePattern`. */
function normalise(
  raw: readonly StageDesc[],
  within: number | undefined,
  skipKind: string,
  skipStage: number,
): PatternDesc {
  const stages = raw.map((s, i) => {
    const loops = s.quant !== 'once' && ('atLeast' in s.quant || s.quant.times[1] > 1);
    const last = i === raw.length - 1;
    return {
      ...s,
      greedy: s.greedy && loops && !last,
      inner: loops ? s.inner : 'relaxed',
      until: loops ? s.until : undefined,
    } as StageDesc;
  });
  // Neighbours of a negation are required.
  const out = stages.map((s, i) => {
    const negNext = stages[i + 1]?.negations.length ?? 0;
    return { ...s, optional: s.optional && s.negations.length === 0 && negNext === 0 };
  });
  if (out.every((s) => s.optional)) out[0] = { ...out[0]!, optional: false };
  const name = `s${skipStage}`;
  const skip: AfterMatchSkip =
    skipKind === 'skipToFirst' || skipKind === 'skipToLast'
      ? ({ kind: skipKind, stage: name } as AfterMatchSkip)
      : ({ kind: skipKind } as AfterMatchSkip);
  return { stages: out, within, skip };
}

export function buildPattern(d: PatternDesc): Pattern<Ev> {
  let p: Pattern<Ev> | undefined;
  d.stages.forEach((s, i) => {
    if (p === undefined) p = Pattern.begin<Ev>(s.name, d.skip);
    else {
      s.negations.forEach((n, j) => {
        p = n.kind === 'notNext' ? p!.notNext(`${s.name}_not${j}`) : p!.notFollowedBy(`${s.name}_not${j}`);
        const c = condition(n.cond);
        if (c) p = p.where(c);
      });
      p =
        s.join === 'next'
          ? p.next(s.name)
          : s.join === 'followedBy'
            ? p.followedBy(s.name)
            : p.followedByAny(s.name);
    }
    const c = condition(s.cond);
    if (c) p = p.where(c);
    if (s.quant !== 'once') {
      p = 'atLeast' in s.quant ? p.timesOrMore(s.quant.atLeast) : p.times(s.quant.times[0], s.quant.times[1]);
    }
    if (s.optional) p = p.optional();
    if (s.greedy) p = p.greedy();
    if (s.inner === 'consecutive') p = p.consecutive();
    if (s.inner === 'allowCombinations') p = p.allowCombinations();
    if (s.until) {
      const u = condition(s.until);
      p = p.until(u ?? (() => true));
    }
    void i;
  });
  if (d.within !== undefined) p = p!.within(d.within);
  return p!;
}

/** Random events: `n` events of 1 or 2 keys, with small values and timestamps (many ties). */
export function eventsArb(
  maxEvents: number,
  keys = ['k1', 'k2'],
  minEvents = 0,
): fc.Arbitrary<{ ev: Ev; ts: number }[]> {
  return fc
    .array(
      fc.record({
        t: fc.constantFrom('a', 'b', 'c'),
        v: fc.integer({ min: 0, max: 3 }),
        key: fc.constantFrom(...keys),
        ts: fc.integer({ min: 0, max: 12 }),
      }),
      { minLength: minEvents, maxLength: maxEvents },
    )
    .map((xs) => xs.map((x, id) => ({ ev: { id, t: x.t, v: x.v, key: x.key } as Ev, ts: x.ts })));
}
