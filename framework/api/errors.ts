/**
 * The one catalogue of error codes. Every error the framework throws on purpose is a
 * `StreamError` with one of these codes, a message that says what is wrong and what to do, the
 * underlying `cause` when there is one, and a `retriable` flag (see RETRIABLE_CODES). docs/errors.md
 * lists the same codes and flags (a test keeps them in step).
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'a configuration value is missing, of the wrong type, or out of range',
  GRAPH_INVALID: 'the job graph makes no sense (uid collision, keyed state without keyBy, cycle ...)',
  USER_FUNCTION_FAILED: 'a user function threw while processing a record, timer or barrier',
  KEY_GROUP_MISMATCH:
    "a record reached a task that does not own its key group (input not partitioned by the key, or by another partitioner than the source's)",
  STATE_DESCRIPTOR_CONFLICT: 'a state name was registered twice with a different kind or serializer',
  SERIALIZER_MISMATCH: 'a snapshot was written by another serializer, or a newer version of it',
  SNAPSHOT_FORMAT_UNSUPPORTED: 'a snapshot was written in a format version this build cannot read',
  CHECKPOINT_CORRUPT: 'a checkpoint or savepoint file is truncated or fails its checksum',
  LOCAL_STATE_DAMAGED:
    "a task's local state database (level backend) lost or damaged data: it is rebuilt from checkpoint storage",
  CHECKPOINT_NOT_FOUND: 'the checkpoint, savepoint or checkpoint directory asked for does not exist',
  CHECKPOINT_STORAGE_FAILED: 'writing or reading checkpoint storage failed (disk full, permissions ...)',
  CHECKPOINT_STORAGE_DENIED:
    'the object store refused the credentials, or they lack a permission on the checkpoint bucket',
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
  STATE_NOT_RESTORED:
    'state of the last run or savepoint has no operator in the changed job (the error names each state and uid)',
  JOB_CHANGE_BLOCKED:
    "the job's stages changed, but instances of its previous version still run (the error names them)",
  KAFKA_CLIENT_UNVERIFIED: "the Kafka client failed the project's check of its read_committed filter at load",
  KAFKA_RETRIABLE:
    'Kafka asked for a retry (concurrent transactions, coordinator loading or moving, request timed out, leader changing)',
  KAFKA_UNAVAILABLE:
    'no Kafka broker answered (connection refused or closed, request timed out, no broker available)',
  KAFKA_TRANSACTION_LOST:
    "a task's Kafka transaction is lost (fenced by a newer owner of its transactional id, aborted by the coordinator, out of sequence)",
  KAFKA_REQUEST_FAILED:
    'Kafka refused a request for a reason that retrying does not change (record too large, invalid request ...)',
  KAFKA_TRANSACTION_STATE_INVALID:
    "a Kafka sink's transaction slot was asked for a transition its state machine does not allow",
  KAFKA_PRODUCER_THREAD_EXITED:
    "the thread the Kafka sinks' producers run on crashed or was closed while a send or transaction waited for it",
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/**
 * The codes whose errors are retriable: the operation that failed may succeed when it is tried again,
 * unchanged, after a backoff; code that catches one retries it where that is safe (bounded: the Kafka
 * sink's commit retries within the transaction timeout). Every other code is not: trying the same
 * again cannot help, so the task restarts from its last checkpoint (or the job stops, for
 * configuration errors). A retriable error that escapes its retry fails the task like any other.
 */
export const RETRIABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SCHEMA_REGISTRY_UNAVAILABLE',
  'KAFKA_RETRIABLE',
  'KAFKA_UNAVAILABLE',
]);

/**
 * The codes whose errors are permanent: trying again cannot help, because the fault is in the job's
 * configuration, in the state or savepoint it restores, or in the input itself (a restart replays the
 * same record and fails the same way). The restart strategy is not consulted (`failureClass`,
 * `decideRestart`): the job fails at once with the error itself instead of restarting forever, and
 * `kstate run` exits with the code its class has (docs/service.md "Exit codes"). A record error of this
 * kind has a poison-record policy (skip, dead-letter) where the job should go on.
 */
export const PERMANENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CONFIG_INVALID',
  'GRAPH_INVALID',
  'KEY_GROUP_MISMATCH',
  'STATE_DESCRIPTOR_CONFLICT',
  'SERIALIZER_MISMATCH',
  'SNAPSHOT_FORMAT_UNSUPPORTED',
  'CHECKPOINT_CORRUPT',
  'CHECKPOINT_NOT_FOUND',
  'CHECKPOINT_STORAGE_DENIED',
  'RESCALE_UNSUPPORTED',
  'STATE_NOT_RESTORED',
  'KAFKA_CLIENT_UNVERIFIED',
]);

