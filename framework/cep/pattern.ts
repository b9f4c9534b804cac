/**
 * The CEP pattern API, modeled on FlinkCEP: a pattern is a sequence of named stages, each with a
 * condition and a quantifier, joined by a contiguity (next / followedBy / followedByAny) or a
 * negation (notNext / notFollowedBy). Patterns are immutable: every method returns a new pattern,
 * and quantifier / condition methods apply to the last stage.
 *
 *   const p = Pattern.begin<Txn>('small', skipPastLastEvent())
 *     .where((t) => t.amount < 1)
 *     .timesOrMore(2).consecutive()
 *     .followedBy('big').where((t, ctx) => t.amount > 100 * ctx.events('small').length)
 *     .within(60_000);
 *
 * `compilePattern(p)` validates it (PATTERN_INVALID naming the stage) and builds the NFA; the exact
 * matching rules are in docs/cep.md.
 */

/** What a condition sees of the partial match it would extend. */
export interface MatchContext<E> {
  /** Events taken so far by the named stage, oldest first (an empty array when none). */
  events(stage: string): readonly E[];
}

/** A condition over the candidate event and the partial match so far (as Flink's IterativeCondition). */
export type Condition<E> = (event: E, ctx: MatchContext<E>) => boolean;

/** How the events of a match must follow each other. */
export type Contiguity = 'strict' | 'relaxed' | 'any';

/** What happens to other partial matches once a match is emitted (see docs/cep.md). */
export type AfterMatchSkip =
  | { readonly kind: 'noSkip' }
  | { readonly kind: 'skipToNext' }
  | { readonly kind: 'skipPastLastEvent' }
  | { readonly kind: 'skipToFirst'; readonly stage: string }
  | { readonly kind: 'skipToLast'; readonly stage: string };

export const noSkip = (): AfterMatchSkip => ({ kind: 'noSkip' });
export const skipToNext = (): AfterMatchSkip => ({ kind: 'skipToNext' });
export const skipPastLastEvent = (): AfterMatchSkip => ({ kind: 'skipPastLastEvent' });
export const skipToFirst = (stage: string): AfterMatchSkip => ({ kind: 'skipToFirst', stage });
export const skipToLast = (stage: string): AfterMatchSkip => ({ kind: 'skipToLast', stage });

/** One stage of a pattern, as plain fields (conditions are functions). */
export interface StageSpec<E> {
  readonly name: string;
  /** `negation` stages exclude events; all others take events into the match. */
  readonly kind: 'positive' | 'notNext' | 'notFollowedBy';
  /** Contiguity with the event before the stage's first event; `any` for the first stage. */
  readonly contiguity: Contiguity;
  /** Undefined: every event qualifies. */
  readonly condition?: Condition<E>;
  /** Looping stages stop at an event that satisfies this (the event is not taken). */
  readonly until?: Condition<E>;
  readonly min: number;
  /** `Infinity` for oneOrMore / timesOrMore. */
  readonly max: number;
  /** The stage may take no event at all. */
  readonly optional: boolean;
  /** Between the events of a looping stage (default relaxed, as in Flink). */
  readonly inner: Contiguity;
  readonly greedy: boolean;
  /** Where the stage was declared, for error messages (`stage 'b'` or a JSON path). */
  readonly path: string;
}

export interface PatternSpec<E> {
  readonly stages: readonly StageSpec<E>[];
  readonly withinMs?: number;
  readonly skip: AfterMatchSkip;
}

const defaults = {
  contiguity: 'any' as Contiguity,
  min: 1,
  max: 1,
  optional: false,
  inner: 'relaxed' as Contiguity,
  greedy: false,
};

export class Pattern<E> {
  readonly spec: PatternSpec<E>;

  private constructor(spec: PatternSpec<E>) {
    this.spec = spec;
  }

  /** The first stage. `skip` defaults to noSkip. */
  static begin<E>(name: string, skip: AfterMatchSkip = noSkip()): Pattern<E> {
    return new Pattern<E>({
      stages: [{ ...defaults, name, kind: 'positive', path: `stage '${name}'` }],
      skip,
    });
  }

  /** The next stage's first event must directly follow the previous event (strict contiguity). */
  next(name: string): Pattern<E> {
    return this.#add(name, 'positive', 'strict');
  }
  /** The next stage's first event is the first qualifying one after the previous event (relaxed). */
  followedBy(name: string): Pattern<E> {
    return this.#add(name, 'positive', 'relaxed');
  }
  /** The next stage's first event is any qualifying event after the previous one (non-deterministic). */
  followedByAny(name: string): Pattern<E> {
    return this.#add(name, 'positive', 'any');
  }
  /** The event directly after the previous stage's last event must not satisfy this stage. */
  notNext(name: string): Pattern<E> {
    return this.#add(name, 'notNext', 'strict');
  }
  /** No event between the previous stage's last event and the next stage's first may satisfy this stage. */
  notFollowedBy(name: string): Pattern<E> {
    return this.#add(name, 'notFollowedBy', 'relaxed');
  }

  /** AND a condition onto the last stage. */
  where(condition: Condition<E>): Pattern<E> {
    const prev = this.#last().condition;
    return this.#set({
      condition: prev ? (e, ctx) => prev(e, ctx) && condition(e, ctx) : condition,
    });
  }
  /** OR a condition onto the last stage's condition. */
  or(condition: Condition<E>): Pattern<E> {
    const prev = this.#last().condition;
    return this.#set({ condition: prev ? (e, ctx) => prev(e, ctx) || condition(e, ctx) : condition });
  }
  /** Stop condition of a looping stage. */
  until(condition: Condition<E>): Pattern<E> {
    return this.#set({ until: condition });
  }
  /** Exactly `n` events, or between `from` and `to` events (inclusive). */
  times(from: number, to: number = from): Pattern<E> {
    return this.#set({ min: from, max: to });
  }
  /** `n` or more events. */
  timesOrMore(n: number): Pattern<E> {
    return this.#set({ min: n, max: Number.POSITIVE_INFINITY });
  }
  oneOrMore(): Pattern<E> {
    return this.timesOrMore(1);
  }
  optional(): Pattern<E> {
    return this.#set({ optional: true });
  }
  /** A looping stage takes an event it can take instead of handing it to the next stage. */
  greedy(): Pattern<E> {
    return this.#set({ greedy: true });
  }
  /** The events of a looping stage must be contiguous. */
  consecutive(): Pattern<E> {
    return this.#set({ inner: 'strict' });
  }
  /** The events of a looping stage are any qualifying events (non-deterministic relaxed). */
  allowCombinations(): Pattern<E> {
    return this.#set({ inner: 'any' });
  }
  /** A match spans less than `ms` of event time (last event time - first event time < ms). */
  within(ms: number): Pattern<E> {
    return new Pattern<E>({ ...this.spec, withinMs: ms });
  }

  #last(): StageSpec<E> {
    return this.spec.stages[this.spec.stages.length - 1]!;
  }
  #set(change: Partial<StageSpec<E>>): Pattern<E> {
    const stages = [...this.spec.stages];
    stages[stages.length - 1] = { ...this.#last(), ...change };
    return new Pattern<E>({ ...this.spec, stages });
  }
  #add(name: string, kind: StageSpec<E>['kind'], contiguity: Contiguity): Pattern<E> {
    const stage: StageSpec<E> = { ...defaults, name, kind, contiguity, path: `stage '${name}'` };
    return new Pattern<E>({ ...this.spec, stages: [...this.spec.stages, stage] });
  }
}
