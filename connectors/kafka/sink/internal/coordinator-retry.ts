import { classifyKafkaError, kafkaError } from '../../errors.ts';

/** Time and randomness, injected so that tests run without sleeping. */
export interface RetryClock {
  now(): number;
  sleep(ms: number): Promise<void>;
  /** In [0, 1): spreads the retries of many tasks (full jitter on the upper half). */
  random(): number;
}

export const systemRetryClock: RetryClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

export interface CoordinatorRetryOptions {
  readonly clock: RetryClock;
  /** Give up when the next attempt would start after this time (ms on `clock`). */
  readonly deadline: number;
  /**
   * Whether the client can still take the call again. kafkajs ends its transaction when EndTxn
   * fails (its state machine stays in COMMITTING/ABORTING), so a retry there is impossible and the
   * error stands.
   */
  readonly canRetry?: () => boolean;
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Called before each backoff. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Run one coordinator call (begin, sendOffsets, commit, abort of a transaction), retrying it with
 * exponential backoff and jitter while it fails with a retriable error (the catalogue's `retriable`
 * flag, from classifyKafkaError: CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS,
 * NOT_COORDINATOR, REQUEST_TIMED_OUT, connection lost ...) and the deadline allows another attempt.
 * The error that ends it is a catalogued StreamError naming `what` and the attempts made.
 */
export async function withCoordinatorRetry<T>(
  what: string,
  call: () => Promise<T>,
  o: CoordinatorRetryOptions,
): Promise<T> {
  const initial = o.initialDelayMs ?? 50;
  const max = o.maxDelayMs ?? 2000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      const base = Math.min(max, initial * 2 ** (attempt - 1));
      const delay = Math.round(base / 2 + (base / 2) * o.clock.random());
      const retriable = classifyKafkaError(e).retriable;
      const clientCanRetry = o.canRetry?.() ?? true;
      if (!retriable || !clientCanRetry || o.clock.now() + delay > o.deadline) {
        const why = !retriable
          ? ''
          : !clientCanRetry
            ? ' (the client ended the transaction, so it cannot be retried)'
            : ` (gave up after ${attempt} attempt(s): the transaction timeout leaves no time for another)`;
        throw kafkaError(`${what}${why}`, e);
      }
      o.onRetry?.(e, attempt, delay);
      await o.clock.sleep(delay);
    }
  }
}
