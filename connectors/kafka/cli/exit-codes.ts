/**
 * Exit codes a supervisor can act on (sysexits.h where one fits). Documented in docs/service.md.
 */
export const EXIT = {
  OK: 0,
  /**
   * The job failed because its restart strategy gave up (a failure it counts, such as a user function
   * that throws, repeated past its limit); another command failed in a way no code below names.
   */
  JOB_FAILED: 1,
  /** No command, an unknown command or option, or a missing or malformed argument. */
  USAGE: 64,
  /**
   * The data is wrong: a savepoint that cannot be rescaled, read or imported as asked; a checkpoint
   * or savepoint that is corrupt or of incompatible state; a record in the wrong partition; a topic
   * that exists already, or a partition count, replication factor or topic config the brokers refuse
   * (the message says why).
   */
  DATA_ERROR: 65,
  /**
   * The thing asked for is not there: no running service, no such checkpoint, savepoint, topic or key;
   * the checkpoint storage cannot be used or reached; or no Kafka broker answers (the message names
   * the addresses tried).
   */
  UNAVAILABLE: 69,
  /** A port is in use, or another resource of the machine is missing. */
  OS_ERROR: 71,
  /** Kafka refused the credentials, or they lack a permission (an ACL) the command needs. */
  NO_PERMISSION: 77,
  /** Bad configuration or job module. */
  CONFIG: 78,
  /** Stopped by a second signal or the shutdown deadline (nothing committed is lost). */
  FORCED: 130,
} as const;

/** The catalogued codes (docs/errors.md) and the exit code each one ends `kstate` with. */
const BY_CODE: Readonly<Record<string, number>> = {
  CONFIG_INVALID: EXIT.CONFIG,
  GRAPH_INVALID: EXIT.CONFIG,
  STATE_NOT_RESTORED: EXIT.CONFIG,
  JOB_CHANGE_BLOCKED: EXIT.CONFIG,
  CHECKPOINT_NOT_FOUND: EXIT.UNAVAILABLE,
  CHECKPOINT_STORAGE_FAILED: EXIT.UNAVAILABLE,
  CHECKPOINT_STORAGE_DENIED: EXIT.NO_PERMISSION,
  RESCALE_UNSUPPORTED: EXIT.DATA_ERROR,
  SAVEPOINT_DATA_INVALID: EXIT.DATA_ERROR,
  SNAPSHOT_FORMAT_UNSUPPORTED: EXIT.DATA_ERROR,
  CHECKPOINT_CORRUPT: EXIT.DATA_ERROR,
  KEY_GROUP_MISMATCH: EXIT.DATA_ERROR,
  STATE_DESCRIPTOR_CONFLICT: EXIT.DATA_ERROR,
  SERIALIZER_MISMATCH: EXIT.DATA_ERROR,
};

/**
 * The exit code of an error that ends a command, or the service: by its catalogued code (a
 * StreamError's `code`, else its causes'), the same whether the start refused it or a running job
 * failed with it permanently; JOB_FAILED for anything else (RESTART_LIMIT_EXCEEDED: the restart
 * strategy gave up).
 */
export function exitCodeFor(e: unknown): number {
  // The first code of the error or its causes that has one (CHECKPOINT_DECLINED caused by
  // CHECKPOINT_STORAGE_FAILED: 69); a restart strategy that gave up is 1 whatever the cause.
  for (let x = e, depth = 0; x instanceof Error && depth < 8; depth++) {
    const code = x.name === 'StreamError' ? (x as { code?: unknown }).code : undefined;
    if (code === 'RESTART_LIMIT_EXCEEDED') return EXIT.JOB_FAILED;
    const exit = typeof code === 'string' ? BY_CODE[code] : undefined;
    if (exit !== undefined) return exit;
    x = x.cause;
  }
  return EXIT.JOB_FAILED;
}

/** What a person does about a job that failed with exit code `exit` (the `job failed` log line's `action`). */
export function actionFor(exit: number): string {
  switch (exit) {
    case EXIT.CONFIG:
      return 'fix the configuration or job module the message names, then start the service again';
    case EXIT.DATA_ERROR:
      return 'the state, savepoint or input the message names cannot be used as it is: start from another savepoint (--from-savepoint) or checkpoint, or fix the input or the source settings it names; then start the service again';
    case EXIT.UNAVAILABLE:
      return 'the checkpoint, savepoint or storage the message names is not there or cannot be used: fix the name or the storage path (kstate checkpoints <jobId> lists what there is), then start the service again';
    case EXIT.NO_PERMISSION:
      return 'grant the permission the message names, or fix the credentials, then start the service again';
    default:
      return 'the task failed again and again (the restart strategy gave up): fix the cause the message names (a user function that throws on a record can skip or dead-letter it: onUserFunctionError), then start the service again';
  }
}
