import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isStreamError } from '../../api/errors.ts';
import {
  compilePatternJson,
  type PatternJson,
  type StageJson,
  validatePatternJson,
} from '../json/pattern-json.ts';
import { advanceTime, type PartialMatch, step } from '../nfa.ts';
import {
  buildPattern,
  type CondDesc,
  type Ev,
  eventsArb,
  type PatternDesc,
  patternArb,
} from './random-patterns.ts';
import { referenceMatches } from './reference.ts';

/** The JSON form of a random pattern description (conditions in the expression language). */
function toJson(d: PatternDesc): PatternJson {
  const expr = (c: CondDesc): unknown => {
    const v = { field: 'v' };
    switch (c.c) {
      case 'true':
        return true;
      case 'type':
        return { '==': [{ field: 't' }, c.t] };
      case 'notType':
        return { '!=': [{ field: 't' }, c.t] };
      case 'vAtLeast':
        return { '>=': [v, c.n] };
      case 'even':
        return { '==': [{ '%': [v, 2] }, 0] };
      case 'gtLast':
        return {
          or: [
            { '==': [{ agg: 'count', stage: c.stage }, 0] },
            { '>': [v, { agg: 'last', stage: c.stage, field: 'v' }] },
          ],
        };
      case 'sumAtMost':
        return { '<=': [{ '+': [{ agg: 'sum', stage: c.stage, field: 'v' }, v] }, c.n] };
    }
  };
  const stages: StageJson[] = [];
  d.stages.forEach((s, i) => {
    s.negations.forEach((n, j) => {
      stages.push({ name: `${s.name}_not${j}`, join: n.kind, where: expr(n.cond) as never });
    });
    const times =
      s.quant === 'once'
        ? undefined
        : 'atLeast' in s.quant
          ? { min: s.quant.atLeast }
          : { min: s.quant.times[0], max: s.quant.times[1] };
    stages.push({
      name: s.name,
      ...(i > 0 ? { join: s.join } : {}),
      ...(s.cond.c !== 'true' ? { where: expr(s.cond) as never } : {}),
      ...(times ? { times } : {}),
      ...(s.optional ? { optional: true } : {}),
      ...(s.greedy ? { greedy: true } : {}),
      ...(s.inner !== 'relaxed' ? { inner: s.inner } : {}),
      ...(s.until ? { until: expr(s.until) as never } : {}),
    });
  });
  const skip = d.skip;
  return {
    within: d.within ?? 1000,
    skip:
      skip.kind === 'skipToFirst'
        ? { skipToFirst: skip.stage }
        : skip.kind === 'skipToLast'
          ? { skipToLast: skip.stage }
          : skip.kind,
    stages,
  };
}

export const JSON_RUNS = 1500;

test(`JSON patterns compile to the same matches as the API (${JSON_RUNS} random patterns and sequences)`, () => {
  let compared = 0;
  fc.assert(
    fc.property(patternArb(3), eventsArb(9, ['k'], 2), (desc, raw) => {
      const json = toJson(desc);
      const degenerate =
        desc.stages.every((s) => s.cond.c === 'true') || desc.stages.some((s) => s.until?.c === 'true');
      const v = validatePatternJson(JSON.parse(JSON.stringify(json)));
      if (degenerate) {
        assert.equal(v.ok, false, 'degenerate patterns are rejected');
        return;
      }
      assert.ok(v.ok, v.ok ? '' : JSON.stringify(v.errors));
      const events = [...raw].sort((a, b) => a.ts - b.ts || a.ev.id - b.ev.id);
      const pattern = buildPattern(desc.within === undefined ? { ...desc, within: 1000 } : desc);
      const want = referenceMatches(
        pattern.spec,
        events.map((e) => ({ ts: e.ts, value: e.ev })),
      ).map((m) => ({ idx: [...m.idx], lab: [...m.lab] }));
      let partials: PartialMatch[] = [];
      const got: { idx: number[]; lab: number[] }[] = [];
      events.forEach((e, seq) => {
        partials = advanceTime(v.nfa, partials, e.ts).alive;
        const r = step(v.nfa, partials, { seq, ts: e.ts, value: e.ev as unknown }, (s) => events[s]!.ev);
        partials = r.partials;
        for (const m of r.matches) got.push({ idx: [...m.ev], lab: [...m.at] });
      });
      assert.deepEqual(got, want);
      compared++;
    }),
    { numRuns: JSON_RUNS },
  );
  assert.ok(compared > JSON_RUNS / 2, `only ${compared} compared`);
});

