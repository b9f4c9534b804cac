/**
 * The job the image in deploy/Dockerfile runs (`kstate run /app/job.ts`): per user, a running count of
 * the user's clicks, in keyed state (LevelDB under KSTATE_STATE_DIR, checkpointed to
 * KSTATE_CHECKPOINT_STORAGE), written exactly once to the output topic.
 *
 * Input: JSON `{"user": "u1", ...}` keyed by user on JOB_INPUT_TOPIC (default `clicks`). Output: JSON
 * `{"user", "n", "count"}` keyed by user on JOB_OUTPUT_TOPIC (default `counts`). JOB_ID (default
 * `clicks-per-user`) is the job's id, and so its Kafka consumer group, its transactional ids and its
 * checkpoint prefix: every replica of one deployment must have the same one. Create the topics first
 * (`kstate topics create clicks --partitions 6`): a job never creates them.
 */
import { type Collector, type KeyedContext, type KeyedProcessFunction, StreamJob, valueState } from 'kstate';
import { KafkaSink, KafkaSource } from 'kstate/kafka';

interface Click {
  readonly user: string;
  readonly n?: number;
}

interface Count {
  readonly user: string;
  readonly n?: number;
  readonly count: number;
}

class CountPerUser implements KeyedProcessFunction<string, Click, Count> {
  readonly #count = valueState<number>('count');

  processElement(click: Click, ctx: KeyedContext<string>, out: Collector<Count>): void {
    const count = ctx.getState(this.#count);
    const next = (count.value() ?? 0) + 1;
    count.update(next);
    out.collect({ user: click.user, n: click.n, count: next });
  }
}

export default function job(): StreamJob {
  const env = process.env;
  const job = new StreamJob(env.JOB_ID ?? 'clicks-per-user');
  job
    .source(new KafkaSource<Click>({ topic: env.JOB_INPUT_TOPIC ?? 'clicks' }))
    .keyBy((click) => click.user)
    .process(new CountPerUser(), { uid: 'count-per-user' })
    .sinkTo(
      new KafkaSink<Count>({
        topic: env.JOB_OUTPUT_TOPIC ?? 'counts',
        encode: (c) => ({ key: c.user, value: JSON.stringify(c) }),
      }),
    );
  return job;
}
