/**
 * The fraud-detection model: card transactions on a topic keyed by card, watermark ticks, and the
 * alerts the CEP patterns raise. Times are event times in ms since the epoch.
 */
import { type CepMatch, keyGroupOf, keyId } from '../../framework/index.ts';

export interface Transaction {
  /** Unique id (`tx-<n>`), so alerts can name the transactions they matched. */
  readonly id: string;
  readonly card: string;
  readonly amount: number;
  readonly merchant: string;
  /** ISO country of the merchant. */
  readonly country: string;
  readonly status: 'approved' | 'declined';
  readonly ts: number;
}

/**
 * A watermark tick: sent to every partition to move event time forward (and so release the
 * transactions the CEP operator holds until the watermark passes them). Dropped before `keyBy`.
 */
export interface Tick {
  readonly tick: true;
  readonly ts: number;
}

export type TransactionRecord = Transaction | Tick;

export const isTick = (r: TransactionRecord): r is Tick => (r as Tick).tick === true;

/** A match of a fraud pattern: which transactions each stage of the pattern took. */
export interface Alert {
  readonly pattern: string;
  readonly version: number;
  readonly card: string;
  /** Event time of the first and of the last transaction. */
  readonly start: number;
  readonly end: number;
  /** Stage name -> ids of the transactions it took, in event-time order. */
  readonly tx: Readonly<Record<string, readonly string[]>>;
}

/** A partial match that timed out (the pattern's `within` passed before it completed). */
export interface TimedOutAlert extends Alert {
  readonly timedOutAt: number;
}

export function toAlert(m: CepMatch<Transaction>): Alert {
  const tx: Record<string, string[]> = {};
  let card = '';
  for (const [stage, events] of Object.entries(m.events)) {
    tx[stage] = events.map((e) => e.id);
    card = events[0]?.card ?? card;
  }
  return { pattern: m.pattern, version: m.version, card, start: m.start, end: m.end, tx };
}

/** A canonical text of an alert's identity: pattern, version, card and the transactions per stage. */
export function alertKey(a: Pick<Alert, 'pattern' | 'version' | 'card' | 'tx'>): string {
  const stages = Object.keys(a.tx)
    .sort()
    .map((s) => `${s}=${a.tx[s]!.join(',')}`);
  return `${a.pattern}@${a.version} ${a.card} ${stages.join(' ')}`;
}

/** The partition (= key group) of a card on a topic of `partitions` partitions, as the job keys it. */
export const partitionOf = (card: string, partitions: number): number => keyGroupOf(keyId(card), partitions);