/**
 * How the job treats a task failure (docs/runtime.md "Failures and restarts"):
 * - `permanent`: no restart can help (a permanent code, or a storage path that cannot be used as it
 *   is: a component of it is a file, access is denied, read-only); the job fails at once;
 * - `transient`: the environment is away or moved (a retriable code: the broker, the schema registry;
 *   the checkpoint storage failing or out of reach; the task's transaction taken over by another
 *   instance): the task restarts with backoff for as long as it lasts, and the restart strategy does
 *   not count it;
 * - `counted`: anything else (a user function that throws, a checkpoint that timed out, a request
 *   Kafka refuses): the restart strategy counts it, and gives up past its limit.
 */
export type FailureClass = 'permanent' | 'transient' | 'counted';

/**
 * Codes whose failures are the environment's, beyond the retriable ones: a storage that fails (disk
 * full, I/O error, 5xx, unreachable: unless its cause is a permanent errno) and a transaction lost to
 * a rebalance. Not retriable in place (the task restarts), but not the job's fault either.
 */
const TRANSIENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CHECKPOINT_STORAGE_FAILED',
  'KAFKA_TRANSACTION_LOST',
]);
/**
 * Codes of a resource another process holds for now (abstract-level's LEVEL_LOCKED: a task's LevelDB
 * still open in the worker or instance it moves from): transient whatever wraps them (the level
 * backend reports it as CONFIG_INVALID, since a lock that never goes away is two tasks given one
 * directory).
 */
const HELD_ELSEWHERE: ReadonlySet<string> = new Set(['LEVEL_LOCKED']);
/** errno codes of a path that cannot be used as it is: a person must change it. */
const PERMANENT_ERRNOS: ReadonlySet<string> = new Set(['ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'EROFS']);
/** errno codes (and SDK error names) of a network that does not answer now. */
const NETWORK_ERRNOS: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'TimeoutError',
]);

/**
 * The class of a failure, from the error and its chain of `cause`s: transient when one is a
 * resource held elsewhere for now (HELD_ELSEWHERE); else permanent when any of them says so (a
 * permanent code, a permanent errno), else transient when any of them does (a retriable or transient
 * code, a network errno), else counted. So a checkpoint declined because the directory is
 * under a regular file (CHECKPOINT_DECLINED <- CHECKPOINT_STORAGE_FAILED <- ENOTDIR) is permanent, and
 * one declined because the object store is unreachable (<- CHECKPOINT_STORAGE_FAILED <- ECONNREFUSED)
 * transient.
 */
export function failureClass(error: unknown): FailureClass {
  const chain: unknown[] = [];
  for (let e = error, depth = 0; depth < 8 && e !== null && e !== undefined; depth++) {
    chain.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  if (chain.some((e) => HELD_ELSEWHERE.has(String((e as { code?: unknown }).code)))) return 'transient';
  let transient = false;
  let e = error;
  for (let depth = 0; depth < 8 && e !== null && e !== undefined; depth++) {
    if (e instanceof StreamError) {
      if (e.permanent) return 'permanent';
      if (e.retriable || TRANSIENT_CODES.has(e.code)) transient = true;
    } else if (typeof e === 'object') {
      const { code, name } = e as { code?: unknown; name?: unknown };
      if (typeof code === 'string' && PERMANENT_ERRNOS.has(code)) return 'permanent';
      if (typeof code === 'string' && NETWORK_ERRNOS.has(code)) transient = true;
      if (typeof name === 'string' && NETWORK_ERRNOS.has(name)) transient = true;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return transient ? 'transient' : 'counted';
}

export class StreamError extends Error {
  readonly code: ErrorCode;
  /** Whether trying the same operation again may succeed (fixed per code: RETRIABLE_CODES). */
  readonly retriable: boolean;
  /** Whether a restart would fail the same way (fixed per code: PERMANENT_CODES). */
  readonly permanent: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StreamError';
    this.code = code;
    this.retriable = RETRIABLE_CODES.has(code);
    this.permanent = PERMANENT_CODES.has(code);
  }

  /** Whether errors of `code` are retriable (RETRIABLE_CODES). */
  static isRetriable(code: ErrorCode): boolean {
    return RETRIABLE_CODES.has(code);
  }
}

/** True when `e` is a StreamError, optionally of the given code. */
export function isStreamError(e: unknown, code?: ErrorCode): e is StreamError {
  return e instanceof StreamError && (code === undefined || e.code === code);
}
