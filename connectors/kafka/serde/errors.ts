import { type ErrorCode, StreamError } from '../../../framework/index.ts';

/**
 * The errors of the serde layer: StreamErrors of the one catalogue (framework/api/errors.ts), each with
 * its `code`, a message that says what is wrong, the underlying `cause` when there is one, and the
 * catalogue's `retriable` flag (of the serde's codes, true only for SCHEMA_REGISTRY_UNAVAILABLE).
 * `retryable` is the same flag under its older name, a getter per class; the Kafka source reads it
 * to tell an unreachable registry (the task fails and retries) from a bad record (its policy).
 *
 * A DeserializationError carries the topic only. `at()` returns a copy placed at its partition and
 * offset, for code that reads records itself; the Kafka source does not use it: it names topic,
 * partition and offset in its own error (onDecodeError 'fail') or in the dead-letter record.
 */

/** The serde's codes (a subset of the catalogue), with what each means for a serde. */
export const SerdeErrorCodes = {
  RECORD_DESERIALIZATION_FAILED:
    "a record's key or value cannot be read (wrong magic byte, unknown schema id, bytes that do not match the schema): a poison record, handled by the source's policy",
  RECORD_SERIALIZATION_FAILED: 'a value cannot be written: it does not fit its schema or format',
  SCHEMA_REGISTRY_UNAVAILABLE:
    'the schema registry did not answer (connection refused, timeout, 5xx) within the retry budget: retryable, never a reason to skip a record',
  SCHEMA_REGISTRY_REQUEST_FAILED:
    'the schema registry refused a request (401/403 credentials, 409 incompatible schema, 422 invalid schema)',
} as const satisfies Partial<Record<ErrorCode, string>>;

export type SerdeErrorCode = keyof typeof SerdeErrorCodes;

/** Why a record could not be read; stable strings, fit for a dead-letter header or a metric label. */
export type DeserializationReason =
  /** Fewer bytes than the 5-byte Confluent header (magic byte + schema id), or a truncated index list. */
  | 'truncated'
  /** The first byte is not the Confluent magic byte 0: not written by a registry serializer. */
  | 'wrong-magic-byte'
  /** The schema id is not in the registry (it answered 404). */
  | 'unknown-schema-id'
  /** The schema id names a schema of another type (e.g. a JSON Schema read by the Avro serde). */
  | 'schema-type-mismatch'
  /** The registry's schema could not be used (it does not parse, a reference is missing). */
  | 'unusable-schema'
  /** The bytes do not decode with, or do not validate against, the writer's schema. */
  | 'schema-mismatch'
  /** Not valid UTF-8, or not valid JSON. */
  | 'invalid-encoding';

/** Where a record is, for `DeserializationError.at()` (the serde knows only the topic). */
export interface RecordLocation {
  readonly partition: number;
  /** Kafka offsets are strings in kafkajs (64-bit). */
  readonly offset: string;
  readonly field?: 'key' | 'value';
}

export class DeserializationError extends StreamError {
  declare readonly code: 'RECORD_DESERIALIZATION_FAILED';
  readonly reason: DeserializationReason;
  readonly format: string;
  readonly topic: string;
  /** Set on a copy made by `at()`; undefined on the error the serde throws. */
  readonly partition: number | undefined;
  readonly offset: string | undefined;
  readonly field: 'key' | 'value' | undefined;
  /** The schema id of the Confluent header, when the bytes had one. */
  readonly schemaId: number | undefined;
  readonly detail: string;

  constructor(
    init: {
      readonly reason: DeserializationReason;
      readonly format: string;
      readonly topic: string;
      readonly detail: string;
      readonly schemaId?: number;
      readonly partition?: number;
      readonly offset?: string;
      readonly field?: 'key' | 'value';
    },
    options?: { cause?: unknown },
  ) {
    super('RECORD_DESERIALIZATION_FAILED', deserializationMessage(init), options);
    this.name = 'DeserializationError';
    this.reason = init.reason;
    this.format = init.format;
    this.topic = init.topic;
    this.detail = init.detail;
    this.schemaId = init.schemaId;
    this.partition = init.partition;
    this.offset = init.offset;
    this.field = init.field;
  }

  /** A poison record: the source applies its policy (fail, skip, dead-letter); retrying cannot help. */
  get retryable(): false {
    return false;
  }

