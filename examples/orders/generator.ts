import { createKafka, type KafkaConnection } from '../../connectors/kafka/index.ts';
import type { Order } from './job.ts';

/**
 * A data generator for the demo: orders for `customers` customers at about `perSecond` orders per
 * second, keyed by customer (so the topic is partitioned by the job's key). Ids continue from
 * `firstId`. Stop it with the returned function; it resolves with the number of orders sent.
 */
export function generateOrders(o: {
  connection: KafkaConnection;
  topic: string;
  customers: number;
  perSecond: number;
  firstId?: number;
}): { stop(): Promise<number>; sent(): number } {
  const producer = createKafka(o.connection, '-generator').producer({
    idempotent: true,
    maxInFlightRequests: 1,
  });
  let id = o.firstId ?? 0;
  let sent = 0;
  let running = true;
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const loop = (async () => {
    await producer.connect();
    const tick = 100;
    while (running) {
      const started = Date.now();
      const messages = [];
      for (let i = 0; i < Math.max(1, Math.round((o.perSecond * tick) / 1000)); i++) {
        const order: Order = {
          id: id++,
          customer: `c${Math.floor(random() ** 2 * o.customers)}`,
          amount: 1 + Math.floor(random() * 500),
          ts: Date.now(),
        };
        messages.push({ key: order.customer, value: JSON.stringify(order) });
      }
      await producer.send({ topic: o.topic, messages });
      sent += messages.length;
      await new Promise((r) => setTimeout(r, Math.max(0, tick - (Date.now() - started))));
    }
    await producer.disconnect();
  })();
  return {
    sent: () => sent,
    async stop() {
      running = false;
      await loop;
      return sent;
    },
  };
}
