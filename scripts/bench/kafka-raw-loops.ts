/**
 * The raw kafkajs loops' shared parts (scripts/bench/kafka-throughput.ts runs them in its own process,
 * scripts/bench/kafka-peers-b2.ts runs the transactional loop as a process of its own): the per-record
 * work with its state in a Map, the consumer settings, the send size, and the transactional loop (B1:
 * one transaction per fetched batch; B2: per partition one open transaction committed by a timer).
 *
 * The loops keep their state in a Map and never roll it back: they are limits, not correct stateful
 * programs.
 */
import type { createKafka } from '../../connectors/kafka/index.ts';

type Kafka = ReturnType<typeof createKafka>;
type Producer = ReturnType<Kafka['producer']>;
type Consumer = ReturnType<Kafka['consumer']>;
type Transaction = Awaited<ReturnType<Producer['transaction']>>;
type RunConfig = NonNullable<Parameters<Consumer['run']>[0]>;
export type EachBatchPayload = Parameters<NonNullable<RunConfig['eachBatch']>>[0];

interface In {
  readonly k: string;
  readonly n: number;
}

/** The raw loops' transform: the same per-record work as the job's, with the state in a Map. */
export function heapTransform(): (value: Buffer | null) => { key: string; value: string } {
  const state = new Map<string, { count: number; sum: number }>();
  return (value) => {
    const e = JSON.parse(value?.toString('utf8') ?? 'null') as In;
    let s = state.get(e.k);
    if (!s) {
      s = { count: 0, sum: 0 };
      state.set(e.k, s);
    }
    s.count++;
    s.sum += e.n;
    return { key: e.k, value: JSON.stringify({ k: e.k, n: e.n, count: s.count, sum: s.sum }) };
  };
}

export function consumerFor(kafka: Kafka, groupId: string): Consumer {
  // The settings of the job's consumer (connectors/kafka/source/hub.ts) where they matter.
  return kafka.consumer({
    groupId,
    maxWaitTimeInMs: 100,
    maxBytesPerPartition: 1_048_576,
    readUncommitted: false,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
  });
}

/** Sends of `SEND_RECORDS` records each, all in flight at once: the sink's default `batchRecords`. */
export const SEND_RECORDS = 500;

export function chunks<T>(xs: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += SEND_RECORDS) out.push(xs.slice(i, i + SEND_RECORDS));
  return out;
}

export interface TransactionalLoopOptions {
  readonly input: string;
  readonly output: string;
  /** The consumer group; each transaction commits its offsets (sendOffsets). */
  readonly groupId: string;
  /** Partition p's producer has the transactional id `<transactionalIdPrefix>-<p>`. */
  readonly transactionalIdPrefix: string;
  /** Partitions of the input: one transactional producer each. */
  readonly partitions: number;
  /** undefined (B1): one transaction per fetched batch. Else (B2): committed every `intervalMs`. */
  readonly intervalMs: number | undefined;
  /** After each commit: partition `p`'s outputs are committed up to input offset `next` (exclusive). */
  readonly committed?: (p: number, next: bigint) => void;
  /**
   * Send a batch's chunks one after the other (default false: all in flight at once, which is
   * faster but lets kafkajs reorder them, so a key's outputs may be committed out of order).
   */
  readonly orderedSends?: boolean;
}

export interface TransactionalLoop {
  transactions(): number;
  rebalances(): number;
  /** `performance.now()` when the first record was taken; 0 before. */
  firstRecordAt(): number;
  /** Rejects at the first failed send or commit. */
  readonly failure: Promise<never>;
  /** Disconnects the consumer, aborts the open transactions, disconnects the producers. */
  stop(): Promise<void>;
}

/**
 * B: a read_committed consumer and one transactional producer per partition (as the job has per
 * task); a transaction holds outputs, then sendOffsets and commit. `intervalMs` undefined (B1): one
 * transaction per fetched batch, committed before eachBatch returns. Else (B2): a partition's
 * transaction stays open across batches, and a timer commits every open one each `intervalMs` (the
 * cadence of the job's checkpoints); a partition's sends and its commit are serialised, so a commit
 * holds back that partition's next batch. A rebalance aborts the open transactions (the consumer
 * goes back to the committed offsets). Resolves once the consumer runs (producers connected, group
 * joined by kafkajs in the background).
 */
