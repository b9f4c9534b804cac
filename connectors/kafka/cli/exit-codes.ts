/**
 * Exit codes a supervisor can act on (sysexits.h where one fits). Documented in docs/service.md.
 */
export const EXIT = {
  OK: 0,
  /** The job failed (its restart strategy gave up); another command failed in a way no code below names. */
  JOB_FAILED: 1,
  /** No command, an unknown command or option, or a missing or malformed argument. */
  USAGE: 64,
  /**
   * The data is wrong: a savepoint that cannot be rescaled, read or imported as asked; a topic that
   * exists already, or a partition count, replication factor or topic config the brokers refuse (the
   * message says why).
   */
  DATA_ERROR: 65,
  /**
   * The thing asked for is not there: no running service, no such checkpoint, topic or key; or no
   * Kafka broker answers (the message names the addresses tried).
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
