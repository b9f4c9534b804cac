import {
  type AssignmentSource,
  type JobGraph,
  type JobOptions,
  type QueryRouting,
  type RunningJob,
  runJob,
  StreamError,
  type StreamJob,
} from '../../framework/index.ts';
import { createKafka, type KafkaConnection } from './client.ts';
import { kafkaError } from './errors.ts';
import type { Admin, Kafka } from './internal/kafkajs.ts';
import { startProducerThread } from './internal/producer-thread.ts';
import { validGroupInstanceId } from './internal/static-membership.ts';
import { kafkaJobChangeHooks } from './job-change.ts';
import { GroupQueryRouting } from './query-routing.ts';
import { cutRepartitions } from './repartition.ts';
import { KafkaSink } from './sink/kafka-sink.ts';
import { BroadcastHub } from './source/broadcast-hub.ts';
import { ConsumerHub, type HubOptions, type PartitionLag } from './source/hub.ts';
import { KafkaSource } from './source/kafka-source.ts';
import { watchTopics } from './source/topic-watch.ts';

export interface KafkaJobOptions extends Omit<JobOptions, 'assignment'> {
  readonly connection: KafkaConnection;
  readonly consumer?: Omit<HubOptions, 'groupId' | 'topics'>;
  /** Partitions of repartition topics the job creates. Default: as many as its widest input topic. */
  readonly repartitionPartitions?: number;
  /**
   * host:port where this instance answers state queries (docs/queries.md): advertised to the other
   * members in the consumer group's metadata, so that any instance can forward a query to a key's
   * owner.
   */
  readonly queryEndpoint?: string;
  /**
   * How often the source topics are checked while the job runs (source/topic-watch.ts): a topic
   * deleted, or with another partition count than at the start, fails the job (CONFIG_INVALID).
   * Default 10 000 ms; 0: not checked.
   */
  readonly topicCheckMs?: number;
  /**
   * Whether the Kafka sinks' producers run on a thread of their own (internal/producer-thread.ts,
   * docs/kafka.md "The producer thread"): the task thread hands each send over and goes on, as the
   * Java client's sender thread does. Default true; false keeps them on the task thread (as does a
   * connection that cannot be copied to another thread: a SASL mechanism with a function).
   */
  readonly producerThread?: boolean;
}

/**
 * Run a job as a member of its consumer group (group id = job id): the group's assignment decides
 * which tasks run here; a rebalance stops the tasks of revoked partitions and starts (restores) the
 * tasks of new ones. Several instances with the same job id share the partitions.
 *
 * Checks at start, each failing with one clear error: every topic exists and co-partitioned topics
 * agree; the broker answers; exactly-once sinks have a transaction timeout longer than a checkpoint
 * can take (interval + checkpoint timeout), and the job allows one concurrent checkpoint.
 *
 * Before it joins the group, the start is decided (`RunningJob.started`, docs/savepoints.md "Job
 * changes"): when the job's stages changed since its last run, the committed checkpoints of the old
 * tasks are re-cut by operator uid into the new stages (./job-change.ts says what Kafka contributes:
 * no member left in the group, old transactions fenced, the committed pointers, repartition topics
 * read from their end); the promise returned rejects with STATE_NOT_RESTORED or JOB_CHANGE_BLOCKED
 * when the job cannot start.
 */
/** A Kafka job: a running job plus what only Kafka knows, like consumer lag. */
export interface KafkaRunningJob extends RunningJob {
  /** Consumer lag of every partition this instance reads now. */
  lag(): Promise<PartitionLag[]>;
  /** Who owns each partition, from the consumer group (for state queries). */
  readonly queryRouting: QueryRouting;
}

