import {
  cardName,
  type Generated,
  generateTransactions,
  type Planted,
  SCENARIOS,
  type Scenario,
  type ScenarioKind,
} from './generator.ts';
import { partitionOf, type Transaction } from './model.ts';

/**
 * The two-phase run the test and the demo share. Phase 1 runs the initial patterns over
 * [start, swapAt); then country-hopping v2 replaces v1 (and a malformed card-testing v2 is
 * rejected); phase 2 runs over [swapAt, end). Scenarios are planted across both phases, three
 * straddle the swap (a partial match begun before it, completed after it), and each phase ends, on
 * every partition, with a card-testing fraud whose large charge is that partition's last
 * transaction of the phase: once its alert is out, the watermark has released the whole phase.
 */
export interface PhasePlan {
  readonly start: number;
  readonly swapAt: number;
  readonly end: number;
  readonly partitions: number;
  readonly generated: Generated;
  /** The scenarios planted to straddle the swap. */
  readonly straddling: readonly Planted[];
  /** The closing frauds of each phase, one per partition: [phase][partition]. */
  readonly closers: readonly (readonly Planted[])[];
}

export interface PlanOptions {
  readonly start: number;
  /** Event time of each phase. */
  readonly phaseMs: number;
  readonly partitions: number;
  /** Scenarios spread over each phase, besides the straddling ones and the closers. */
  readonly perPhase: number;
  readonly quietMs: number;
  readonly cards?: number;
  readonly gapMs?: number;
  readonly seed?: number;
}

const KINDS = Object.keys(SCENARIOS) as ScenarioKind[];
/** The straddling scenarios, by the time of their first transaction relative to the swap. */
const STRADDLE: readonly [ScenarioKind, number][] = [
  ['card-testing', -75_000],
  ['fast-hop', -60_000],
  ['decline-retries', -30_000],
];

export function planPhases(o: PlanOptions): PhasePlan {
  const cards = o.cards ?? 200;
  const swapAt = o.start + o.phaseMs;
  const end = swapAt + o.phaseMs;
  if (o.phaseMs < 2 * o.quietMs + 600_000) {
    throw new Error(`plan: a phase of ${o.phaseMs} ms is too short for quiet windows of ${o.quietMs} ms`);
  }
  // Closers: card-testing with its large charge at phaseEnd - 50 + p, after the last background
  // transaction (background runs on multiples of gapMs, >= 100 ms), on a card of partition p.
  const closerCards: string[] = [];
  for (let i = cards - 1; i >= 0; i--) {
    const card = cardName(i);
    closerCards[partitionOf(card, o.partitions)] ??= card;
  }
  if (closerCards.filter(Boolean).length < o.partitions) {
    throw new Error(`plan: ${cards} cards do not cover ${o.partitions} partitions`);
  }
  const lastDt = SCENARIOS['card-testing'].steps.at(-1)!.dt;
  const closers = (phaseEnd: number): Scenario[] =>
    closerCards.map((card, p) => ({ kind: 'card-testing', card, at: phaseEnd - 50 + p - lastDt }));
  const spread = (from: number, phase: number): Scenario[] =>
    Array.from({ length: o.perPhase }, (_, i) => ({
      kind: KINDS[(i + phase) % KINDS.length]!,
      at: from + o.quietMs + Math.floor(((o.phaseMs - 2 * o.quietMs - 600_000) * i) / o.perPhase),
    }));
  const fixed = [...closers(swapAt), ...closers(end)];
  const straddle = STRADDLE.map(([kind, dt]) => ({ kind, at: swapAt + dt }));
  const generated = generateTransactions({
    start: o.start,
    end,
    scenarios: [...fixed, ...straddle, ...spread(o.start, 0), ...spread(swapAt, 1)],
    quietMs: o.quietMs,
    cards,
    ...(o.gapMs ? { gapMs: o.gapMs } : {}),
    ...(o.seed ? { seed: o.seed } : {}),
  });
  const planted = generated.planted;
  const n = o.partitions;
  return {
    start: o.start,
    swapAt,
    end,
    partitions: n,
    generated,
    closers: [planted.slice(0, n), planted.slice(n, 2 * n)],
    straddling: planted.slice(2 * n, 2 * n + STRADDLE.length),
  };
}

/** A pattern change at a point in event time: `version` is active for transactions from `at` on. */
export interface Swap {
  readonly pattern: string;
  readonly version: number;
  readonly at: number;
}

/**
 * What the planted scenarios must raise, as `alertTxKey`s: each scenario trips its patterns at the
 * version active at its first transaction, unless the pattern changed in the middle of it (the
 * partial match of the old version is dropped, the new version saw only its tail).
 */
export function plantedAlerts(planted: readonly Planted[], swaps: readonly Swap[]): string[] {
  const out: string[] = [];
  for (const p of planted) {
    const first = p.tx[0]!.ts;
    const last = p.tx.at(-1)!.ts;
    for (const trip of SCENARIOS[p.kind].trips) {
      const mine = swaps.filter((s) => s.pattern === trip.pattern);
      if (mine.some((s) => first < s.at && s.at <= last)) continue;
      const version = mine.filter((s) => s.at <= first).reduce((v, s) => Math.max(v, s.version), 1);
      if (trip.versions && !trip.versions.includes(version)) continue;
      out.push(alertTxKey({ pattern: trip.pattern, version, card: p.card, ids: p.tx.map((t) => t.id) }));
    }
  }
  return out.sort();
}

/** An alert's identity without its stage assignment: pattern, version, card, sorted transaction ids. */
export function alertTxKey(a: {
  readonly pattern: string;
  readonly version: number;
  readonly card: string;
  readonly ids: readonly string[];
}): string {
  return `${a.pattern}@${a.version} ${a.card} ${[...a.ids].sort().join(',')}`;
}

/** The transactions of a phase. */
export const phase = (plan: PhasePlan, n: 1 | 2): Transaction[] =>
  plan.generated.transactions.filter((t) => (n === 1 ? t.ts < plan.swapAt : t.ts >= plan.swapAt));
