import type { Auction, Bid, Person } from './model.ts';

/**
 * A deterministic Nexmark event generator: event n is a person (n % 50 == 0), an auction
 * (n % 50 in 1..3) or a bid (the rest), at event time `start + n * interEventMs`; the same seed
 * always gives the same events. Bids go mostly to a few hot auctions among the recent ones, as in
 * Nexmark. Some persons are sent twice (an at-least-once upstream): the copy follows within the
 * next few events with the same fields and time, which dedup must remove.
 */
export interface NexmarkOptions {
  readonly events: number;
  readonly start?: number;
  readonly interEventMs?: number;
  /** Share of persons sent twice. Default 0.2. */
  readonly duplicateShare?: number;
  readonly seed?: number;
}

export interface NexmarkEvents {
  readonly persons: Person[];
  readonly auctions: Auction[];
  readonly bids: Bid[];
  /** Event time after the last event. */
  readonly end: number;
}

const FIRST_ID = 1000;
const CITIES = ['Phoenix', 'Portland', 'Seattle', 'Boise', 'Redmond', 'Kent', 'Bend', 'Tacoma'];
const STATES = ['AZ', 'OR', 'WA', 'ID', 'CA'];

/** Events [from, to) of the run described by `o`; deterministic for the same arguments (a chunk sends its pending duplicates at its end). */
export function nexmarkEvents(o: NexmarkOptions, from = 0, to = o.events): NexmarkEvents {
  const start = o.start ?? Date.UTC(2026, 0, 1);
  const gap = o.interEventMs ?? 10;
  const dupShare = o.duplicateShare ?? 0.2;
  const seed = o.seed ?? 42;
  const persons: Person[] = [];
  const auctions: Auction[] = [];
  const bids: Bid[] = [];
  const pending: { at: number; p: Person }[] = [];
  for (let n = from; n < to; n++) {
    const r = rand(seed, n);
    const dateTime = start + n * gap;
    const epoch = Math.floor(n / 50);
    const slot = n % 50;
    const lastPerson = FIRST_ID + epoch;
    while (pending.length > 0 && pending[0]!.at <= n) persons.push(pending.shift()!.p);
    if (slot === 0) {
      const p: Person = {
        id: lastPerson,
        name: `person-${lastPerson}`,
        city: CITIES[r % CITIES.length]!,
        state: STATES[(r >>> 3) % STATES.length]!,
        dateTime,
      };
      persons.push(p);
      if ((r % 1000) / 1000 < dupShare) pending.push({ at: n + 1 + (r % 120), p });
    } else if (slot <= 3) {
      const id = FIRST_ID + epoch * 3 + slot - 1;
      auctions.push({
        id,
        // Mostly a person who just registered (q8 finds them), else an older one.
        seller: r % 3 === 0 ? lastPerson - ((r >>> 4) % 20) : lastPerson,
        category: 10 + (r % 5),
        initialBid: 1 + (r % 100),
        expires: dateTime + 10_000 + (r % 20_000),
        dateTime,
      });
    } else {
      const lastAuction = FIRST_ID + epoch * 3 + 2;
      // Hot auctions: half the bids go to one of the 4 newest, the rest spread over the last 100.
      const opened = epoch * 3 + 3;
      const back = (r >>> 1) % Math.min(r % 2 === 0 ? 4 : 100, opened);
      bids.push({
        auction: lastAuction - back,
        bidder: Math.max(FIRST_ID, lastPerson - ((r >>> 8) % 50)),
        price: 1 + ((r >>> 5) % 10_000),
        dateTime,
      });
    }
  }
  for (const { p } of pending) persons.push(p);
  return { persons, auctions, bids, end: start + to * gap };
}

/** A 31-bit hash of (seed, n): the generator's randomness, independent of call order. */
function rand(seed: number, n: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ n;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 1;
}
