/**
 * The job of the exactly-once tests: per key, a running count and sum, emitted for every input
 * record. Its committed output is a pure function of the input, so a checker can recompute it.
 *
 * Input records: key `k<i>`, value JSON `{ "k": "k<i>", "n": <sequence number> }`.
 * Output records: key `k<i>`, value JSON `{ "k", "n", "count", "sum" }`.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  FilesystemCheckpointStorage,
  type KeyedProcessFunction,
  StreamJob,
  valueState,
} from '../../../../framework/index.ts';
import { KafkaSink, KafkaSource } from '../../index.ts';

export interface In {
  readonly k: string;
  readonly n: number;
}
export interface Out {
  readonly k: string;
  readonly n: number;
  readonly count: number;
  readonly sum: number;
}

export class CountAndSum implements KeyedProcessFunction<string, In, Out> {
  processElement(
    e: In,
    ctx: Parameters<KeyedProcessFunction<string, In, Out>['processElement']>[1],
    out: { collect(v: Out): void },
  ): void {
    const count = ctx.getState(valueState<number>('count'));
    const sum = ctx.getState(valueState<number>('sum'));
    const c = (count.value() ?? 0) + 1;
    const s = (sum.value() ?? 0) + e.n;
    count.update(c);
    sum.update(s);
    out.collect({ k: e.k, n: e.n, count: c, sum: s });
  }
}

export function countJob(o: {
  jobId: string;
  input: string;
  output: string;
  guarantee?: 'exactly-once' | 'at-least-once';
}): StreamJob {
  const job = new StreamJob(o.jobId);
  job
    .source(new KafkaSource<In>({ topic: o.input }))
    .keyBy((e) => e.k)
    .process(new CountAndSum(), { uid: 'count-and-sum' })
    .sinkTo(
      new KafkaSink<Out>({
        topic: o.output,
        guarantee: o.guarantee ?? 'exactly-once',
        encode: (v) => ({ key: v.k, value: JSON.stringify(v) }),
      }),
    );
  return job;
}

export function checkpointStorage(dir: string): FilesystemCheckpointStorage {
  mkdirSync(dir, { recursive: true });
  return new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') });
}
