import type { CompiledPattern, CompiledStage } from './compile.ts';
import type { AfterMatchSkip, MatchContext } from './pattern.ts';

/**
 * The NFA over one key's events, as pure functions over plain data (so partial matches go into
 * keyed state with the default msgpack serializer). Events are numbered by `seq` in the order they
 * are processed (event-time order); partial matches hold seqs, and the events themselves live once
 * in a shared buffer the caller owns (`lookup`).
 *
 * A partial match is one path through the pattern: which stage each of its events was taken by,
 * the stage it is in and how many events that stage has, and which continuations the events ignored
 * since its last event have ruled out (`dead`). One assignment of events to stages is reached by
 * exactly one path, so a match is never emitted twice. docs/cep.md states the rules these functions
 * implement; framework/cep/test/reference.ts checks the same rules by brute force.
 */
export interface PartialMatch {
  /** Current stage (index into the compiled positive stages). */
  readonly s: number;
  /** Events taken by the current stage. */
  readonly k: number;
  /** Seqs of the events taken, oldest first. */
  readonly ev: readonly number[];
  /** Stage of each event in `ev`. */
  readonly at: readonly number[];
  /** Event time of the first event (for `within`). */
  readonly t0: number;
  /** Whether events were ignored since the last one taken (strict contiguity and notNext look at it). */
  readonly ig: boolean;
  /** Continuations ruled out by ignored events: target stage indices (`s` itself: the loop). */
  readonly dead: readonly number[];
}

export interface NfaEvent<E> {
  readonly seq: number;
  readonly ts: number;
  readonly value: E;
}

export interface StepResult {
  /** Partial matches alive after the event, in a deterministic order. */
  readonly partials: PartialMatch[];
  /** Matches completed by the event, in emission order, after the skip strategy. */
  readonly matches: PartialMatch[];
}

/** Complete: the current stage has its minimum and every later stage is skippable. */
export function isComplete<E>(nfa: CompiledPattern<E>, p: PartialMatch): boolean {
  const s = nfa.stages[p.s]!;
  return s.final && p.k >= s.min;
}

/**
 * Drop partial matches that can no longer be extended at `time` (`time - t0 >= within`). Returns
 * the survivors and the timed-out ones that were not complete (complete ones were emitted already).
 */
export function advanceTime<E>(
  nfa: CompiledPattern<E>,
  partials: readonly PartialMatch[],
  time: number,
): { alive: PartialMatch[]; timedOut: PartialMatch[] } {
  const within = nfa.withinMs;
  if (within === undefined) return { alive: [...partials], timedOut: [] };
  const alive: PartialMatch[] = [];
  const timedOut: PartialMatch[] = [];
  for (const p of partials) {
    if (time - p.t0 < within) alive.push(p);
    else if (!isComplete(nfa, p)) timedOut.push(p);
  }
  return { alive, timedOut };
}

/** The context a condition sees for partial match `p`. */
export function matchContext<E>(
  nfa: CompiledPattern<E>,
  p: PartialMatch | undefined,
  lookup: (seq: number) => E,
): MatchContext<E> {
  let byStage: Map<string, E[]> | undefined;
  return {
    events(stage: string): readonly E[] {
      if (p === undefined) return [];
      if (byStage === undefined) {
        byStage = new Map();
        p.ev.forEach((seq, i) => {
          const name = nfa.stages[p.at[i]!]!.name;
          const list = byStage!.get(name) ?? [];
          list.push(lookup(seq));
          byStage!.set(name, list);
        });
      }
      return byStage.get(stage) ?? [];
    },
  };
}

/**
 * Process one event: extend, keep or drop every partial match, start new ones, collect the
 * completed matches and apply the skip strategy. Call `advanceTime(nfa, partials, event.ts)` first.
 */
