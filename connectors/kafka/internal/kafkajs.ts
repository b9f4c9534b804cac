/**
 * The one module that imports kafkajs (a dependency rule keeps it so). kafkajs 2.2.4 is unmaintained
 * and verified here rather than trusted: before it loads, its `read_committed` filter is replaced by
 * the project's (./install-read-committed.ts, ./read-committed.ts), and on load a fetch the upstream
 * filter gets wrong is run through kafkajs's own `Batch` to prove the replacement is in use. If
 * something loaded kafkajs before this module, that check fails and the process refuses to go on
 * rather than hand records of aborted transactions to a job. ./request-queue.ts stops the 1 ms timer
 * loop every idle kafkajs connection runs.
 */
import './install-read-committed.ts';
import './request-queue.ts';
import { createRequire } from 'node:module';
import { AssignerProtocol, Kafka, logLevel, Partitioners } from 'kafkajs';
import { StreamError } from '../../../framework/index.ts';

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
export { AssignerProtocol, Kafka, logLevel, Partitioners };

/**
 * The case of the upstream defect (issue 12): records at offsets 236 and 237 of producer 2 and 238 of
 * producer 3, aborted transactions of producer 1 from 200 and producer 2 from 230. kafkajs 2.2.4's
 * filter returns 236 and 238; the right answer is 238 alone.
 */
function verifyReadCommittedFilter(): void {
  const require = createRequire(import.meta.url);
  const Batch = require('kafkajs/src/consumer/batch.js') as new (
    topic: string,
    fetchedOffset: string,
    partitionData: unknown,
  ) => { messages: { offset: string }[] };
  const ctx = (producerId: string, firstOffset: string, lastOffsetDelta: number) => ({
    firstOffset,
    lastOffsetDelta,
    producerId,
    inTransaction: true,
    isControlBatch: false,
  });
  const p2 = ctx('2', '236', 1);
  const p3 = ctx('3', '238', 0);
  const batch = new Batch('t', '236', {
    partition: 0,
    highWatermark: '239',
    abortedTransactions: [
      { producerId: '1', firstOffset: '200' },
      { producerId: '2', firstOffset: '230' },
    ],
    messages: [
      { offset: '236', key: null, value: null, batchContext: p2 },
      { offset: '237', key: null, value: null, batchContext: p2 },
      { offset: '238', key: null, value: null, batchContext: p3 },
    ],
  });
  const seen = batch.messages.map((m) => m.offset).join(',');
  if (seen !== '238') {
    throw new StreamError(
      'KAFKA_CLIENT_UNVERIFIED',
      `kafkajs's read_committed filter is not the project's (a fetch with aborted transactions gave offsets ${seen}, expected 238): kafkajs was loaded before connectors/kafka/internal/kafkajs.ts; import kafkajs only through that module`,
    );
  }
}

verifyReadCommittedFilter();
