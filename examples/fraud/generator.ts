import type { Transaction } from './model.ts';

/**
 * A deterministic generator of card transactions with planted fraud scenarios. Background traffic
 * can match no fraud pattern: every card pays in its home country, approved, 5.00 to 400.00. The
 * planted scenarios are the only small or large charges, declines and foreign countries, and no
 * background transaction of a scenario's card comes within `quietMs` of the scenario's
 * transactions, so the alerts a correct job raises are exactly the planted ones (each kind says
 * which pattern versions it trips). The same options always give the same transactions.
 */
export type ScenarioKind =
  | 'card-testing'
  | 'large-only'
  | 'fast-hop'
  | 'slow-hop'
  | 'decline-retries'
  | 'decline-once';

interface Step {
  readonly dt: number;
  readonly amount: 'small' | 'normal' | 'large';
  readonly status?: 'declined';
  /** Index of the scenario's foreign country; absent: the card's home country. */
  readonly abroad?: number;
}

export interface ScenarioSpec {
  readonly what: string;
  readonly steps: readonly Step[];
  /** Pattern ids (with the versions, when not every version) this scenario must trip. */
  readonly trips: readonly { readonly pattern: string; readonly versions?: readonly number[] }[];
}

export const SCENARIOS: Readonly<Record<ScenarioKind, ScenarioSpec>> = {
  'card-testing': {
    what: 'a 0.50-1.99 test charge, then a large charge 2.5 min later',
    steps: [
      { dt: 0, amount: 'small' },
      { dt: 150_000, amount: 'large' },
    ],
    trips: [{ pattern: 'card-testing' }],
  },
  'large-only': {
    what: 'a large charge without a test charge (a decoy)',
    steps: [{ dt: 0, amount: 'large' }],
    trips: [],
  },
  'fast-hop': {
    what: 'three countries in 2 minutes',
    steps: [
      { dt: 0, amount: 'normal', abroad: 0 },
      { dt: 60_000, amount: 'normal', abroad: 1 },
      { dt: 120_000, amount: 'normal', abroad: 2 },
    ],
    trips: [{ pattern: 'country-hopping' }],
  },
  'slow-hop': {
    what: 'three countries in 7 minutes (country-hopping v2 only)',
    steps: [
      { dt: 0, amount: 'normal', abroad: 0 },
      { dt: 210_000, amount: 'normal', abroad: 1 },
      { dt: 420_000, amount: 'normal', abroad: 2 },
    ],
    trips: [{ pattern: 'country-hopping', versions: [2] }],
  },
  'decline-retries': {
    what: 'a decline, then three attempts at the same merchant within a minute',
    steps: [
      { dt: 0, amount: 'normal', status: 'declined' },
      { dt: 20_000, amount: 'normal', status: 'declined' },
      { dt: 40_000, amount: 'normal', status: 'declined' },
      { dt: 60_000, amount: 'normal' },
    ],
    trips: [{ pattern: 'decline-retries' }],
  },
  'decline-once': {
    what: 'a decline and a single retry (a decoy: times out)',
    steps: [
      { dt: 0, amount: 'normal', status: 'declined' },
      { dt: 30_000, amount: 'normal' },
    ],
    trips: [],
  },
};

export interface Scenario {
  readonly kind: ScenarioKind;
  /** Event time of its first transaction. */
  readonly at: number;
  /** Default: a card chosen by the generator with no other scenario within `quietMs`. */
  readonly card?: string;
}

export interface Planted {
  readonly kind: ScenarioKind;
  readonly card: string;
  readonly at: number;
  readonly tx: readonly Transaction[];
}

export interface GenerateOptions {
  readonly start: number;
  /** Background transactions run in [start, end). */
  readonly end: number;
  readonly scenarios: readonly Scenario[];
  /** No background transaction on a scenario's card within this of its transactions (>= the longest `within`). */
  readonly quietMs: number;
  /** Default 200. */
  readonly cards?: number;
  /** One background transaction every `gapMs` of event time. Default 100. */
  readonly gapMs?: number;
  readonly seed?: number;
}

export interface Generated {
  /** Sorted by event time (ties: background first, then scenario order); ids `tx-<n>` in that order. */
  readonly transactions: readonly Transaction[];
  readonly planted: readonly Planted[];
}

