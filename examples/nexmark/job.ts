/**
 * Nexmark q5 (hot items: a sliding window), q8 (new users: a windowed join of persons and auctions)
 * and dedup of persons, as one exactly-once Kafka job.
 *
 * Topics (created by the caller, same partition count): persons keyed by id, auctions keyed by
 * seller (so the two are co-partitioned for q8), bids keyed by auction; outputs: unique persons,
 * q8 new users, q5 counts per auction and window, and q5 hot items (an upsert per window). q5's
 * second step groups the counts by window, so it reads them through a repartition topic.
 */
import { KafkaSink, KafkaSource } from '../../connectors/kafka/index.ts';
import {
  type AggregateFunction,
  type Collector,
  type DataStream,
  type KeyedContext,
  type KeyedProcessFunction,
  StreamJob,
  slidingEventTime,
  valueState,
} from '../../framework/index.ts';
import {
  type Auction,
  type AuctionCount,
  type Bid,
  type HotItem,
  isEndMarker,
  type NewUser,
  type Person,
} from './model.ts';

export interface NexmarkTopics {
  readonly persons: string;
  readonly auctions: string;
  readonly bids: string;
  readonly uniquePersons: string;
  readonly q8: string;
  readonly q5Counts: string;
  readonly q5Hot: string;
}

/** Window and horizon sizes (event time), shared with the batch reference. */
export const Q5 = { sizeMs: 10_000, slideMs: 2_000 } as const;
export const Q8 = { sizeMs: 10_000 } as const;
export const DEDUP_HORIZON_MS = 60_000;
export const MAX_OUT_OF_ORDER_MS = 5_000;

export const nexmarkTopics = (prefix: string): NexmarkTopics => ({
  persons: `${prefix}.persons`,
  auctions: `${prefix}.auctions`,
  bids: `${prefix}.bids`,
  uniquePersons: `${prefix}.unique-persons`,
  q8: `${prefix}.q8`,
  q5Counts: `${prefix}.q5-counts`,
  q5Hot: `${prefix}.q5-hot`,
});

const count: AggregateFunction<Bid, number, number> = {
  createAccumulator: () => 0,
  add: (_b, acc) => acc + 1,
  getResult: (acc) => acc,
  merge: (a, b) => a + b,
};

/** Keeps the best count per window; emits each improvement (more bids, or as many on a lower auction id). */
export class HotItems implements KeyedProcessFunction<string, AuctionCount, HotItem> {
  readonly #best = valueState<HotItem>('best');
  processElement(c: AuctionCount, ctx: KeyedContext<string>, out: Collector<HotItem>): void {
    const best = ctx.getState(this.#best);
    const b = best.value();
    if (b && (b.count > c.count || (b.count === c.count && b.auction <= c.auction))) return;
    const next = { end: c.end, auction: c.auction, count: c.count };
    best.update(next);
    out.collect(next);
  }
}

const json = <T>(key: (v: T) => string) => ({
  encode: (v: T) => ({ key: key(v), value: JSON.stringify(v) }),
});

export function nexmarkJob(jobId: string, t: NexmarkTopics): StreamJob {
  const job = new StreamJob(jobId);
  const wm = <T extends { dateTime: number }>() => ({
    watermarks: { timestamp: (e: T) => e.dateTime, maxOutOfOrdernessMs: MAX_OUT_OF_ORDER_MS },
  });
  const persons = job
    .source(new KafkaSource<Person>({ topic: t.persons }), wm<Person>())
    .filter((p) => !isEndMarker(p));
  const auctions = job
    .source(new KafkaSource<Auction>({ topic: t.auctions }), wm<Auction>())
    .filter((a) => !isEndMarker(a));
  const bids = job.source(new KafkaSource<Bid>({ topic: t.bids }), wm<Bid>()).filter((b) => !isEndMarker(b));

  const unique = dedupPersons(persons);
  unique.sinkTo(new KafkaSink<Person>({ topic: t.uniquePersons, ...json<Person>((p) => String(p.id)) }));
  newUsersQuery(unique, auctions).sinkTo(
    new KafkaSink<NewUser>({ topic: t.q8, ...json<NewUser>((u) => String(u.person)) }),
  );
  const counts = auctionCountsQuery(bids);
  counts.sinkTo(
    new KafkaSink<AuctionCount>({ topic: t.q5Counts, ...json<AuctionCount>((c) => String(c.auction)) }),
  );
  counts
    .keyBy((c) => String(c.end), { repartition: true })
    .process(new HotItems(), { uid: 'q5-hot' })
    .sinkTo(new KafkaSink<HotItem>({ topic: t.q5Hot, ...json<HotItem>((h) => String(h.end)) }));
  return job;
}

/** Dedup of persons resent by an at-least-once upstream (event time, a 60 s horizon). */
export function dedupPersons(persons: DataStream<Person>): DataStream<Person> {
  return persons
    .keyBy((p) => String(p.id))
    .deduplicate({ horizonMs: DEDUP_HORIZON_MS }, { uid: 'dedup-persons' });
}

/** q8: persons joined with the auctions they opened in the same 10 s tumbling window. */
export function newUsersQuery(
  persons: DataStream<Person>,
  auctions: DataStream<Auction>,
): DataStream<NewUser> {
  return persons
    .keyBy((p) => String(p.id))
    .windowJoin(
      auctions.keyBy((a) => String(a.seller)),
      {
        sizeMs: Q8.sizeMs,
        join: (p, a, _k, w): NewUser => ({ person: p.id, name: p.name, auction: a.id, start: w.start }),
      },
      { uid: 'q8' },
    );
}

/** q5 step 1: bids per auction in sliding windows of 10 s every 2 s (sliced, or naive for comparison). */
export function auctionCountsQuery(
  bids: DataStream<Bid>,
  assignment: 'sliced' | 'naive' = 'sliced',
): DataStream<AuctionCount> {
  return bids
    .keyBy((b) => String(b.auction))
    .window(slidingEventTime(Q5), { assignment })
    .aggregate(
      count,
      (n, ctx): AuctionCount => ({
        auction: Number(ctx.key),
        start: ctx.window.start,
        end: ctx.window.end,
        count: n,
      }),
      { uid: 'q5-counts' },
    );
}