export async function startTransactionalLoop(
  kafka: Kafka,
  o: TransactionalLoopOptions,
): Promise<TransactionalLoop> {
  const transform = heapTransform();
  const consumer = consumerFor(kafka, o.groupId);
  const producers: Producer[] = [];
  let transactions = 0;
  let rebalances = 0;
  let first = 0;
  let failed!: (e: unknown) => void;
  const failure = new Promise<never>((_, reject) => {
    failed = reject;
  });
  failure.catch(() => {});
  /** Per partition: its open transaction, the offset after its last record, the consumer generation. */
  const open: ({ txn: Transaction; next: bigint; generation: number } | undefined)[] = [];
  /** Per partition: the chain its sends and commits run on, one after the other. */
  const lanes: Promise<void>[] = Array.from({ length: o.partitions }, () => Promise.resolve());
  const onLane = (p: number, work: () => Promise<void>): Promise<void> => {
    const run = lanes[p]!.then(work);
    lanes[p] = run.catch((e: unknown) => failed(e));
    return run;
  };
  const commit = async (p: number): Promise<void> => {
    const txn = open[p];
    if (!txn) return;
    open[p] = undefined;
    await txn.txn.sendOffsets({
      consumerGroupId: o.groupId,
      topics: [{ topic: o.input, partitions: [{ partition: p, offset: txn.next.toString() }] }],
    });
    await txn.txn.commit();
    transactions++;
    o.committed?.(p, txn.next);
  };
  let timer: NodeJS.Timeout | undefined;
  const stop = async (): Promise<void> => {
    clearInterval(timer);
    await consumer.disconnect().catch(() => {});
    await Promise.allSettled(lanes);
    for (const txn of open) await txn?.txn.abort().catch(() => {});
    await Promise.allSettled(producers.map((p) => p.disconnect()));
  };
  try {
    for (let p = 0; p < o.partitions; p++) {
      const producer = kafka.producer({
        transactionalId: `${o.transactionalIdPrefix}-${p}`,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: 60_000,
      });
      await producer.connect();
      producers.push(producer);
    }
    await consumer.connect();
    await consumer.subscribe({ topics: [o.input], fromBeginning: true });
    consumer.on(consumer.events.REBALANCING, () => rebalances++);
    const intervalMs = o.intervalMs;
    if (intervalMs !== undefined) {
      timer = setInterval(() => {
        for (let p = 0; p < o.partitions; p++) if (open[p]) void onLane(p, () => commit(p)).catch(() => {});
      }, intervalMs);
    }
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: o.partitions,
      eachBatch: async ({ batch, isStale }: EachBatchPayload) => {
        if (batch.messages.length === 0 || isStale()) return;
        if (first === 0) first = performance.now();
        const p = batch.partition;
        const messages = batch.messages.map((m) => transform(m.value));
        const next = BigInt(batch.lastOffset()) + 1n;
        await onLane(p, async () => {
          let txn = open[p];
          if (txn && txn.generation !== rebalances) {
            // The consumer rejoined: it refetches from the committed offsets, so drop what is open.
            open[p] = undefined;
            await txn.txn.abort();
            txn = undefined;
          }
          if (!txn) {
            txn = { txn: await producers[p]!.transaction(), next, generation: rebalances };
            open[p] = txn;
          }
          const t = txn.txn;
          if (o.orderedSends)
            for (const c of chunks(messages)) await t.send({ topic: o.output, messages: c });
          else await Promise.all(chunks(messages).map((c) => t.send({ topic: o.output, messages: c })));
          txn.next = next;
          if (intervalMs === undefined) await commit(p);
        });
      },
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    transactions: () => transactions,
    rebalances: () => rebalances,
    firstRecordAt: () => first,
    failure,
    stop,
  };
}
