import { StreamError } from '../../../framework/index.ts';
import type { Admin } from '../internal/kafkajs.ts';

/**
 * What became of the job's source topics since it started (`expected`: topic -> partitions then;
 * `now`: every topic the brokers list, with its partitions), as the error the job fails with, or
 * undefined while nothing changed. Pure.
 *
 * - A deleted topic: nothing more can be read from it, and kafkajs retries its fetches without a
 *   word, so the job would run on, ready and idle.
 * - Another partition count: the job's tasks are one per partition it started with, so records in
 *   added partitions would never be read (and removed ones cannot be: Kafka does not shrink topics,
 *   but a topic deleted and created again can have fewer).
 */
export function topicChange(
  jobId: string,
  expected: ReadonlyMap<string, number>,
  now: ReadonlyMap<string, number>,
): StreamError | undefined {
  for (const [topic, partitions] of expected) {
    const seen = now.get(topic);
    if (seen === undefined) {
      return new StreamError(
        'CONFIG_INVALID',
        `source topic '${topic}' was deleted while job '${jobId}' ran: nothing more can be read from it; create it again (${partitions} partitions) or change the job, then start it again`,
      );
    }
    if (seen !== partitions) {
      return new StreamError(
        'CONFIG_INVALID',
        `source topic '${topic}' has ${seen} partitions now; job '${jobId}' started with ${partitions} and runs one task per partition, so ${seen > partitions ? 'the new partitions would never be read' : 'its tasks no longer match the topic'}: stop it with a savepoint, rescale that (kstate savepoint rescale ${jobId} <savepoint> --to ${seen}) and start from the rescaled savepoint`,
      );
    }
  }
  return undefined;
}

/**
 * Checks the source topics every `intervalMs` while the job runs: one Metadata request naming them
 * (kafkajs's admin never asks the brokers to create a topic it names), then `topicChange`. When the
 * brokers answer that one of them is unknown (deleted), one request for every topic tells which; a
 * cluster's other topics are not fetched otherwise (their metadata can be megabytes, every interval
 * and every instance). Calls `onChange` once, with the error, and stops. A failed request is let
 * pass (lost brokers are /readyz's business: broker-watch.ts). Returns the stop function.
 */
export function watchTopics(o: {
  readonly jobId: string;
  readonly admin: Admin;
  readonly expected: ReadonlyMap<string, number>;
  readonly intervalMs: number;
  readonly onChange: (error: StreamError) => void;
}): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const topics = [...o.expected.keys()];
  const schedule = (): void => {
    timer = setTimeout(() => void check(), o.intervalMs);
    timer.unref();
  };
  const fetch = async (): Promise<{ topics: { name: string; partitions: unknown[] }[] }> => {
    try {
      return await o.admin.fetchTopicMetadata({ topics });
    } catch (e) {
      if ((e as { type?: unknown }).type !== 'UNKNOWN_TOPIC_OR_PARTITION') throw e;
      return o.admin.fetchTopicMetadata();
    }
  };
  const check = async (): Promise<void> => {
    let change: StreamError | undefined;
    try {
      const meta = await fetch();
      change = topicChange(
        o.jobId,
        o.expected,
        new Map(meta.topics.map((t) => [t.name, t.partitions.length])),
      );
    } catch {
      // Checked again at the next interval.
    }
    if (stopped) return;
    if (change === undefined) return schedule();
    stopped = true;
    o.onChange(change);
  };
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
