import { isStreamError, StreamError } from '../../api/errors.ts';
import { type CompiledPattern, compilePattern } from '../compile.ts';
import type { AfterMatchSkip, Contiguity, PatternSpec, StageSpec } from '../pattern.ts';
import { contradiction } from './analysis.ts';
import { checkExpr, compileCondition, describe, type Expr, type ExprError } from './expr.ts';

/**
 * Patterns as data: the JSON form of docs/cep.md, its JSON Schema docs/cep-pattern.schema.json.
 *
 *   { "within": 600000, "skip": "skipPastLastEvent",
 *     "stages": [
 *       { "name": "small", "where": { "<": [{ "field": "amount" }, 1] }, "times": { "min": 3 } },
 *       { "name": "big", "join": "followedBy", "where": { ">": [{ "field": "amount" }, 500] } } ] }
 *
 * `validatePatternJson` checks everything without throwing and returns every error with its JSON
 * path; `compilePatternJson` throws one PATTERN_INVALID listing them.
 */
export interface PatternJson {
  readonly description?: string;
  readonly within: number;
  readonly skip?: SkipJson;
  readonly stages: readonly StageJson[];
}

export type SkipJson =
  | 'noSkip'
  | 'skipToNext'
  | 'skipPastLastEvent'
  | { readonly skipToFirst: string }
  | { readonly skipToLast: string };

export interface StageJson {
  readonly name: string;
  /** How the stage joins the one before it; required on every stage but the first. */
  readonly join?: 'next' | 'followedBy' | 'followedByAny' | 'notNext' | 'notFollowedBy';
  readonly where?: Expr;
  /** `n` events, or `{ min, max }`; without `max`: `min` or more. */
  readonly times?: number | { readonly min: number; readonly max?: number };
  readonly optional?: boolean;
  readonly greedy?: boolean;
  /** Contiguity between the events of a looping stage; default relaxed. */
  readonly inner?: 'relaxed' | 'consecutive' | 'allowCombinations';
  readonly until?: Expr;
}

export type PatternValidation =
  | { readonly ok: true; readonly spec: PatternSpec<unknown>; readonly nfa: CompiledPattern<unknown> }
  | { readonly ok: false; readonly errors: readonly ExprError[] };

const TOP_KEYS = ['description', 'within', 'skip', 'stages'];
const STAGE_KEYS = ['name', 'join', 'where', 'times', 'optional', 'greedy', 'inner', 'until'];
const JOINS = ['next', 'followedBy', 'followedByAny', 'notNext', 'notFollowedBy'];
const INNER = ['relaxed', 'consecutive', 'allowCombinations'];
const SKIPS = ['noSkip', 'skipToNext', 'skipPastLastEvent'];
export const MAX_STAGES = 64;

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

