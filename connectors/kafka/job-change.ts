import { randomUUID } from 'node:crypto';
import { type JobOptions, StreamError } from '../../framework/index.ts';
import { readCommittedPointer } from './admin/pointer.ts';
import { leaseAdmin } from './admin/shared-admin.ts';
import { kafkaError } from './errors.ts';
import type { Admin, Kafka } from './internal/kafkajs.ts';
import { TRANSACTION_SLOTS, transactionalId } from './sink/internal/transactional-id.ts';
import { isKafkaPosition } from './source/partition-reader.ts';

type Hooks = NonNullable<JobOptions['jobChange']>;

export interface KafkaJobChangeOptions {
  readonly kafka: Kafka;
  readonly jobId: string;
  /** The job's repartition topics: a repartition source the old job did not read starts at its end. */
  readonly repartitionTopics: ReadonlySet<string>;
  /** How long to wait for members of the group to leave (a killed instance leaves after its session timeout). */
  readonly leaveTimeoutMs: number;
}

/**
 * What Kafka knows and does when a job's stages changed (framework/savepoint/job-change.ts):
 *
 * - `exclusive`: the job's consumer group (group id = job id) must have no member: the committed
 *   checkpoints are one consistent cut only while no instance of the old job commits. A killed
 *   instance stays a member until its session timeout, so this waits up to `leaveTimeoutMs` for the
 *   group to empty, then refuses with JOB_CHANGE_BLOCKED naming the members.
 * - `fence`: InitProducerId on every transactional id of the old tasks (`<jobId>.<task>.<slot>`)
 *   aborts what they left open (a transaction of a stage that no longer exists would otherwise hold
 *   back read_committed readers of its topics until the transaction timeout) and makes the committed
 *   pointers final: nothing of an old task can commit after its epoch was bumped.
 * - `committedPointer`: the pointer in the group's committed offset metadata of the stage's inputs.
 * - `backlog`: committed records between a removed source's position and its topic's end, read with
 *   read_committed (records of aborted transactions and transaction markers are no backlog).
 * - `startPosition`: a repartition topic the old job did not read is read from its end: whatever it
 *   holds was written by an earlier version of the job, not by the upstream stage of this one.
 */
