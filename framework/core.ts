/**
 * The part of the framework that needs none of the rest: its error type and Kafka's key hash.
 * It loads in a few milliseconds, where `framework/index.ts` brings the runtime, the state backends,
 * the service and the checkpoint code (about 140 ms with Node's compile cache). It is for connector
 * code that runs where none of that is loaded: the Kafka producer thread's modules
 * (connectors/kafka/internal/producer-thread-worker.ts and the kafkajs patches it loads), whose
 * load time is on a task's start path (docs/kafka.md, "The producer thread").
 *
 * `framework/index.ts` exports the same; users import from there. Not a package entry point.
 */
export { StreamError } from './api/errors.ts';
export { murmur2 } from './state/partitioners.ts';