export async function runKafkaJob(job: StreamJob | JobGraph, o: KafkaJobOptions): Promise<KafkaRunningJob> {
  const built = 'build' in job ? job.build() : job;
  const { graph, topics: repartitions } = cutRepartitions(built);
  const kafka = createKafka(o.connection, `-${graph.jobId}`);
  const sources: KafkaSource<unknown>[] = [];
  const broadcasts: KafkaSource<unknown>[] = [];
  const sinks: KafkaSink<unknown>[] = [];
  for (const n of graph.nodes) {
    if (n.spec.kind === 'source' && n.spec.source instanceof KafkaSource)
      (n.spec.broadcast ? broadcasts : sources).push(n.spec.source);
    if (n.spec.kind === 'sink' && n.spec.sink instanceof KafkaSink) sinks.push(n.spec.sink);
  }
  if (sources.length === 0)
    throw new StreamError('GRAPH_INVALID', `job '${graph.jobId}' has no Kafka source: runKafkaJob needs one`);
  checkTransactionTimeouts(graph.jobId, sinks, o);
  const instanceId = o.consumer?.groupInstanceId;
  if (instanceId !== undefined && !validGroupInstanceId(instanceId)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `consumer.groupInstanceId ${JSON.stringify(instanceId)} is not a valid group.instance.id: use 1-249 of the characters a-z A-Z 0-9 . _ -, one per instance`,
    );
  }

  // Started first, so that its load (about 0.1 s) overlaps the round trips below and the group join.
  const producers =
    o.producerThread === false || sinks.length === 0
      ? undefined
      : startProducerThread(kafka, o.connection, `-${graph.jobId}`, undefined, true);
  for (const s of sinks) s.bind(producers?.kafka ?? kafka);
  const { partitions, topics } = await readTopics(
    kafka,
    o,
    graph.jobId,
    sources,
    broadcasts,
    repartitions,
  ).catch(async (e: unknown) => {
    await producers?.close();
    throw e;
  });

  const hub = new ConsumerHub(kafka, {
    ...o.consumer,
    groupId: graph.jobId,
    topics,
    ...(o.queryEndpoint === undefined ? {} : { queryEndpoint: o.queryEndpoint }),
  });
  for (const s of sources) s.bind(hub, partitions.get(s.topic)!);
  const broadcastHub =
    broadcasts.length === 0
      ? undefined
      : new BroadcastHub(kafka, { jobId: graph.jobId, topics: [...new Set(broadcasts.map((b) => b.topic))] });
  for (const b of broadcasts) b.bind(broadcastHub!, partitions.get(b.topic)!);

  let stopTopicWatch = (): void => {};
  const assignment: AssignmentSource = {
    async start(plan, onChange, onFailed) {
      // Stage -> its Kafka topics; a stage partition is ours when all its topics' partition is.
      const stageTopics = plan.stages.map((st) =>
        st.nodes.flatMap((id) => {
          const n = plan.graph.nodes[id]!;
          return n.spec.kind === 'source' && n.spec.source instanceof KafkaSource && !n.spec.broadcast
            ? [n.spec.source.topic]
            : [];
        }),
      );
      // Broadcast topics first: a task reads them from its first poll on.
      await broadcastHub?.start(onFailed);
      let chain = Promise.resolve();
      await hub.start((assigned) => {
        const owned = new Map<number, Set<number>>();
        stageTopics.forEach((ts, stage) => {
          if (ts.length === 0) return;
          const sets = ts.map((t) => new Set(assigned.get(t) ?? []));
          owned.set(stage, new Set([...sets[0]!].filter((p) => sets.every((s) => s.has(p)))));
        });
        chain = chain.then(() => onChange(owned)).catch(() => {});
      }, onFailed);
      const every = o.topicCheckMs ?? 10_000;
      if (every > 0)
        stopTopicWatch = watchTopics({
          jobId: graph.jobId,
          admin: hub.admin,
          expected: partitions,
          intervalMs: every,
          onChange: (e) => onFailed?.(e),
        });
    },
    async stop() {
      stopTopicWatch();
      await hub.stop();
      await broadcastHub?.stop();
    },
  };
  const jobChange = kafkaJobChangeHooks({
    kafka,
    jobId: graph.jobId,
    repartitionTopics: new Set(repartitions.map((r) => r.topic)),
    // A killed instance leaves the group after its session timeout.
    leaveTimeoutMs: (o.consumer?.sessionTimeoutMs ?? 10_000) + 15_000,
  });
  const running = runJob(graph, { ...o, assignment, jobChange: { ...jobChange, ...o.jobChange } });
  // Once every task ended (its sinks disconnected their producers), or the job could not start.
  void running.done.catch(() => {}).then(() => producers?.close());
  // The start is decided before the group is joined: a job that cannot start (its state has no
  // operator any more, instances of its previous version still run) is refused here.
  await running.started;
  return Object.assign(running, { lag: () => hub.lag(), queryRouting: new GroupQueryRouting(hub) });
}

