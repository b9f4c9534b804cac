/**
 * Retrying registry calls: exponential backoff with jitter, a bound per attempt (the HTTP timeout, set
 * by the caller) and a bound on the whole (`maxElapsedMs`), one log line per failed attempt. Time comes
 * from an injected Clock so tests drive it.
 */
import type { Clock } from '../../../framework/index.ts';

export interface RetryPolicy {
  /** Delay after the first failed attempt. */
  readonly initialDelayMs: number;
  /** Each further delay is the previous one times this. */
  readonly multiplier: number;
  readonly maxDelayMs: number;
  /** Each delay is moved by up to this fraction up or down at random, so tasks do not retry in step. */
  readonly jitter: number;
  /** Bound of one HTTP attempt (connect to last byte). */
  readonly attemptTimeoutMs: number;
  /**
   * Give up when the next attempt would start later than this after the first one. The caller then
   * gets RegistryUnavailableError, which the source treats as retryable (the task backs off and tries
   * again): never a skip. `Infinity` retries inside the serde for ever.
   */
  readonly maxElapsedMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  initialDelayMs: 100,
  multiplier: 2,
  maxDelayMs: 5_000,
  jitter: 0.2,
  attemptTimeoutMs: 5_000,
  maxElapsedMs: 30_000,
};

/** The delay after failed attempt `attempt` (1-based); `random` in [0, 1). Pure. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: number): number {
  const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.multiplier ** (attempt - 1));
  const spread = base * policy.jitter * (2 * random - 1);
  return Math.max(0, Math.round(base + spread));
}

export type Classified = { readonly transient: true; readonly why: string } | { readonly transient: false };

export interface RetryContext {
  readonly policy: RetryPolicy;
  readonly clock: Clock;
  readonly random: () => number;
  readonly log: (line: string) => void;
  /** e.g. `GET /schemas/ids/7`, for the log line and the final error. */
  readonly operation: string;
  readonly classify: (error: unknown) => Classified;
  /** The error thrown when the budget is spent. */
  readonly giveUp: (facts: {
    attempts: number;
    elapsedMs: number;
    lastError: string;
    cause: unknown;
  }) => Error;
}

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => {
    clock.schedule(clock.now() + ms, resolve);
  });
}

/** Runs `attempt` until it succeeds, fails for good (not transient: rethrown as is), or the budget is spent. */
export async function retrying<T>(attempt: () => Promise<T>, context: RetryContext): Promise<T> {
  const { policy, clock } = context;
  const started = clock.now();
  for (let attempts = 1; ; attempts++) {
    try {
      return await attempt();
    } catch (error) {
      const classified = context.classify(error);
      if (!classified.transient) throw error;
      const delay = backoffDelay(policy, attempts, context.random());
      const elapsedMs = clock.now() - started;
      if (elapsedMs + delay > policy.maxElapsedMs) {
        context.log(
          `schema registry: ${context.operation} failed (${classified.why}), attempt ${attempts}; giving up after ${elapsedMs} ms`,
        );
        throw context.giveUp({ attempts, elapsedMs, lastError: classified.why, cause: error });
      }
      context.log(
        `schema registry: ${context.operation} failed (${classified.why}), attempt ${attempts}; retrying in ${delay} ms`,
      );
      await sleep(clock, delay);
    }
  }
}
