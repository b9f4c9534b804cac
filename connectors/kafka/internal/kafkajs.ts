/**
 * The one module that imports kafkajs (a dependency rule keeps it so). kafkajs 2.2.4 is unmaintained
 * and verified here rather than trusted: before it loads, its `read_committed` filter is replaced by
 * the project's (./install-read-committed.ts, ./read-committed.ts), and on load a fetch the upstream
 * filter gets wrong is run through kafkajs's own `Batch` to prove the replacement is in use. If
 * something loaded kafkajs before this module, that check fails and the process refuses to go on
 * rather than hand records of aborted transactions to a job. ./fetch-records.ts decodes fetched
 * records with numbers where kafkajs does Long arithmetic per record (same records). ./producer-grouping.ts replaces the
 * producer's grouping of a send's records by partition (quadratic upstream), ./producer-encoding.ts
 * makes its record encoding allocate less (same bytes), ./producer-timestamps.ts reads records'
 * timestamps once as numbers (same bytes), ./producer-murmur2.ts hashes keys for their
 * partition without BigInt (same hash); ./producer-handover.ts lets a transactional producer take over
 * the producer id and epoch another one's InitProducerId got. ./request-queue.ts stops
 * the 1 ms timer loop every idle kafkajs connection runs; ./create-topics-wait.ts keeps `createTopics`
 * waiting for leaders when the broker does not know the new topics yet; ./admin-connect.ts has an
 * admin's `connect` load the cluster's metadata (its first coordinator call waited for a retry);
 * ./install-fetch-wake.ts fetches a resumed partition at once, not after the consumer's idle sleep;
 * ./static-membership.ts lets a consumer join as a static member (KIP-345).
 */
import './install-read-committed.ts';
import './fetch-records.ts';
import './producer-encoding.ts';
import './producer-timestamps.ts';
import './producer-grouping.ts';
import './producer-murmur2.ts';
import './producer-handover.ts';
import './request-queue.ts';
import './install-fetch-wake.ts'; // before kafkajs: the consumer's idle sleep (wakeOnResume() below: the rest)
import { createRequire } from 'node:module';
import kafkajs, {
  type AdminConfig,
  AssignerProtocol,
  Kafka as KafkaJs,
  logLevel,
  Partitioners,
} from 'kafkajs';
import { StreamError } from '../../../framework/core.ts';
import { withMetadataOnConnect } from './admin-connect.ts';
import { withTopicCreationWait } from './create-topics-wait.ts';
import { wakeOnResume } from './install-fetch-wake.ts';
import { upstreamDefectCase } from './read-committed.ts';
import { installStaticMembership } from './static-membership.ts';

export type {
  Admin,
  Consumer,
  ConsumerConfig,
  EachBatchPayload,
  IHeaders,
  KafkaConfig,
  KafkaMessage,
  Message,
  PartitionAssigner,
  Producer,
  ProducerConfig,
  SASLOptions,
  Transaction,
} from 'kafkajs';
export { AssignerProtocol, logLevel, Partitioners };

/**
 * kafkajs's client, whose admins wait for created topics' leaders as they should
 * (./create-topics-wait.ts) and know the cluster's brokers once connected (./admin-connect.ts).
 */
export class Kafka extends KafkaJs {
  override admin(config?: AdminConfig): ReturnType<KafkaJs['admin']> {
    return withMetadataOnConnect(withTopicCreationWait(super.admin(config)));
  }
}
/** kafkajs's enums for describeConfigs (Node's named-export detection misses them in its CommonJS index). */
export const { ConfigResourceTypes, ConfigSource } = kafkajs;

/** Runs the case kafkajs 2.2.4 gets wrong through kafkajs's own `Batch` (see read-committed.ts). */
function verifyReadCommittedFilter(): void {
  const require = createRequire(import.meta.url);
  const Batch = require('kafkajs/src/consumer/batch.js') as new (
    topic: string,
    fetchedOffset: string,
    partitionData: unknown,
  ) => { messages: { offset: string }[] };
  const { records, aborted, expected } = upstreamDefectCase();
  const batch = new Batch('t', records[0]!.offset, {
    partition: 0,
    highWatermark: '239',
    abortedTransactions: aborted,
    messages: records,
  });
  const seen = batch.messages.map((m) => m.offset).join(',');
  if (seen !== expected.join(',')) {
    throw new StreamError(
      'KAFKA_CLIENT_UNVERIFIED',
      `kafkajs's read_committed filter is not the project's (a fetch with aborted transactions gave offsets ${seen}, expected ${expected.join(',')}): kafkajs was loaded before connectors/kafka/internal/kafkajs.ts; import kafkajs only through that module`,
    );
  }
}

verifyReadCommittedFilter();
wakeOnResume();
installStaticMembership();