export function kafkaJobChangeHooks(o: KafkaJobChangeOptions): Hooks {
  const withAdmin = async <T>(what: string, f: (admin: Admin) => Promise<T>): Promise<T> => {
    const lease = await leaseAdmin(o.kafka);
    try {
      return await f(lease.admin);
    } catch (e) {
      throw e instanceof StreamError ? e : kafkaError(what, e);
    } finally {
      await lease.release();
    }
  };
  const ends = new Map<string, Promise<Map<number, bigint>>>();
  const endOf = (topic: string, partition: number): Promise<bigint | undefined> => {
    let m = ends.get(topic);
    if (!m) {
      m = withAdmin(`reading the end offsets of ${topic}`, async (admin) => {
        const offsets = await admin.fetchTopicOffsets(topic);
        return new Map(offsets.map((x) => [x.partition, BigInt(x.high)]));
      });
      ends.set(topic, m);
    }
    return m.then((x) => x.get(partition));
  };
  return {
    async exclusive(superseded) {
      const deadline = Date.now() + o.leaveTimeoutMs;
      for (;;) {
        // Another new instance recorded the layout and joined: its members are no old job.
        if (await superseded()) return 'superseded';
        const members = await withAdmin(`describing group ${o.jobId}`, async (admin) => {
          const { groups } = await admin.describeGroups([o.jobId]);
          return groups.flatMap((g) => g.members.map((m) => `${m.clientId} (${m.clientHost})`));
        });
        if (members.length === 0) return 'exclusive';
        if (Date.now() >= deadline) {
          throw new StreamError(
            'JOB_CHANGE_BLOCKED',
            `job ${o.jobId}: its stages changed, and its consumer group still has ${members.length} member(s) after ${o.leaveTimeoutMs} ms: ${members.join(', ')}. Stop every instance of the previous version of the job first: its committed checkpoints are re-cut into the new stages only while nothing commits`,
          );
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    },
    async fence(taskIds) {
      const ids = taskIds.flatMap((t) =>
        Array.from({ length: TRANSACTION_SLOTS }, (_, slot) => transactionalId(o.jobId, t, slot)),
      );
      const fenceOne = async (id: string) => {
        const producer = o.kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
        try {
          await producer.connect();
          const t = await producer.transaction();
          await t.abort();
        } catch (e) {
          throw kafkaError(`fencing transactional id ${id} of the previous version of job ${o.jobId}`, e);
        } finally {
          await producer.disconnect().catch(() => {});
        }
      };
      // A few at a time: each is a connection and an InitProducerId round trip.
      for (let i = 0; i < ids.length; i += 8) await Promise.all(ids.slice(i, i + 8).map(fenceOne));
    },
    async committedPointer(stage, partition) {
      const topics = stage.sources.flatMap((s) => (!s.broadcast && s.topic !== undefined ? [s.topic] : []));
      if (topics.length === 0) return undefined;
      return withAdmin(`reading the committed checkpoint of group ${o.jobId}`, (admin) =>
        readCommittedPointer(admin, o.jobId, topics, partition),
      );
    },
    async backlog(_source, partition, position) {
      if (!isKafkaPosition(position)) return undefined;
      const end = await endOf(position.topic, partition).catch(() => undefined);
      if (end === undefined) return undefined;
      const from = BigInt(position.offset);
      if (end <= from) return 0;
      // Offsets overcount: a transaction `fence` aborted (a killed upstream's) and the markers are
      // offsets too. Count the committed records; if that read cannot finish, the offsets (an upper bound).
      return (
        (await committedRecords(o.kafka, o.jobId, position.topic, partition, from, end)) ?? Number(end - from)
      );
    },
    async startPosition(source, partition) {
      if (source.topic === undefined || !o.repartitionTopics.has(source.topic)) return undefined;
      const end = await endOf(source.topic, partition);
      return end === undefined ? undefined : { topic: source.topic, offset: end.toString() };
    },
  };
}

/**
 * The committed data records in [from, end) of one partition, read with read_committed (the project's
 * filter, ./internal/kafkajs.ts) by a consumer of a private group; undefined when the read does not
 * reach `end` within `timeoutMs` (the caller falls back to counting offsets).
 */
async function committedRecords(
  kafka: Kafka,
  jobId: string,
  topic: string,
  partition: number,
  from: bigint,
  end: bigint,
  timeoutMs = 60_000,
): Promise<number | undefined> {
  const groupId = `${jobId}.job-change.${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 100 });
  const inRange = (offset: string | null | undefined) =>
    offset != null && BigInt(offset) >= from && BigInt(offset) < end;
  let count = 0;
  let finish!: (n: number | undefined) => void;
  const done = new Promise<number | undefined>((r) => {
    finish = r;
  });
  const timer = setTimeout(() => finish(undefined), timeoutMs);
  // Progress from kafkajs's batch events: eachBatch is not called for a batch that read_committed
  // emptied (aborted records and markers only), END_BATCH_PROCESS is. Its first offset tells the
  // range's batches (after the seek) from others.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.partition !== partition || !inRange(payload.firstOffset)) return;
    if (BigInt(payload.lastOffset) + 1n >= end) finish(count);
  });
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic] });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        if (batch.partition !== partition) return;
        for (const m of batch.messages) if (inRange(m.offset)) count++;
      },
    });
    consumer.seek({ topic, partition, offset: from.toString() });
    return await done;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
    const admin = kafka.admin();
    await admin
      .connect()
      .then(() => admin.deleteGroups([groupId]))
      .catch(() => {})
      .finally(() => admin.disconnect().catch(() => {}));
  }
}