export function step<E>(
  nfa: CompiledPattern<E>,
  partials: readonly PartialMatch[],
  event: NfaEvent<E>,
  lookup: (seq: number) => E,
): StepResult {
  const next: PartialMatch[] = [];
  const completed: PartialMatch[] = [];
  const v = event.value;
  const take = (from: PartialMatch | undefined, stage: number) => {
    const same = from !== undefined && from.s === stage;
    const p: PartialMatch = {
      s: stage,
      k: same ? from.k + 1 : 1,
      ev: from ? [...from.ev, event.seq] : [event.seq],
      at: from ? [...from.at, stage] : [stage],
      t0: from ? from.t0 : event.ts,
      ig: false,
      dead: [],
    };
    const s = nfa.stages[stage]!;
    if (isComplete(nfa, p)) completed.push(p);
    if (p.k < s.max || s.targets.length > 0) next.push(p);
  };
  const admits = (s: CompiledStage<E>, ctx: MatchContext<E>) =>
    s.condition(v, ctx) && !(s.until?.(v, ctx) ?? false);

  for (const p of partials) {
    const ctx = matchContext(nfa, p, lookup);
    const cur = nfa.stages[p.s]!;
    const dead = new Set(p.dead);
    const ready = p.k >= cur.min;
    const newDead = [...p.dead];
    let alive = false;
    // The loop: take the event into the current stage, or rule the loop out by ignoring it.
    let tookLoop = false;
    if (p.k < cur.max && !dead.has(cur.index)) {
      const qualifies = cur.condition(v, ctx);
      const stops = cur.until?.(v, ctx) ?? false;
      if (qualifies && !stops) {
        take(p, cur.index);
        tookLoop = true;
      }
      const keep = !stops && (cur.inner === 'any' || (cur.inner === 'relaxed' && !qualifies));
      if (keep) alive = true;
      else newDead.push(cur.index);
    }
    // Proceeding to a later stage (a greedy stage that took the event does not proceed).
    if (ready) {
      for (const t of cur.targets) {
        if (dead.has(t)) continue;
        const target = nfa.stages[t]!;
        const tc = target.condition(v, ctx);
        const notNextHit = !p.ig && target.negations.some((n) => n.kind === 'notNext' && n.condition(v, ctx));
        const notFollowedHit = target.negations.some(
          (n) => n.kind === 'notFollowedBy' && n.condition(v, ctx),
        );
        const contiguous = target.contiguity !== 'strict' || !p.ig;
        const stops = target.until?.(v, ctx) ?? false;
        if (tc && !stops && contiguous && !notNextHit && !(cur.greedy && tookLoop)) take(p, t);
        // Ignoring the event keeps this continuation only if it skips nothing it must not skip.
        const keep =
          !notNextHit &&
          !notFollowedHit &&
          (target.contiguity === 'any' || (target.contiguity === 'relaxed' && !tc));
        if (keep) alive = true;
        else newDead.push(t);
      }
    }
    if (alive) next.push({ ...p, ig: true, dead: newDead });
  }
  const empty = matchContext(nfa, undefined, lookup);
  for (const t of nfa.starts) if (admits(nfa.stages[t]!, empty)) take(undefined, t);

  completed.sort(compareMatches);
  const matches: PartialMatch[] = [];
  let alive = next;
  for (const m of completed) {
    if (matches.some((k) => prunes(nfa.skip, nfa, k, m.ev[0]!))) continue;
    matches.push(m);
    if (nfa.skip.kind !== 'noSkip') alive = alive.filter((p) => !prunes(nfa.skip, nfa, m, p.ev[0]!));
  }
  return { partials: alive, matches };
}

/** Emission order of matches that end on the same event: by first event, then by events and stages. */
export function compareMatches(a: PartialMatch, b: PartialMatch): number {
  return compareArrays(a.ev, b.ev) || compareArrays(a.at, b.at);
}

function compareArrays(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Whether emitting `match` discards a partial match or match that started at event `start`. */
export function prunes<E>(
  skip: AfterMatchSkip,
  nfa: CompiledPattern<E>,
  match: Pick<PartialMatch, 'ev' | 'at'>,
  start: number,
): boolean {
  switch (skip.kind) {
    case 'noSkip':
      return false;
    case 'skipToNext':
      return start <= match.ev[0]!;
    case 'skipPastLastEvent':
      return start <= match.ev[match.ev.length - 1]!;
    case 'skipToFirst':
    case 'skipToLast': {
      const seqs = match.ev.filter((_, i) => nfa.stages[match.at[i]!]!.name === skip.stage);
      if (seqs.length === 0) return false;
      return start < (skip.kind === 'skipToFirst' ? seqs[0]! : seqs[seqs.length - 1]!);
    }
  }
}
