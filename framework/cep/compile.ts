import { StreamError } from '../api/errors.ts';
import type { AfterMatchSkip, Condition, Contiguity, Pattern, PatternSpec, StageSpec } from './pattern.ts';

/** A negation checked in the gap before a positive stage. */
export interface CompiledNegation<E> {
  readonly name: string;
  readonly kind: 'notNext' | 'notFollowedBy';
  readonly condition: Condition<E>;
}

/** A positive stage of the NFA; negations are folded into the stage after them. */
export interface CompiledStage<E> {
  readonly index: number;
  readonly name: string;
  readonly condition: Condition<E>;
  readonly until: Condition<E> | undefined;
  readonly min: number;
  readonly max: number;
  /** May take no event (optional, or min 0). */
  readonly skippable: boolean;
  readonly contiguity: Contiguity;
  readonly inner: Contiguity;
  readonly greedy: boolean;
  /** Negations in the gap before this stage's first event. */
  readonly negations: readonly CompiledNegation<E>[];
  /** Stages the match may go on with once this one has `min` events: the next ones through skippable stages. */
  readonly targets: readonly number[];
  /** Every later stage is skippable: once this stage has `min` events the match is complete. */
  readonly final: boolean;
}

/** The NFA of a pattern: positive stages, the stages a match may start in, `within`, the skip strategy. */
export interface CompiledPattern<E> {
  readonly stages: readonly CompiledStage<E>[];
  readonly starts: readonly number[];
  readonly withinMs: number | undefined;
  readonly skip: AfterMatchSkip;
}

const always = (): boolean => true;

function invalid(message: string): never {
  throw new StreamError('PATTERN_INVALID', message);
}

/**
 * Check a pattern's structure and build its NFA. Throws PATTERN_INVALID, naming the stage (its
 * `path`), for: no stage or duplicate names; times/ranges out of range (times(0), from > to); until,
 * greedy, consecutive or allowCombinations on a stage that does not loop; greedy on the last stage; a
 * negation first, last, optional or quantified, or next to a skippable stage; every positive stage
 * skippable (the pattern could match no event); within <= 0; a skip strategy naming no stage.
 */
export function compilePattern<E>(pattern: Pattern<E> | PatternSpec<E>): CompiledPattern<E> {
  const spec = 'spec' in pattern ? pattern.spec : pattern;
  const all = spec.stages;
  if (all.length === 0) invalid('a pattern needs at least one stage');
  const names = new Set<string>();
  for (const s of all) {
    if (typeof s.name !== 'string' || s.name === '') invalid(`${s.path}: a stage needs a non-empty name`);
    if (names.has(s.name)) invalid(`${s.path}: the stage name '${s.name}' is used twice`);
    names.add(s.name);
    checkQuantifier(s);
  }
  all.forEach((s, i) => {
    if (s.kind === 'positive') return;
    if (i === 0) invalid(`${s.path}: a pattern cannot begin with a negation (${s.kind})`);
    if (i === all.length - 1) {
      invalid(`${s.path}: a pattern cannot end with a negation (${s.kind}); follow it by a stage`);
    }
    const before = all[i - 1]!;
    const after = all[i + 1]!;
    if (before.kind === 'positive' && (before.optional || before.min === 0)) {
      invalid(`${s.path}: the stage before a negation ('${before.name}') cannot be optional`);
    }
    if (after.kind === 'positive' && (after.optional || after.min === 0)) {
      invalid(`${s.path}: the stage after a negation ('${after.name}') cannot be optional`);
    }
  });
  const positives = all.filter((s) => s.kind === 'positive');
  const skippable = (s: StageSpec<E>) => s.optional || s.min === 0;
  if (positives.every(skippable)) {
    invalid(
      `${positives[0]!.path}: every stage of the pattern is optional, so it would match no event at all; make one stage required`,
    );
  }
  const last = positives[positives.length - 1]!;
  if (last.greedy) invalid(`${last.path}: greedy has no effect on the last stage; remove it`);
  if (spec.withinMs !== undefined && !(Number.isFinite(spec.withinMs) && spec.withinMs > 0)) {
    invalid(`within must be a positive number of milliseconds, got ${spec.withinMs}`);
  }
  const skip = spec.skip;
  if (skip.kind === 'skipToFirst' || skip.kind === 'skipToLast') {
    if (!positives.some((s) => s.name === skip.stage)) {
      invalid(`${skip.kind}('${skip.stage}') names no stage of the pattern that takes events`);
    }
  }

  const stages: CompiledStage<E>[] = [];
  let negations: CompiledNegation<E>[] = [];
  for (const s of all) {
    if (s.kind !== 'positive') {
      negations.push({ name: s.name, kind: s.kind, condition: s.condition ?? always });
      continue;
    }
    const index = stages.length;
    stages.push({
      index,
      name: s.name,
      condition: s.condition ?? always,
      until: s.until,
      min: s.min,
      max: s.max,
      skippable: skippable(s),
      contiguity: index === 0 ? 'any' : s.contiguity,
      inner: s.inner,
      greedy: s.greedy,
      negations,
      targets: [],
      final: false,
    });
    negations = [];
  }
  const reach = (from: number): { targets: number[]; final: boolean } => {
    const targets: number[] = [];
    for (let j = from; j < stages.length; j++) {
      targets.push(j);
      if (!stages[j]!.skippable) return { targets, final: false };
    }
    return { targets, final: true };
  };
  const compiled = stages.map((s) => ({ ...s, ...reach(s.index + 1) }));
  return { stages: compiled, starts: reach(0).targets, withinMs: spec.withinMs, skip };
}

function checkQuantifier<E>(s: StageSpec<E>): void {
  const loops = s.max > 1;
  if (s.kind !== 'positive') {
    if (s.min !== 1 || s.max !== 1 || s.optional || s.greedy || s.until || s.inner !== 'relaxed') {
      invalid(`${s.path}: a negation (${s.kind}) takes no quantifier, optional, greedy or until`);
    }
    return;
  }
  if (!Number.isInteger(s.min) || s.min < 0) {
    invalid(`${s.path}: times must be a whole number >= 1 (use optional() for zero), got ${s.min}`);
  }
  if (s.max !== Number.POSITIVE_INFINITY && (!Number.isInteger(s.max) || s.max < 1)) {
    invalid(`${s.path}: times must be at least 1, got ${s.max}; a stage that takes no event never matches`);
  }
  if (s.min > s.max) invalid(`${s.path}: times(${s.min}, ${s.max}) has from > to`);
  if (!loops && s.until) invalid(`${s.path}: until applies to looping stages (times, oneOrMore) only`);
  if (!loops && s.greedy) invalid(`${s.path}: greedy applies to looping stages (times, oneOrMore) only`);
  if (!loops && s.inner !== 'relaxed') {
    invalid(`${s.path}: consecutive / allowCombinations apply to looping stages (times, oneOrMore) only`);
  }
}
