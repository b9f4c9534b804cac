/**
 * kafkajs 2.2.4's `admin.createTopics({ waitForLeaders: true })` asks the controller to create the
 * topics, then polls metadata until every partition has a leader, retrying only LEADER_NOT_AVAILABLE.
 * A broker that has not yet applied the new topics to its metadata cache answers
 * UNKNOWN_TOPIC_OR_PARTITION instead (frequent on a KRaft broker under load, right after the
 * creation), and kafkajs then throws although the topics were created. Callers of the Java
 * AdminClient treat that answer as "not yet"; so does this wrapper: on exactly that error, after the
 * creation request was accepted, it goes on polling until every partition has a leader (or the
 * deadline passes), and returns as kafkajs would have. Every other error, and calls without
 * `waitForLeaders`, are kafkajs's own.
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
  admin.createTopics = async (options: CreateTopicsOptions) => {
    try {
      return await create(options);
    } catch (e) {
      if (
        !options.waitForLeaders ||
        options.validateOnly ||
        (e as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION'
      )
        throw e;
      const topics = options.topics.map((t) => t.topic);
      const deadline = now() + Math.max(options.timeout ?? 5000, 30_000);
      for (;;) {
        try {
          const { topics: meta } = await admin.fetchTopicMetadata({ topics });
          const led = meta.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
          if (led && meta.length === topics.length) return true;
        } catch (again) {
          if (!NOT_YET.has((again as { type?: string }).type ?? '')) throw again;
        }
        if (now() > deadline) throw e;
        await sleep(100);
      }
    }
  };
  return admin;
}
