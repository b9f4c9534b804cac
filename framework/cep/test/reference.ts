import type {
  AfterMatchSkip,
  Condition,
  Contiguity,
  MatchContext,
  PatternSpec,
  StageSpec,
} from '../pattern.ts';

/**
 * A brute-force matcher written from the definitions in docs/cep.md, not from the NFA: it enumerates
 * every assignment of a subsequence of the events to the pattern's stages (in stage order), keeps the
 * assignments that satisfy the rules, orders them as they are emitted and applies the skip strategy.
 * Exponential: for short sequences only.
 */
export interface RefMatch {
  /** Indices of the events, increasing. */
  readonly idx: readonly number[];
  /** Positive stage index (0-based among positive stages) of each event. */
  readonly lab: readonly number[];
}

interface Positive<E> {
  readonly spec: StageSpec<E>;
  readonly negations: readonly StageSpec<E>[];
}

const yes = () => true;

export function referenceMatches<E>(
  pattern: PatternSpec<E>,
  events: readonly { readonly ts: number; readonly value: E }[],
): RefMatch[] {
  const positives: Positive<E>[] = [];
  let negs: StageSpec<E>[] = [];
  for (const s of pattern.stages) {
    if (s.kind === 'positive') {
      positives.push({ spec: s, negations: negs });
      negs = [];
    } else negs.push(s);
  }
  const n = events.length;
  const S = positives.length;
  const valid: RefMatch[] = [];
  const idx: number[] = [];
  const lab: number[] = [];
  const enumerate = (i: number) => {
    if (i === n) {
      if (idx.length > 0 && isValid(pattern, positives, events, idx, lab)) {
        valid.push({ idx: [...idx], lab: [...lab] });
      }
      return;
    }
    enumerate(i + 1);
    const from = lab.length > 0 ? lab[lab.length - 1]! : 0;
    for (let l = from; l < S; l++) {
      idx.push(i);
      lab.push(l);
      enumerate(i + 1);
      idx.pop();
      lab.pop();
    }
  };
  enumerate(0);
  valid.sort((a, b) => {
    const ea = a.idx[a.idx.length - 1]!;
    const eb = b.idx[b.idx.length - 1]!;
    return ea - eb || lex(a.idx, b.idx) || lex(a.lab, b.lab);
  });
  const kept: RefMatch[] = [];
  for (const m of valid) {
    if (kept.some((k) => discards(pattern.skip, positives, k, m.idx[0]!))) continue;
    kept.push(m);
  }
  return kept;
}

function lex(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function discards<E>(skip: AfterMatchSkip, positives: Positive<E>[], m: RefMatch, start: number): boolean {
  const first = m.idx[0]!;
  const last = m.idx[m.idx.length - 1]!;
  if (skip.kind === 'noSkip') return false;
  if (skip.kind === 'skipToNext') return start <= first;
  if (skip.kind === 'skipPastLastEvent') return start <= last;
  const of = m.idx.filter((_, i) => positives[m.lab[i]!]!.spec.name === skip.stage);
  if (of.length === 0) return false;
  return start < (skip.kind === 'skipToFirst' ? of[0]! : of[of.length - 1]!);
}

function isValid<E>(
  pattern: PatternSpec<E>,
  positives: Positive<E>[],
  events: readonly { readonly ts: number; readonly value: E }[],
  idx: readonly number[],
  lab: readonly number[],
): boolean {
  // Quantifiers: each stage takes 0 events only if optional, else between min and max.
  for (let s = 0; s < positives.length; s++) {
    const spec = positives[s]!.spec;
    const c = lab.filter((l) => l === s).length;
    if (c === 0 ? !(spec.optional || spec.min === 0) : c < Math.max(1, spec.min) || c > spec.max)
      return false;
  }
  // within: last event time - first event time < within.
  if (pattern.withinMs !== undefined) {
    if (events[idx[idx.length - 1]!]!.ts - events[idx[0]!]!.ts >= pattern.withinMs) return false;
  }
  for (let m = 0; m < idx.length; m++) {
    const q = idx[m]!;
    const X = positives[lab[m]!]!.spec;
    const ctx = contextOf(positives, events, idx.slice(0, m), lab.slice(0, m));
    const holds = (c: Condition<E> | undefined, r: number) => (c ?? yes)(events[r]!.value, ctx);
    const noneIn = (c: Condition<E> | undefined, p: number) => {
      for (let r = p + 1; r < q; r++) if (holds(c, r)) return false;
      return true;
    };
    const gapOk = (kind: Contiguity, c: Condition<E> | undefined, p: number) =>
      kind === 'strict' ? q === p + 1 : kind === 'relaxed' ? noneIn(c, p) : true;
    // The event satisfies its stage's condition and not its until condition.
    if (!holds(X.condition, q) || (X.until !== undefined && holds(X.until, q))) return false;
    if (m === 0) continue;
    const p = idx[m - 1]!;
    const Ystage = lab[m - 1]!;
    const Y = positives[Ystage]!.spec;
    if (Ystage === lab[m]) {
      // Within a looping stage: its inner contiguity; and no until event since its events began.
      if (!gapOk(X.inner, X.condition, p)) return false;
      if (X.until !== undefined && !noneIn(X.until, p)) return false;
      continue;
    }
    // The first event of a stage: the stage's contiguity, and the negations before it.
    if (!gapOk(X.contiguity, X.condition, p)) return false;
    for (const neg of positives[lab[m]!]!.negations) {
      if (neg.kind === 'notFollowedBy' && !noneIn(neg.condition, p)) return false;
      if (neg.kind === 'notNext' && holds(neg.condition, p + 1)) return false;
    }
    // A greedy stage does not hand over an event it could have taken itself.
    if (Y.greedy) {
      const taken = lab.slice(0, m).filter((l) => l === Ystage).length;
      const couldTake =
        taken < Y.max &&
        holds(Y.condition, q) &&
        !(Y.until !== undefined && holds(Y.until, q)) &&
        gapOk(Y.inner, Y.condition, p) &&
        (Y.until === undefined || noneIn(Y.until, p));
      if (couldTake) return false;
    }
  }
  return true;
}

function contextOf<E>(
  positives: Positive<E>[],
  events: readonly { readonly value: E }[],
  idx: readonly number[],
  lab: readonly number[],
): MatchContext<E> {
  return {
    events: (stage) =>
      idx.filter((_, i) => positives[lab[i]!]!.spec.name === stage).map((r) => events[r]!.value),
  };
}
