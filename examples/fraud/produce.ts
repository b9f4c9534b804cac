import { MAX_OUT_OF_ORDER_MS } from './job.ts';
import { partitionOf, type Tick, type Transaction } from './model.ts';

/**
 * Writing the fraud inputs. Transactions go to the partition of their card's key group (what the
 * job's keyBy expects); ticks go to every partition. `Producer` is the part of a kafkajs producer
 * used here (kafkajs itself is imported by connectors/kafka only).
 */
export interface Producer {
  send(r: {
    topic: string;
    messages: { partition: number; key: string | null; value: string }[];
  }): Promise<unknown>;
}

/** Send transactions in event-time order, `batch` at a time, calling `pace` after each batch. */
export async function sendTransactions(
  producer: Producer,
  topic: string,
  partitions: number,
  txs: readonly Transaction[],
  o: { batch?: number; pace?: (sent: number) => Promise<void> } = {},
): Promise<void> {
  const batch = o.batch ?? 1000;
  for (let i = 0; i < txs.length; i += batch) {
    const messages = txs.slice(i, i + batch).map((t) => ({
      partition: partitionOf(t.card, partitions),
      key: t.card,
      value: JSON.stringify(t),
    }));
    await producer.send({ topic, messages });
    await o.pace?.(Math.min(txs.length, i + batch));
  }
}

/**
 * A tick on every partition that moves the watermark to `releaseUpTo` (ts = releaseUpTo + the
 * out-of-orderness bound + 1): every transaction at or before `releaseUpTo` is released, and every
 * partial match due to time out by then does.
 */
export async function sendTicks(
  producer: Producer,
  topic: string,
  partitions: number,
  releaseUpTo: number,
): Promise<void> {
  const tick: Tick = { tick: true, ts: releaseUpTo + MAX_OUT_OF_ORDER_MS + 1 };
  await producer.send({
    topic,
    messages: [...Array(partitions).keys()].map((partition) => ({
      partition,
      key: null,
      value: JSON.stringify(tick),
    })),
  });
}

/** Publish pattern records (objects are sent as JSON text; strings as they are). */
export async function publishPatterns(
  producer: Producer,
  topic: string,
  records: readonly unknown[],
): Promise<void> {
  await producer.send({
    topic,
    messages: records.map((r) => ({
      partition: 0,
      key: null,
      value: typeof r === 'string' ? r : JSON.stringify(r),
    })),
  });
}