const HOMES = ['US', 'GB', 'FR', 'DE'];
const ABROAD = ['JP', 'BR', 'IN', 'ZA', 'MX', 'TH', 'AU', 'CA'];
const MERCHANTS = [
  'grocer',
  'fuel',
  'books',
  'coffee',
  'pharmacy',
  'airline',
  'hotel',
  'electronics',
  'apparel',
  'taxi',
  'cinema',
  'hardware',
];

export const cardName = (i: number): string => `card-${String(i).padStart(4, '0')}`;
const cardIndex = (card: string): number => Number(card.slice(5));
export const homeOf = (card: string): string => HOMES[cardIndex(card) % HOMES.length]!;

/** Generate the transactions of [start, end) with the planted scenarios. */
export function generateTransactions(o: GenerateOptions): Generated {
  const cards = o.cards ?? 200;
  const gap = o.gapMs ?? 100;
  const seed = o.seed ?? 7;
  const windows = new Map<string, [number, number][]>();
  const planted: Omit<Planted, 'tx'>[] = [];
  o.scenarios.forEach((s, i) => {
    const steps = SCENARIOS[s.kind].steps;
    const span: [number, number] = [s.at - o.quietMs, s.at + steps[steps.length - 1]!.dt + o.quietMs];
    const free = (card: string) => !(windows.get(card) ?? []).some(([a, b]) => a < span[1] && span[0] < b);
    let card = s.card;
    if (card === undefined) {
      let c = rand(seed, 1_000_000 + i) % cards;
      for (let tries = 0; !free(cardName(c)); tries++) {
        if (tries >= cards) throw new Error(`generator: no card is free for scenario ${i} at ${s.at}`);
        c = (c + 1) % cards;
      }
      card = cardName(c);
    } else if (!free(card)) {
      throw new Error(`generator: scenario ${i} (${s.kind}) on ${card} overlaps another one on that card`);
    }
    windows.set(card, [...(windows.get(card) ?? []), span]);
    planted.push({ kind: s.kind, card, at: s.at });
  });
  const quiet = (card: string, ts: number) => (windows.get(card) ?? []).some(([a, b]) => a <= ts && ts <= b);

  type Draft = Omit<Transaction, 'id'> & { order: number };
  const drafts: Draft[] = [];
  for (let k = 0, ts = o.start; ts < o.end; k++, ts = o.start + k * gap) {
    const r = rand(seed, k);
    const card = cardName(r % cards);
    if (quiet(card, ts)) continue;
    drafts.push({
      card,
      amount: 5 + ((r >>> 8) % 39_501) / 100,
      merchant: MERCHANTS[(r >>> 4) % MERCHANTS.length]!,
      country: homeOf(card),
      status: 'approved',
      ts,
      order: 0,
    });
  }
  const txOf: Draft[][] = planted.map((p, i) => {
    const r = rand(seed, 2_000_000 + i);
    const merchant = MERCHANTS[r % MERCHANTS.length]!;
    const first = r % ABROAD.length;
    return SCENARIOS[p.kind].steps.map((s, j) => {
      const rj = rand(seed, 3_000_000 + i * 16 + j);
      const amount =
        s.amount === 'small'
          ? 0.5 + (rj % 150) / 100
          : s.amount === 'large'
            ? 500 + (rj % 200_000) / 100
            : 5 + (rj % 39_501) / 100;
      return {
        card: p.card,
        amount,
        merchant,
        country: s.abroad === undefined ? homeOf(p.card) : ABROAD[(first + s.abroad * 3) % ABROAD.length]!,
        status: s.status ?? 'approved',
        ts: p.at + s.dt,
        order: 1 + i,
      };
    });
  });
  const all = [...drafts, ...txOf.flat()].sort((a, b) => a.ts - b.ts || a.order - b.order);
  const ids = new Map<Draft, string>();
  const transactions = all.map((d, n) => {
    const { order: _o, ...rest } = d;
    const tx: Transaction = { id: `tx-${n}`, ...rest };
    ids.set(d, tx.id);
    return tx;
  });
  const byId = new Map(transactions.map((t) => [t.id, t]));
  return {
    transactions,
    planted: planted.map((p, i) => ({ ...p, tx: txOf[i]!.map((d) => byId.get(ids.get(d)!)!) })),
  };
}

/** The transactions with event time in [from, to). */
export const between = (txs: readonly Transaction[], from: number, to: number): Transaction[] =>
  txs.filter((t) => t.ts >= from && t.ts < to);

/** A 31-bit hash of (seed, n): the generator's randomness, independent of call order. */
function rand(seed: number, n: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ n;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 1;
}
