/**
 * Sessionised clickstream: clicks keyed by user, grouped into event-time session windows (a session
 * ends after `SESSION_GAP_MS` without a click; sessions that a late click bridges merge), each
 * session summarised incrementally (count, distinct pages, landing page) and written exactly once.
 */
import { KafkaSink, KafkaSource } from '../../connectors/kafka/index.ts';
import { type AggregateFunction, StreamJob, sessionEventTime } from '../../framework/index.ts';
import { type Click, isEndMarker, type Session } from './model.ts';

export const SESSION_GAP_MS = 5_000;
export const MAX_OUT_OF_ORDER_MS = 2_000;

interface Acc {
  clicks: number;
  pages: string[];
  first: number;
  landing: string;
}

/** Incremental session summary; `merge` combines two sessions a click bridged. */
export const summary: AggregateFunction<Click, Acc, Acc> = {
  createAccumulator: () => ({ clicks: 0, pages: [], first: Number.POSITIVE_INFINITY, landing: '' }),
  add: (c, a) => ({
    clicks: a.clicks + 1,
    pages: a.pages.includes(c.page) ? a.pages : [...a.pages, c.page].sort(),
    first: Math.min(a.first, c.ts),
    landing: c.ts < a.first ? c.page : a.landing,
  }),
  getResult: (a) => a,
  merge: (a, b) => ({
    clicks: a.clicks + b.clicks,
    pages: [...new Set([...a.pages, ...b.pages])].sort(),
    first: Math.min(a.first, b.first),
    landing: a.first <= b.first ? a.landing : b.landing,
  }),
};

export function clickstreamJob(jobId: string, topics: { clicks: string; sessions: string }): StreamJob {
  const job = new StreamJob(jobId);
  job
    .source(new KafkaSource<Click>({ topic: topics.clicks }), {
      watermarks: { timestamp: (c) => c.ts, maxOutOfOrdernessMs: MAX_OUT_OF_ORDER_MS },
    })
    .filter((c) => !isEndMarker(c))
    .keyBy((c) => c.user)
    .window(sessionEventTime({ gapMs: SESSION_GAP_MS }))
    .aggregate(
      summary,
      (a, ctx): Session => ({
        user: ctx.key,
        start: ctx.window.start,
        end: ctx.window.end,
        clicks: a.clicks,
        pages: a.pages,
        landing: a.landing,
      }),
      { uid: 'sessions' },
    )
    .sinkTo(
      new KafkaSink<Session>({
        topic: topics.sessions,
        encode: (s) => ({ key: s.user, value: JSON.stringify(s) }),
      }),
    );
  return job;
}
