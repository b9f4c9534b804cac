/**
 * The count job as a `kstate run` module for partitioner.test.ts: per key a running count and sum
 * (jobs/count-job.ts), over a keyed stream read without repartitioning from a topic produced by kcat.
 *
 *   JOB_ID, INPUT, OUTPUT; PARTITIONER ('murmur2' | 'crc32' | 'fnv1a'; unset: the default);
 *   ON_WRONG_PARTITION ('fail' | 'skip' | 'dead-letter'; unset: the default); DLQ (the dead-letter
 *   topic, with 'dead-letter')
 */
import { outputTag, type PartitionerName, StreamJob } from '../../../../framework/index.ts';
import {
  DEAD_LETTER_TAG,
  type DeadLetter,
  KafkaSink,
  KafkaSource,
  type RecordErrorPolicy,
} from '../../index.ts';
import { CountAndSum, type In, type Out } from './count-job.ts';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

export default () => {
  const job = new StreamJob(env('JOB_ID'));
  const partitioner = process.env.PARTITIONER as PartitionerName | undefined;
  const onWrongPartition = process.env.ON_WRONG_PARTITION as RecordErrorPolicy | undefined;
  const source = job.source(
    new KafkaSource<In>({
      topic: env('INPUT'),
      uid: 'clicks',
      ...(partitioner ? { partitioner } : {}),
      ...(onWrongPartition ? { onWrongPartition } : {}),
    }),
  );
  source
    .keyBy((e) => e.k)
    .process(new CountAndSum(), { uid: 'count-and-sum' })
    .sinkTo(
      new KafkaSink<Out>({ topic: env('OUTPUT'), encode: (v) => ({ key: v.k, value: JSON.stringify(v) }) }),
    );
  if (onWrongPartition === 'dead-letter') {
    source.getSideOutput(outputTag<DeadLetter>(DEAD_LETTER_TAG)).sinkTo(
      new KafkaSink<DeadLetter>({
        topic: env('DLQ'),
        uid: 'dead-letters',
        encode: (d) => ({
          key: d.key,
          value: d.value,
          headers: {
            'x-source': `${d.topic}/${d.partition}@${d.offset}`,
            'x-code': d.code ?? '',
            'x-error': d.error,
          },
        }),
      }),
    );
  }
  return job;
};
