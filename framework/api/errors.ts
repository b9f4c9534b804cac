/**
 * The one catalogue of error codes. Every error the framework throws on purpose is a
 * `StreamError` with one of these codes, a message that says what is wrong and what to do, and the
 * underlying `cause` when there is one. docs/errors.md lists the same codes (a test keeps them in step).
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'a configuration value is missing, of the wrong type, or out of range',
  GRAPH_INVALID: 'the job graph makes no sense (uid collision, keyed state without keyBy, cycle ...)',
  USER_FUNCTION_FAILED: 'a user function threw while processing a record, timer or barrier',
  KEY_GROUP_MISMATCH:
    'a record reached a task that does not own its key group (input not partitioned by the key)',
  STATE_DESCRIPTOR_CONFLICT: 'a state name was registered twice with a different kind or serializer',
  SERIALIZER_MISMATCH: 'a snapshot was written by another serializer, or a newer version of it',
  SNAPSHOT_FORMAT_UNSUPPORTED: 'a snapshot was written in a format version this build cannot read',
  CHECKPOINT_CORRUPT: 'a checkpoint or savepoint file is truncated or fails its checksum',
  CHECKPOINT_NOT_FOUND: 'the checkpoint, savepoint or checkpoint directory asked for does not exist',
  CHECKPOINT_STORAGE_FAILED: 'writing or reading checkpoint storage failed (disk full, permissions ...)',
  CHECKPOINT_DECLINED: 'a checkpoint was declined or timed out and was aborted',
  CHECKPOINT_FAILURES_EXCEEDED: 'more consecutive checkpoints failed than the configuration tolerates',
  RESTART_LIMIT_EXCEEDED: 'the restart strategy gave up after too many task failures',
  JOB_CANCELLED: 'the job was stopped while the operation was in progress',
  RECORD_DESERIALIZATION_FAILED:
    'an input record could not be deserialized (the error names topic, partition and offset)',
  RECORD_SERIALIZATION_FAILED: 'an output record could not be serialized',
  RECORD_TIMESTAMP_MISSING:
    'an event-time operator (window, join, dedup, CEP) got a record without a timestamp',
  SCHEMA_REGISTRY_UNAVAILABLE: 'the schema registry did not answer after retries (refused, timed out, 5xx)',
  SCHEMA_REGISTRY_REQUEST_FAILED: 'the schema registry refused a request (401, 403, 409, 422 ...)',
  PATTERN_INVALID: 'a CEP pattern is malformed, can never match, or matches in a degenerate way',
  RESCALE_UNSUPPORTED:
    'a savepoint cannot be rescaled as asked (raw state, in-flight records, a partition count unlike the topics)',
  SAVEPOINT_DATA_INVALID:
    'savepoint data to import does not fit its state (the error names the file and line)',
  KAFKA_CLIENT_UNVERIFIED: "the Kafka client failed the project's check of its read_committed filter at load",
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class StreamError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StreamError';
    this.code = code;
  }
}

/** True when `e` is a StreamError, optionally of the given code. */
export function isStreamError(e: unknown, code?: ErrorCode): e is StreamError {
  return e instanceof StreamError && (code === undefined || e.code === code);
}