const base = (stages: unknown[], extra: Record<string, unknown> = {}) => ({ within: 1000, stages, ...extra });
const typeIs = (t: string) => ({ '==': [{ field: 'type' }, t] });

/** The errors of a pattern, as `path: message` lines. */
function errorsOf(json: unknown): string[] {
  const v = validatePatternJson(json);
  assert.equal(v.ok, false, `expected ${JSON.stringify(json)} to be rejected`);
  return v.ok ? [] : v.errors.map((e) => `${e.path}: ${e.message}`);
}

function assertRejects(json: unknown, path: string, words: RegExp) {
  const errs = errorsOf(json);
  assert.ok(
    errs.some((e) => e.startsWith(`${path}: `) && words.test(e)),
    `expected an error at ${path} matching ${words}, got:\n${errs.join('\n')}`,
  );
}

describe('validation of JSON patterns', () => {
  test('a valid pattern compiles; compilePatternJson throws PATTERN_INVALID listing every error', () => {
    const ok = base([
      { name: 'small', where: { '<': [{ field: 'amount' }, 1] }, times: { min: 3 }, inner: 'consecutive' },
      {
        name: 'big',
        join: 'followedBy',
        where: {
          '>': [{ field: 'amount' }, { '*': [100, { agg: 'max', stage: 'small', field: 'amount' }] }],
        },
      },
    ]);
    assert.equal(validatePatternJson(ok).ok, true);
    try {
      compilePatternJson({ within: 0, stages: [{ name: 'a', where: 5 }] });
      assert.fail('expected a rejection');
    } catch (e) {
      assert.ok(isStreamError(e, 'PATTERN_INVALID'));
      assert.match(e.message, /\$\.within: must be a positive number/);
      assert.match(e.message, /\$\.stages\[0\]\.where: must be a condition/);
    }
  });

  test('malformed shapes name their JSON path', () => {
    assertRejects('nope', '$', /a pattern is an object/);
    assertRejects({ stages: [{ name: 'a', where: true }] }, '$.within', /is required/);
    assertRejects(base([]), '$.stages', /non-empty array/);
    assertRejects(base([{ name: 'a', where: typeIs('x') }], { extra: 1 }), '$.extra', /unknown key/);
    assertRejects(base([{ name: 'a', whre: typeIs('x') }]), '$.stages[0].whre', /unknown key/);
    assertRejects(base([{ name: '', where: typeIs('x') }]), '$.stages[0].name', /must be a name/);
    assertRejects(
      base([
        { name: 'a', where: typeIs('x') },
        { name: 'a', join: 'next', where: typeIs('y') },
      ]),
      '$.stages[1].name',
      /used by an earlier stage/,
    );
    assertRejects(
      base([
        { name: 'a', where: typeIs('x') },
        { name: 'b', where: typeIs('y') },
      ]),
      '$.stages[1].join',
      /must be one of/,
    );
    assertRejects(
      base([{ name: 'a', join: 'next', where: typeIs('x') }]),
      '$.stages[0].join',
      /first stage has no join/,
    );
    assertRejects(base([{ name: 'a', where: { '=': [1, 1] } }]), '$.stages[0].where', /unknown operator "="/);
    assertRejects(base([{ name: 'a', where: { and: [] } }]), '$.stages[0].where.and', /non-empty array/);
    assertRejects(
      base([{ name: 'a', where: { and: [typeIs('x'), { field: 'ok' }] } }]),
      '$.stages[0].where.and[1]',
      /expected a condition/,
    );
    assertRejects(
      base([{ name: 'a', where: { '<': [{ field: 'x..y' }, 1] } }]),
      '$.stages[0].where.<[0].field',
      /dot path/,
    );
    assertRejects(
      base([{ name: 'a', where: { in: [{ field: 't' }, [{ field: 'u' }]] } }]),
      '$.stages[0].where.in[1][0]',
      /literals only/,
    );
    assertRejects(
      base([
        { name: 'a', where: { '>': [{ agg: 'sum', stage: 'b', field: 'v' }, 1] } },
        { name: 'b', join: 'next', where: typeIs('y') },
      ]),
      '$.stages[0].where.>[0].stage',
      /this stage or an earlier one/,
    );
    assertRejects(
      base([{ name: 'a', where: { '>': [{ agg: 'median', stage: 'a', field: 'v' }, 1] } }]),
      '$.stages[0].where.>[0].agg',
      /unknown aggregate/,
    );
    assertRejects(base([{ name: 'a', where: typeIs('x') }], { skip: 'skipAll' }), '$.skip', /must be/);
    assertRejects(
      base([{ name: 'a', where: typeIs('x'), inner: 'loose' }]),
      '$.stages[0].inner',
      /must be one of/,
    );
  });

  test('quantifiers and within out of range', () => {
    assertRejects(
      base([{ name: 'a', where: typeIs('x'), times: 0 }]),
      '$.stages[0].times',
      /whole number >= 1/,
    );
    assertRejects(
      base([{ name: 'a', where: typeIs('x'), times: { min: 3, max: 2 } }]),
      '$.stages[0].times.max',
      />= min/,
    );
    assertRejects(
      base([{ name: 'a', where: typeIs('x'), times: { min: 0 } }]),
      '$.stages[0].times.min',
      /optional/,
    );
    assertRejects({ within: -5, stages: [{ name: 'a', where: typeIs('x') }] }, '$.within', /positive/);
    assertRejects(
      base([
        { name: 'a', where: typeIs('x'), greedy: true },
        { name: 'b', join: 'next', where: typeIs('y') },
      ]),
      '$.stages[0]',
      /greedy applies to looping stages/,
    );
    assertRejects(
      base([{ name: 'a', where: typeIs('x'), until: typeIs('y') }]),
      '$.stages[0]',
      /until applies to looping/,
    );
  });

  test('patterns that can never match are rejected', () => {
    const range = { and: [{ '>': [{ field: 'amount' }, 100] }, { '<': [{ field: 'amount' }, 50] }] };
    assertRejects(
      base([{ name: 'a', where: range }]),
      '$.stages[0].where',
      /can never hold.*no value of "amount" is > 100 and < 50/,
    );
    assertRejects(
      base([{ name: 'a', where: { and: [typeIs('x'), typeIs('y')] } }]),
      '$.stages[0].where',
      /cannot equal both "x" and "y"/,
    );
    assertRejects(
      base([{ name: 'a', where: { and: [typeIs('x'), { '!=': [{ field: 'type' }, 'x'] }] } }]),
      '$.stages[0].where',
      /contradicts/,
    );
    assertRejects(
      base([
        {
          name: 'a',
          where: { and: [{ in: [{ field: 'c' }, ['FR', 'DE']] }, { '==': [{ field: 'c' }, 'US'] }] },
        },
      ]),
      '$.stages[0].where',
      /contradicts/,
    );
    assertRejects(
      base([{ name: 'a', where: { and: [{ '>': [{ field: 'n' }, 1] }, { '<': [{ field: 'n' }, 'z'] }] } }]),
      '$.stages[0].where',
      /number and as a string/,
    );
    assertRejects(
      base([{ name: 'a', where: { or: [false, { '<': [2, 1] }] } }]),
      '$.stages[0].where',
      /can never hold/,
    );
    assertRejects(
      base([
        {
          name: 'a',
          where: {
            and: [
              { '>=': [{ field: 'n' }, 5] },
              { '<=': [{ field: 'n' }, 5] },
              { '!=': [{ field: 'n' }, 5] },
            ],
          },
        },
      ]),
      '$.stages[0].where',
      /can never hold/,
    );
    // Satisfiable neighbours of the contradictions above are accepted.
    for (const where of [
      { and: [{ '>=': [{ field: 'n' }, 5] }, { '<=': [{ field: 'n' }, 5] }] },
      { or: [range, typeIs('x')] },
      { and: [{ '>': [{ field: 'amount' }, 100] }, { '<': [{ field: 'other' }, 50] }] },
      { not: range },
    ]) {
      const v = validatePatternJson(base([{ name: 'a', where }]));
      assert.ok(v.ok, JSON.stringify(where));
    }
    // A negation whose next event always qualifies: the stage after notNext(true) can never follow.
    assertRejects(
      base([
        { name: 'a', where: typeIs('x') },
        { name: 'n', join: 'notNext', where: { '<': [1, 0] } },
        { name: 'b', join: 'followedBy', where: typeIs('y') },
      ]),
      '$.stages[1].where',
      /excludes nothing/,
    );
    assertRejects(
      base([
        { name: 'a', where: typeIs('x'), times: { min: 1 }, until: true },
        { name: 'b', join: 'next', where: typeIs('y') },
      ]),
      '$.stages[0].until',
      /stops the loop before its first event/,
    );
  });

  test('patterns that match in a degenerate way are rejected', () => {
    assertRejects(
      base([{ name: 'a', where: typeIs('x'), optional: true }]),
      '$.stages[0]',
      /every stage of the pattern is optional/,
    );
    assertRejects(
      base([{ name: 'a' }, { name: 'b', join: 'next', where: true }]),
      '$.stages',
      /matches every sequence of events/,
    );
    assertRejects(
      base([
        { name: 'a', where: typeIs('x') },
        { name: 'n', join: 'notFollowedBy', where: typeIs('y') },
      ]),
      '$.stages[1]',
      /cannot end with a negation/,
    );
    assertRejects(
      base([
        { name: 'n', where: typeIs('y') },
        { name: 'n2', join: 'notNext', where: typeIs('y') },
      ]),
      '$.stages[1]',
      /cannot end with a negation/,
    );
    assertRejects(
      base([
        { name: 'a', where: typeIs('x'), optional: true },
        { name: 'n', join: 'notNext', where: typeIs('y') },
        { name: 'b', join: 'next', where: typeIs('z') },
      ]),
      '$.stages[1]',
      /before a negation .* cannot be optional/,
    );
    assertRejects(
      base([{ name: 'a', where: typeIs('x') }], { skip: { skipToLast: 'zz' } }),
      '$',
      /skipToLast\('zz'\) names no stage/,
    );
  });
});

describe('the JSON Schema file', () => {
  test('parses, describes the same keys as the validator, and its examples validate', async () => {
    const schema = JSON.parse(
      await readFile(new URL('../../../docs/cep-pattern.schema.json', import.meta.url), 'utf8'),
    );
    const stageKeys = Object.keys(schema.$defs.stage.properties).sort();
    assert.deepEqual(stageKeys, ['greedy', 'inner', 'join', 'name', 'optional', 'times', 'until', 'where']);
    assert.deepEqual(Object.keys(schema.properties).sort(), ['description', 'skip', 'stages', 'within']);
    assert.ok(schema.examples.length >= 2);
    for (const ex of schema.examples) {
      const v = validatePatternJson(ex);
      assert.ok(v.ok, v.ok ? '' : JSON.stringify(v.errors));
    }
  });
});

// Types used only for the generator's events.
export type { Ev };
