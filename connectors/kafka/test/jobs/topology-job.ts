/**
 * The job of the topology-change test (connectors/kafka/test/savepoint/topology-change.test.ts), as a module for
 * `kstate run`, in four versions (TC_VERSION) that change its stages between runs:
 *
 * 1. page views keyed by their key, counted per key in 10 s tumbling event-time windows (uid
 *    'window'): one stage (source 'views' -> window -> sink 'out');
 * 2. the same with `keyBy(k, { repartition: true })`: stage 'views' writes the repartition topic, the
 *    window moves to the new stage 'window-repartition-in0';
 * 3. version 2 with a stateless map inserted before the keyed operator;
 * 4. the window removed: every view is copied to TC_RAW (sink 'raw').
 *
 * Environment: TC_JOB_ID, TC_INPUT, TC_OUTPUT, TC_RAW, TC_VERSION.
 * Input: key `u<i>`, value `{ "k", "n", "t" }` (t: event time). Output: key k, value `{ k, w, count, first, last }`.
 */
import { type AggregateFunction, StreamJob, tumblingEventTime } from '../../../../framework/index.ts';
import { KafkaSink, KafkaSource } from '../../index.ts';

export interface View {
  readonly k: string;
  readonly n: number;
  readonly t: number;
}

export interface WindowCount {
  readonly k: string;
  /** Window start. */
  readonly w: number;
  readonly count: number;
  /** Smallest and largest n counted. */
  readonly first: number;
  readonly last: number;
}

export const WINDOW_MS = 10_000;

const counting: AggregateFunction<
  View,
  { c: number; first: number; last: number },
  { c: number; first: number; last: number }
> = {
  createAccumulator: () => ({ c: 0, first: Number.MAX_SAFE_INTEGER, last: -1 }),
  add: (v, a) => ({ c: a.c + 1, first: Math.min(a.first, v.n), last: Math.max(a.last, v.n) }),
  getResult: (a) => a,
  merge: (a, b) => ({ c: a.c + b.c, first: Math.min(a.first, b.first), last: Math.max(a.last, b.last) }),
};

export default () => {
  const version = Number(process.env.TC_VERSION ?? '1');
  const job = new StreamJob(process.env.TC_JOB_ID ?? 'topology-job');
  let views = job.source(new KafkaSource<View>({ topic: process.env.TC_INPUT ?? 'tc-input', uid: 'views' }), {
    watermarks: { timestamp: (v) => v.t },
  });
  // Versions 3 and 4: a stateless operator before the keyed one (a generated uid: it holds no state).
  if (version >= 3) views = views.map((v) => ({ ...v }));
  if (version === 4) {
    views.sinkTo(
      new KafkaSink<View>({
        topic: process.env.TC_RAW ?? 'tc-raw',
        uid: 'raw',
        encode: (v) => ({ key: v.k, value: JSON.stringify(v) }),
      }),
    );
    return job;
  }
  views
    .keyBy((v) => v.k, { repartition: version >= 2 })
    .window(tumblingEventTime({ sizeMs: WINDOW_MS }))
    .aggregate(
      counting,
      (a, ctx): WindowCount => ({
        k: ctx.key,
        w: ctx.window.start,
        count: a.c,
        first: a.first,
        last: a.last,
      }),
      { uid: 'window' },
    )
    .sinkTo(
      new KafkaSink<WindowCount>({
        topic: process.env.TC_OUTPUT ?? 'tc-output',
        uid: 'out',
        encode: (c) => ({ key: c.k, value: JSON.stringify(c) }),
      }),
    );
  return job;
};
