/**
 * kafkajs 2.2.4's `admin.createTopics({ waitForLeaders: true })` asks the controller to create the
 * topics, then polls metadata until every partition has a leader, retrying only LEADER_NOT_AVAILABLE.
 * Two answers end that early although the topics are not usable yet; callers of the Java AdminClient
 * treat both as "not yet", and so does this wrapper, which then goes on polling until every
 * partition has a leader (or the deadline passes):
 *
 * - UNKNOWN_TOPIC_OR_PARTITION: a broker that has not yet applied the new topics to its metadata
 *   cache (frequent on a KRaft broker under load, right after the creation). kafkajs throws although
 *   the topics were created; here the call returns true, as kafkajs would have, or throws that error
 *   at the deadline.
 * - `false` (some topic existed): another client created it a moment before, and its leaders may not
 *   be known yet (two instances starting a job with a new repartition stage at once). kafkajs
 *   returns at once; here it returns `false` once the leaders are known, or at the deadline (the
 *   caller's own check then says what is missing).
 *
 * Every other error, and calls without `waitForLeaders` (or `validateOnly`), are kafkajs's own.
 */

interface TopicsAdmin {
  createTopics(o: CreateTopicsOptions): Promise<boolean>;
  fetchTopicMetadata(o: { topics: string[] }): Promise<{
    topics: { name: string; partitions: { partitionId: number; leader: number }[] }[];
  }>;
}

interface CreateTopicsOptions {
  readonly topics: readonly { readonly topic: string }[];
  readonly waitForLeaders?: boolean;
  readonly validateOnly?: boolean;
  readonly timeout?: number;
}

const NOT_YET = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/** Replaces `admin.createTopics` with the waiting one (returns the same admin). */
export function withTopicCreationWait<A extends TopicsAdmin>(
  admin: A,
  o: { readonly sleep?: (ms: number) => Promise<void>; readonly now?: () => number } = {},
): A {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = o.now ?? Date.now;
  const create = admin.createTopics.bind(admin);
  /** Whether every partition of `topics` has a leader by the deadline. */
  const led = async (topics: string[], deadline: number): Promise<boolean> => {
    for (;;) {
      try {
        const { topics: meta } = await admin.fetchTopicMetadata({ topics });
        const all = meta.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
        if (all && meta.length === topics.length) return true;
      } catch (again) {
        if (!NOT_YET.has((again as { type?: string }).type ?? '')) throw again;
      }
      if (now() > deadline) return false;
      await sleep(100);
    }
  };
  admin.createTopics = async (options: CreateTopicsOptions) => {
    const waits = options.waitForLeaders === true && !options.validateOnly;
    const topics = options.topics.map((t) => t.topic);
    const deadline = () => now() + Math.max(options.timeout ?? 5000, 30_000);
    let created: boolean;
    try {
      created = await create(options);
    } catch (e) {
      if (!waits || (e as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION') throw e;
      if (await led(topics, deadline())) return true;
      throw e;
    }
    if (!created && waits) await led(topics, deadline());
    return created;
  };
  return admin;
}
