/**
 * The demo job: orders in, per-customer running totals out, exactly once.
 *
 *   orders (key: customer, value: { id, customer, amount, ts })
 *     -> keyBy(customer)
 *     -> running total, order count and the largest order per customer (keyed state),
 *        plus a "big spender" alert the first time a customer's total passes a threshold
 *     -> customer-totals (key: customer, value: { customer, orders, total, largest, lastOrder })
 *
 * State lives in the LevelDB backend, checkpoints on the filesystem; the Kafka sink commits each
 * checkpoint's output, consumer offsets and snapshot pointer in one transaction.
 */

import { KafkaSink, KafkaSource } from '../../connectors/kafka/index.ts';
import { type KeyedProcessFunction, StreamJob, valueState } from '../../framework/index.ts';

export interface Order {
  readonly id: number;
  readonly customer: string;
  readonly amount: number;
  readonly ts: number;
}

export interface CustomerTotal {
  readonly customer: string;
  readonly orders: number;
  readonly total: number;
  readonly largest: number;
  readonly lastOrder: number;
  readonly bigSpender: boolean;
}

interface Totals {
  orders: number;
  total: number;
  largest: number;
}

export const BIG_SPENDER = 5_000;

export class CustomerTotals implements KeyedProcessFunction<string, Order, CustomerTotal> {
  processElement(
    o: Order,
    ctx: Parameters<KeyedProcessFunction<string, Order, CustomerTotal>['processElement']>[1],
    out: { collect(v: CustomerTotal): void },
  ): void {
    const state = ctx.getState(valueState<Totals>('totals'));
    const before = state.value() ?? { orders: 0, total: 0, largest: 0 };
    const after = {
      orders: before.orders + 1,
      total: before.total + o.amount,
      largest: Math.max(before.largest, o.amount),
    };
    state.update(after);
    out.collect({
      customer: o.customer,
      ...after,
      lastOrder: o.id,
      bigSpender: before.total < BIG_SPENDER && after.total >= BIG_SPENDER,
    });
  }
}

export function ordersJob(o: { jobId: string; input: string; output: string }): StreamJob {
  const job = new StreamJob(o.jobId);
  job
    .source(new KafkaSource<Order>({ topic: o.input }), {
      watermarks: { timestamp: (order) => order.ts, maxOutOfOrdernessMs: 1000, idleTimeoutMs: 5000 },
    })
    .keyBy((order) => order.customer)
    .process(new CustomerTotals(), { uid: 'customer-totals' })
    .sinkTo(
      new KafkaSink<CustomerTotal>({
        topic: o.output,
        encode: (t) => ({ key: t.customer, value: JSON.stringify(t) }),
      }),
    );
  return job;
}
