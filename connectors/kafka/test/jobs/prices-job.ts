/**
 * The job of the interactive-query test (`kstate run` module): per product, its price history in a
 * time-indexed state, and a count of updates in a value state.
 *
 * Input records: key `<product>`, value JSON `{ "k": "<product>", "t": <event time>, "p": <price> }`.
 * Output: `{ k, t, p, versions }` per record (at least once; the test reads state, not output).
 * Topics and job id from PRICES_INPUT, PRICES_OUTPUT, PRICES_JOB_ID.
 */
import {
  type KeyedProcessFunction,
  StreamJob,
  timeIndexedState,
  valueState,
} from '../../../../framework/index.ts';
import { KafkaSink, KafkaSource } from '../../index.ts';

export interface PriceUpdate {
  readonly k: string;
  readonly t: number;
  readonly p: number;
}

class KeepPrices implements KeyedProcessFunction<string, PriceUpdate, { k: string; versions: number }> {
  processElement(
    e: PriceUpdate,
    ctx: Parameters<
      KeyedProcessFunction<string, PriceUpdate, { k: string; versions: number }>['processElement']
    >[1],
    out: { collect(v: { k: string; versions: number }): void },
  ): void {
    const prices = ctx.getTimeIndexedState(timeIndexedState<number>('prices'));
    const updates = ctx.getState(valueState<number>('updates'));
    prices.put(e.t, e.p);
    updates.update((updates.value() ?? 0) + 1);
    out.collect({ k: e.k, versions: prices.size() });
  }
}

export default () => {
  const job = new StreamJob(process.env.PRICES_JOB_ID ?? 'prices');
  job
    .source(new KafkaSource<PriceUpdate>({ topic: process.env.PRICES_INPUT ?? 'prices' }))
    .keyBy((e) => e.k)
    .process(new KeepPrices(), { uid: 'prices' })
    .sinkTo(
      new KafkaSink<{ k: string; versions: number }>({
        topic: process.env.PRICES_OUTPUT ?? 'prices-out',
        guarantee: 'at-least-once',
        encode: (v) => ({ key: v.k, value: JSON.stringify(v) }),
      }),
    );
  return job;
};