  /** The same error, placed at its record (the message then names topic, partition and offset). */
  at(location: RecordLocation): DeserializationError {
    return new DeserializationError(
      {
        reason: this.reason,
        format: this.format,
        topic: this.topic,
        detail: this.detail,
        ...(this.schemaId === undefined ? {} : { schemaId: this.schemaId }),
        partition: location.partition,
        offset: location.offset,
        ...(location.field === undefined ? {} : { field: location.field }),
      },
      { cause: this.cause },
    );
  }
}

function deserializationMessage(init: {
  reason: DeserializationReason;
  format: string;
  topic: string;
  detail: string;
  partition?: number;
  offset?: string;
  field?: 'key' | 'value';
}): string {
  const where =
    init.partition === undefined
      ? `topic ${init.topic}`
      : `${init.topic} partition ${init.partition} offset ${init.offset ?? '?'}`;
  return `cannot read the ${init.field ?? 'record'} at ${where} as ${init.format} (${init.reason}): ${init.detail}`;
}

export class SerializationError extends StreamError {
  declare readonly code: 'RECORD_SERIALIZATION_FAILED';
  readonly format: string;
  readonly topic: string;

  /** The value does not fit its schema or format: retrying cannot help. */
  get retryable(): false {
    return false;
  }

  constructor(format: string, topic: string, detail: string, options?: { cause?: unknown }) {
    super(
      'RECORD_SERIALIZATION_FAILED',
      `cannot write a value for topic ${topic} as ${format}: ${detail}`,
      options,
    );
    this.name = 'SerializationError';
    this.format = format;
    this.topic = topic;
  }
}

export class RegistryUnavailableError extends StreamError {
  declare readonly code: 'SCHEMA_REGISTRY_UNAVAILABLE';
  readonly url: string;
  /** e.g. `GET /schemas/ids/7`. */
  readonly operation: string;
  readonly attempts: number;
  readonly elapsedMs: number;

  /** Retry later (restart the task, back off): the record is not at fault and must not be skipped. */
  get retryable(): true {
    return true;
  }

  constructor(
    init: { url: string; operation: string; attempts: number; elapsedMs: number; lastError: string },
    options?: { cause?: unknown },
  ) {
    super(
      'SCHEMA_REGISTRY_UNAVAILABLE',
      `schema registry ${init.url} unavailable: ${init.operation} failed ${init.attempts} time(s) over ${init.elapsedMs} ms (last: ${init.lastError}); the task should retry later, the record is not skipped`,
      options,
    );
    this.name = 'RegistryUnavailableError';
    this.url = init.url;
    this.operation = init.operation;
    this.attempts = init.attempts;
    this.elapsedMs = init.elapsedMs;
  }
}

export class RegistryRequestError extends StreamError {
  declare readonly code: 'SCHEMA_REGISTRY_REQUEST_FAILED';
  readonly url: string;
  readonly operation: string;
  readonly status: number;

  /** Credentials or schema compatibility: retrying the same request cannot help. */
  get retryable(): false {
    return false;
  }

  constructor(
    init: { url: string; operation: string; status: number; detail: string },
    options?: { cause?: unknown },
  ) {
    super(
      'SCHEMA_REGISTRY_REQUEST_FAILED',
      `schema registry ${init.url} refused ${init.operation} with HTTP ${init.status}: ${init.detail}${hint(init.status)}`,
      options,
    );
    this.name = 'RegistryRequestError';
    this.url = init.url;
    this.operation = init.operation;
    this.status = init.status;
  }
}

function hint(status: number): string {
  if (status === 401 || status === 403) return ' (check the registry credentials)';
  if (status === 409)
    return ' (the schema is not compatible with the subject: evolve it compatibly or change the subject compatibility)';
  if (status === 422) return ' (the registry rejects the schema as invalid)';
  return '';
}

export type SerdeError =
  | DeserializationError
  | SerializationError
  | RegistryUnavailableError
  | RegistryRequestError;

/** True when `e` is one of the serde errors, optionally of the given code. */
export function isSerdeError(e: unknown, code?: SerdeErrorCode): e is SerdeError {
  return (
    (e instanceof DeserializationError ||
      e instanceof SerializationError ||
      e instanceof RegistryUnavailableError ||
      e instanceof RegistryRequestError) &&
    (code === undefined || e.code === code)
  );
}
