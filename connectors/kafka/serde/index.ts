/**
 * Serdes for the Kafka source and sink: the contract (serde.ts), string / JSON / bytes (simple.ts), and
 * Avro / JSON Schema / Protobuf through a Confluent-compatible schema registry (confluent.ts,
 * registry.ts). See docs/serde.md.
 */
export {
  avroSerde,
  jsonSchemaSerde,
  type ProtobufSerdeOptions,
  protobufSerde,
  type RegistrySerdeOptions,
} from './confluent.ts';
export {
  DeserializationError,
  type DeserializationReason,
  isSerdeError,
  type RecordLocation,
  RegistryRequestError,
  RegistryUnavailableError,
  type SerdeError,
  type SerdeErrorCode,
  SerdeErrorCodes,
  SerializationError,
} from './errors.ts';
export {
  classifyRegistryFailure,
  type RegistrySchema,
  type SchemaDefinition,
  type SchemaKind,
  type SchemaLookup,
  type SchemaReference,
  SchemaRegistryClient,
  type SchemaRegistryClientOptions,
} from './registry.ts';
export { backoffDelay, DEFAULT_RETRY_POLICY, type RetryPolicy } from './retry.ts';
export { isPromise, type MaybePromise, type Serde } from './serde.ts';
export { bytesSerde, jsonSerde, stringSerde } from './simple.ts';
export { HEADER_SIZE, MAGIC_BYTE } from './wire.ts';
