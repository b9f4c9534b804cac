/**
 * The count job (jobs/count-job.ts) as a `kstate run` module for the failure-policy tests, over input
 * written by kcat (its default partitioner: crc32), with user functions that throw on some records:
 *
 * - a map (`check`, its own `onError: 'skip'`) that throws on a record with `"skip": true`;
 * - the key selector `e => e.k`, which throws on a null value and returns no key (keyId throws) for
 *   JSON of another shape: the job's onUserFunctionError decides (KSTATE_ON_USER_FUNCTION_ERROR).
 *
 *   JOB_ID, INPUT, OUTPUT; DLQ (optional): the dead-letter topic the source's DEAD_LETTER_TAG output
 *   is written to (headers x-source, x-code, x-error)
 */
import { outputTag, StreamJob } from '../../../../framework/index.ts';
import { DEAD_LETTER_TAG, type DeadLetter, KafkaSink, KafkaSource } from '../../index.ts';
import { CountAndSum, type In, type Out } from './count-job.ts';

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

export default () => {
  const job = new StreamJob(env('JOB_ID'));
  const source = job.source(
    new KafkaSource<In>({ topic: env('INPUT'), uid: 'clicks', partitioner: 'crc32' }),
  );
  source
    .map(
      (v) => {
        if (v !== null && (v as { skip?: boolean }).skip === true) throw new Error(`told to skip n=${v.n}`);
        return v;
      },
      { uid: 'check', onError: 'skip' },
    )
    .keyBy((e) => e.k)
    .process(new CountAndSum(), { uid: 'count-and-sum' })
    .sinkTo(
      new KafkaSink<Out>({ topic: env('OUTPUT'), encode: (v) => ({ key: v.k, value: JSON.stringify(v) }) }),
    );
  const dlq = process.env.DLQ;
  if (dlq) {
    source.getSideOutput(outputTag<DeadLetter>(DEAD_LETTER_TAG)).sinkTo(
      new KafkaSink<DeadLetter>({
        topic: dlq,
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