/** The source topics' partition counts, after creating missing repartition topics (an admin of its own). */
async function readTopics(
  kafka: Kafka,
  o: KafkaJobOptions,
  jobId: string,
  sources: readonly KafkaSource<unknown>[],
  broadcasts: readonly KafkaSource<unknown>[],
  repartitions: readonly { readonly topic: string }[],
): Promise<{ partitions: Map<string, number>; topics: string[] }> {
  const admin = kafka.admin();
  try {
    await admin.connect();
  } catch (e) {
    throw kafkaError(
      `connecting to Kafka at ${o.connection.brokers.join(',')} (is the broker running and reachable?)`,
      e,
    );
  }
  let partitions: Map<string, number>;
  let topics: string[];
  try {
    const repartitionTopics = new Set(repartitions.map((r) => r.topic));
    const inputTopics = [...new Set(sources.map((s) => s.topic).filter((t) => !repartitionTopics.has(t)))];
    const inputPartitions = await topicPartitions(admin, inputTopics);
    if (repartitions.length > 0) {
      // Repartition topics are the job's own: created when missing, sized like the widest input.
      const size = o.repartitionPartitions ?? Math.max(...inputPartitions.values());
      const existing = new Set(await admin.listTopics());
      const missing = [...repartitionTopics].filter((t) => !existing.has(t));
      if (missing.length > 0) {
        await admin
          .createTopics({
            // No time-based retention: records carry their event time as Kafka timestamp, and a
            // backfill's old times would let retention delete records not consumed yet.
            topics: missing.map((topic) => ({
              topic,
              numPartitions: size,
              configEntries: [{ name: 'retention.ms', value: '-1' }],
            })),
            waitForLeaders: true,
          })
          .catch((e) => Promise.reject(kafkaError(`creating repartition topics ${missing.join(', ')}`, e)));
      }
    }
    topics = [...new Set(sources.map((s) => s.topic))];
    const shared = broadcasts.filter((b) => topics.includes(b.topic)).map((b) => b.topic);
    if (shared.length > 0) {
      throw new StreamError(
        'GRAPH_INVALID',
        `job '${jobId}' reads topic(s) ${shared.join(', ')} both as a broadcast and as a partitioned source: use separate topics`,
      );
    }
    partitions = await topicPartitions(admin, [...topics, ...new Set(broadcasts.map((b) => b.topic))]);
  } finally {
    await admin.disconnect();
  }
  return { partitions, topics };
}

function checkTransactionTimeouts(
  jobId: string,
  sinks: readonly KafkaSink<unknown>[],
  o: KafkaJobOptions,
): void {
  const interval = o.checkpoints?.intervalMs ?? 1000;
  const timeout = o.checkpoints?.timeoutMs ?? 60_000;
  for (const s of sinks) {
    if ((o.checkpoints?.maxConcurrent ?? 1) !== 1) {
      throw new StreamError(
        'CONFIG_INVALID',
        `job '${jobId}': Kafka sinks need checkpoints.maxConcurrent = 1 (one open transaction while the previous one commits)`,
      );
    }
    if (s.transactionTimeoutMs <= interval + timeout) {
      throw new StreamError(
        'CONFIG_INVALID',
        `Kafka sink '${s.uid}': transactionTimeoutMs ${s.transactionTimeoutMs} must exceed checkpoints.intervalMs + checkpoints.timeoutMs = ${interval + timeout}, or the broker may abort a transaction before its checkpoint commits`,
      );
    }
  }
}

async function topicPartitions(admin: Admin, topics: readonly string[]): Promise<Map<string, number>> {
  const existing = new Set(
    await admin.listTopics().catch((e) => Promise.reject(kafkaError('listing topics', e))),
  );
  const missing = topics.filter((t) => !existing.has(t));
  if (missing.length > 0) {
    throw new StreamError(
      'CONFIG_INVALID',
      `topic(s) ${missing.join(', ')} do not exist: create them first, e.g. kstate topics create <topic> --partitions n (topics are never created implicitly)`,
    );
  }
  const meta = await admin.fetchTopicMetadata({ topics: [...topics] });
  return new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
}