/** Validate a JSON pattern: every error, each with its JSON path, or the pattern compiled to its NFA. */
export function validatePatternJson(json: unknown): PatternValidation {
  const errors: ExprError[] = [];
  const err = (path: string, message: string) => errors.push({ path, message });
  if (!isObject(json))
    return { ok: false, errors: [{ path: '$', message: `a pattern is an object, got ${describe(json)}` }] };
  for (const k of Object.keys(json))
    if (!TOP_KEYS.includes(k)) err(`$.${k}`, `unknown key; a pattern has ${TOP_KEYS.join(', ')}`);
  if (json.description !== undefined && typeof json.description !== 'string')
    err('$.description', 'must be a string');
  const within = json.within;
  if (within === undefined)
    err('$.within', 'is required: a pattern from data must bound its partial matches in time (ms)');
  else if (typeof within !== 'number' || !Number.isFinite(within) || within <= 0) {
    err('$.within', `must be a positive number of milliseconds, got ${describe(within)}`);
  }
  const skip = checkSkip(json.skip, err);
  const stages: StageSpec<unknown>[] = [];
  if (!Array.isArray(json.stages) || json.stages.length === 0) {
    err('$.stages', 'must be a non-empty array of stages');
  } else if (json.stages.length > MAX_STAGES) {
    err('$.stages', `has ${json.stages.length} stages; at most ${MAX_STAGES}`);
  } else {
    const names: string[] = [];
    const positives: string[] = [];
    json.stages.forEach((raw: unknown, i: number) => {
      const s = checkStage(raw, i, names, positives, err, errors);
      if (s) stages.push(s);
    });
    const open = (s: StageJson) => s.where === undefined || s.where === true;
    const positive = (s: StageJson) => s.join !== 'notNext' && s.join !== 'notFollowedBy';
    if (stages.length === json.stages.length && (json.stages as StageJson[]).filter(positive).every(open)) {
      err(
        '$.stages',
        'no stage has a condition ("where"), so the pattern matches every sequence of events; add one',
      );
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  const spec: PatternSpec<unknown> = { stages, withinMs: within as number, skip: skip! };
  try {
    return { ok: true, spec, nfa: compilePattern(spec) };
  } catch (e) {
    if (!isStreamError(e, 'PATTERN_INVALID')) throw e;
    const m = /^(\$[^:]*): (.*)$/s.exec(e.message);
    return { ok: false, errors: [m ? { path: m[1]!, message: m[2]! } : { path: '$', message: e.message }] };
  }
}

/** Compile a JSON pattern to its NFA; throws PATTERN_INVALID listing every error with its JSON path. */
export function compilePatternJson(json: unknown): CompiledPattern<unknown> {
  const r = validatePatternJson(json);
  if (r.ok) return r.nfa;
  throw new StreamError('PATTERN_INVALID', formatErrors(r.errors));
}

export function formatErrors(errors: readonly ExprError[]): string {
  return `invalid pattern: ${errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`;
}

function checkSkip(skip: unknown, err: (p: string, m: string) => void): AfterMatchSkip | undefined {
  if (skip === undefined) return { kind: 'noSkip' };
  if (typeof skip === 'string' && SKIPS.includes(skip)) return { kind: skip } as AfterMatchSkip;
  if (isObject(skip) && Object.keys(skip).length === 1) {
    const [k, v] = Object.entries(skip)[0]!;
    if ((k === 'skipToFirst' || k === 'skipToLast') && typeof v === 'string') return { kind: k, stage: v };
  }
  err(
    '$.skip',
    `must be ${SKIPS.map((s) => `"${s}"`).join(', ')}, {"skipToFirst": stage} or {"skipToLast": stage}, got ${describe(skip)}`,
  );
  return undefined;
}

function checkStage(
  raw: unknown,
  i: number,
  names: string[],
  positives: string[],
  err: (p: string, m: string) => void,
  errors: ExprError[],
): StageSpec<unknown> | undefined {
  const path = `$.stages[${i}]`;
  if (!isObject(raw)) {
    err(path, `a stage is an object, got ${describe(raw)}`);
    return undefined;
  }
  const before = errors.length;
  for (const k of Object.keys(raw))
    if (!STAGE_KEYS.includes(k)) err(`${path}.${k}`, `unknown key; a stage has ${STAGE_KEYS.join(', ')}`);
  const name = raw.name;
  if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(name)) {
    err(`${path}.name`, `must be a name of letters, digits, '_' and '-' (at most 64), got ${describe(name)}`);
  } else if (names.includes(name)) err(`${path}.name`, `'${name}' is used by an earlier stage`);
  else names.push(name);
  const join = raw.join;
  if (i === 0 && join !== undefined) err(`${path}.join`, 'the first stage has no join');
  if (i > 0 && (typeof join !== 'string' || !JOINS.includes(join))) {
    err(`${path}.join`, `must be one of ${JOINS.join(', ')}, got ${describe(join)}`);
  }
  const negation = join === 'notNext' || join === 'notFollowedBy';
  if (!negation && typeof name === 'string') positives.push(name);
  const visible = [...positives];
  let min = 1;
  let max = 1;
  const t = raw.times;
  if (typeof t === 'number') {
    if (!Number.isInteger(t) || t < 1)
      err(`${path}.times`, `must be a whole number >= 1, got ${describe(t)}`);
    min = max = t;
  } else if (isObject(t)) {
    const extra = Object.keys(t).filter((k) => k !== 'min' && k !== 'max');
    if (extra.length) err(`${path}.times`, `has unknown key(s) ${extra.join(', ')}; use min and max`);
    if (!Number.isInteger(t.min) || (t.min as number) < 1) {
      err(
        `${path}.times.min`,
        `must be a whole number >= 1 (use "optional" for zero), got ${describe(t.min)}`,
      );
    }
    if (t.max !== undefined && (!Number.isInteger(t.max) || (t.max as number) < (t.min as number))) {
      err(`${path}.times.max`, `must be a whole number >= min, got ${describe(t.max)}`);
    }
    min = t.min as number;
    max = t.max === undefined ? Number.POSITIVE_INFINITY : (t.max as number);
  } else if (t !== undefined) err(`${path}.times`, `must be a number or {"min", "max"}, got ${describe(t)}`);
  for (const k of ['optional', 'greedy'] as const) {
    if (raw[k] !== undefined && typeof raw[k] !== 'boolean')
      err(`${path}.${k}`, `must be true or false, got ${describe(raw[k])}`);
  }
  if (raw.inner !== undefined && !INNER.includes(raw.inner as string)) {
    err(`${path}.inner`, `must be one of ${INNER.join(', ')}, got ${describe(raw.inner)}`);
  }
  const condition = (key: 'where' | 'until') => {
    const e = raw[key];
    if (e === undefined) return undefined;
    const kind = checkExpr(e, `${path}.${key}`, visible, errors);
    if (kind === 'value')
      err(`${path}.${key}`, 'must be a condition (comparison, in, and, or, not, true, false)');
    if (kind !== 'bool') return undefined;
    const why = contradiction(e as Expr);
    if (why !== undefined) {
      err(
        `${path}.${key}`,
        key === 'where'
          ? `the condition can never hold (${why}), so ${negation ? 'the negation excludes nothing' : 'the pattern can never match'}`
          : `the until condition can never hold (${why}); remove it`,
      );
    }
    if (key === 'until' && e === true)
      err(`${path}.until`, 'an until that always holds stops the loop before its first event');
    return compileCondition(e as Expr);
  };
  const where = condition('where');
  const until = condition('until');
  if (errors.length > before) return undefined;
  const inner = raw.inner as string | undefined;
  return {
    name: name as string,
    kind: negation ? (join as 'notNext' | 'notFollowedBy') : 'positive',
    contiguity: (join === 'next' || join === 'notNext'
      ? 'strict'
      : join === 'followedByAny'
        ? 'any'
        : 'relaxed') as Contiguity,
    ...(where ? { condition: where } : {}),
    ...(until ? { until } : {}),
    min,
    max,
    optional: raw.optional === true,
    inner: inner === 'consecutive' ? 'strict' : inner === 'allowCombinations' ? 'any' : 'relaxed',
    greedy: raw.greedy === true,
    path,
  };
}
