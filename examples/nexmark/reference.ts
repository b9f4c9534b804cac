/**
 * Batch recomputation of the Nexmark job's outputs from its whole input, written from the query
 * definitions (no windows, state or timers): what the streaming job must have committed.
 */
import { DEDUP_HORIZON_MS, Q5, Q8 } from './job.ts';
import type { Auction, AuctionCount, Bid, HotItem, NewUser, Person } from './model.ts';

/** Persons in arrival order (per key, arrival order is the topic's order): the first of each id within the horizon. */
export function uniquePersons(persons: readonly Person[]): Person[] {
  const kept = new Map<number, number>();
  return persons.filter((p) => {
    const k = kept.get(p.id);
    if (k !== undefined && Math.abs(p.dateTime - k) < DEDUP_HORIZON_MS) return false;
    kept.set(p.id, p.dateTime);
    return true;
  });
}

/** q8: every (person, auction) of that seller whose times fall in the same tumbling window. */
export function newUsers(persons: readonly Person[], auctions: readonly Auction[]): NewUser[] {
  const window = (t: number) => Math.floor(t / Q8.sizeMs) * Q8.sizeMs;
  const out: NewUser[] = [];
  for (const p of uniquePersons(persons)) {
    for (const a of auctions) {
      if (a.seller === p.id && window(a.dateTime) === window(p.dateTime))
        out.push({ person: p.id, name: p.name, auction: a.id, start: window(p.dateTime) });
    }
  }
  return out;
}

/** q5 step 1: bids per auction in each sliding window that contains them. */
export function auctionCounts(bids: readonly Bid[]): AuctionCount[] {
  const counts = new Map<string, AuctionCount>();
  for (const b of bids) {
    for (
      let s = Math.floor(b.dateTime / Q5.slideMs) * Q5.slideMs;
      s > b.dateTime - Q5.sizeMs;
      s -= Q5.slideMs
    ) {
      const k = `${b.auction}@${s}`;
      const c = counts.get(k);
      counts.set(k, { auction: b.auction, start: s, end: s + Q5.sizeMs, count: (c?.count ?? 0) + 1 });
    }
  }
  return [...counts.values()];
}

/** q5 step 2: per window, the auction with the most bids (ties: the lowest id). */
export function hotItems(bids: readonly Bid[]): HotItem[] {
  const best = new Map<number, HotItem>();
  for (const c of auctionCounts(bids)) {
    const b = best.get(c.end);
    if (!b || c.count > b.count || (c.count === b.count && c.auction < b.auction))
      best.set(c.end, { end: c.end, auction: c.auction, count: c.count });
  }
  return [...best.values()];
}
