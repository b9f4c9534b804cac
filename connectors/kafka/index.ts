/** The public entry point of the Kafka connectors. */
import '../../framework/node/require.js';

export type { ServiceConfig } from './cli/config.ts';
export { createKafka, type KafkaConnection } from './client.ts';
export { classifyKafkaError, type KafkaFailure } from './errors.ts';
export { type KafkaEventMap, kafkaEvents } from './events.ts';
export { type KafkaJobOptions, type KafkaRunningJob, runKafkaJob } from './run-kafka-job.ts';
export * as serde from './serde/index.ts';
export { type KafkaRecordOut, KafkaSink, type KafkaSinkOptions } from './sink/kafka-sink.ts';
export type { PartitionLag } from './source/hub.ts';
export { KafkaSource, type KafkaSourceOptions } from './source/kafka-source.ts';
export {
  DEAD_LETTER_TAG,
  type DeadLetter,
  type DecodeErrorPolicy,
  type KafkaPosition,
  type KafkaRecordIn,
  type RecordErrorPolicy,
} from './source/partition-reader.ts';
export { tableSource } from './source/table-source.ts';
