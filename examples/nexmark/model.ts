/**
 * The Nexmark model (an online auction: people register, open auctions and bid), as in the Nexmark
 * benchmark used by Flink, Arroyo and RisingWave. Times are event times in ms since the epoch.
 */
export interface Person {
  readonly id: number;
  readonly name: string;
  readonly city: string;
  readonly state: string;
  readonly dateTime: number;
}

export interface Auction {
  readonly id: number;
  readonly seller: number;
  readonly category: number;
  readonly initialBid: number;
  readonly expires: number;
  readonly dateTime: number;
}

export interface Bid {
  readonly auction: number;
  readonly bidder: number;
  readonly price: number;
  readonly dateTime: number;
}

/** q5 step 1: bids of one auction in one sliding window. */
export interface AuctionCount {
  readonly auction: number;
  readonly start: number;
  readonly end: number;
  readonly count: number;
}

/** q5 step 2: the auction with the most bids in a window so far (an upsert per window: the last one is the answer). */
export interface HotItem {
  readonly end: number;
  readonly auction: number;
  readonly count: number;
}

/** q8: a person who registered and opened an auction in the same tumbling window. */
export interface NewUser {
  readonly person: number;
  readonly name: string;
  readonly auction: number;
  readonly start: number;
}

/** Records with a negative id are end markers: they move event time past the last window, then are dropped. */
export const isEndMarker = (r: { id?: number; auction?: number }): boolean => (r.id ?? r.auction ?? 0) < 0;
