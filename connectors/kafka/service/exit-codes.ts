/**
 * Exit codes a supervisor can act on (sysexits.h where one fits). Documented in docs/service.md.
 */
export const EXIT = {
  OK: 0,
  /** The job failed (its restart strategy gave up). */
  JOB_FAILED: 1,
  /** Unknown command or option. */
  USAGE: 64,
  /** The data is wrong: a savepoint that cannot be rescaled, read or imported as asked (the message says why). */
  DATA_ERROR: 65,
  /** The thing asked for is not there (no running service, no such checkpoint). */
  UNAVAILABLE: 69,
  /** A port is in use, or another resource of the machine is missing. */
  OS_ERROR: 71,
  /** Bad configuration or job module. */
  CONFIG: 78,
  /** Stopped by a second signal or the shutdown deadline (nothing committed is lost). */
  FORCED: 130,
} as const;
