import type { CheckpointConfig, RestartStrategy } from '../api/config.ts';

/**
 * Checkpoint and restart decisions as pure functions over observed facts (as Arroyo's
 * state protocol and Flink's CheckpointRequestDecider): no I/O, no clock of their own.
 */

export interface TriggerFacts {
  readonly now: number;
  /** When the last checkpoint was triggered (or the task started). */
  readonly lastTriggerAt: number;
  /** When the last checkpoint completed, if any did. */
  readonly lastCompletedAt: number | undefined;
  /** Checkpoints triggered and neither completed nor aborted. */
  readonly inFlight: number;
  /** A checkpoint is still aligning (its barriers have not all arrived). */
  readonly aligning: boolean;
  /**
   * Nothing happened since the last trigger, and that checkpoint completed in this run: no record,
   * timer or watermark step, no source position moved. Its commit still stands for the state as it
   * is, so a periodic checkpoint would commit the same thing again (Kafka Streams' "commit needed").
   */
  readonly unchanged?: boolean;
}

export type TriggerDecision =
  | { readonly trigger: true }
  | { readonly trigger: false; readonly retryAt: number | undefined };

/** Whether to trigger the next periodic checkpoint now, or when to ask again. */
export function decideTrigger(f: TriggerFacts, c: CheckpointConfig): TriggerDecision {
  if (c.intervalMs === 0) return { trigger: false, retryAt: undefined };
  if (f.aligning || f.inFlight >= c.maxConcurrent) return { trigger: false, retryAt: undefined };
  const due = Math.max(
    f.lastTriggerAt + c.intervalMs,
    f.lastCompletedAt === undefined ? 0 : f.lastCompletedAt + c.minPauseMs,
  );
  if (f.now < due) return { trigger: false, retryAt: due };
  // Idle: no checkpoint, no transaction. Look again an interval later (a moved position does not
  // wake the task; a record does).
  if (f.unchanged === true) return { trigger: false, retryAt: f.now + c.intervalMs };
  return { trigger: true };
}

/**
 * Where in the interval a task's periodic checkpoints fall, in [0, 1): spread, so that the tasks of
 * an instance, started together after a rebalance, do not all commit at the same moment. A task id
 * `<stage>-p<n>` takes its stage's place (a hash) plus n times the golden ratio's fraction: the
 * partitions of a stage fall evenly over the interval, whatever their count (0, 0.62, 0.24, 0.85 ...
 * after the stage's place). Other ids take a hash of their own. (A plain FNV-1a of the whole id put
 * the partitions of a stage within 1% of the interval of each other: their ids differ in the last
 * character only.)
 */
export function checkpointPhase(taskId: string): number {
  const m = /^(.*)-p(\d+)$/.exec(taskId);
  if (m === null) return unitHash(taskId);
  const x = unitHash(m[1]!) + Number(m[2]) * GOLDEN_FRACTION;
  return x - Math.floor(x);
}

const GOLDEN_FRACTION = (Math.sqrt(5) - 1) / 2;

/** FNV-1a, then murmur3's finalizer (every input bit moves every output bit), scaled to [0, 1). */
function unitHash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

/** The outcome of a failed checkpoint: go on, or fail the task (too many in a row). */
export function decideOnCheckpointFailure(
  consecutiveFailures: number,
  c: CheckpointConfig,
): 'continue' | 'fail-task' {
  return consecutiveFailures > c.tolerableFailures ? 'fail-task' : 'continue';
}

export interface RestartFacts {
  /** Restarts already made in the current window (fixed-delay: in total; backoff: since the last reset). */
  readonly restarts: number;
  /** How long the failed attempt ran. */
  readonly ranForMs: number;
  /**
   * The failure is permanent (its error's code is in PERMANENT_CODES): a restart from the last
   * checkpoint would replay the same input and fail the same way.
   */
  readonly permanent?: boolean;
  /** failure-rate: when the task's earlier counted failures happened (clock ms), and now. */
  readonly failureTimes?: readonly number[];
  readonly now?: number;
}

export type RestartDecision =
  | { readonly restart: true; readonly delayMs: number; readonly restarts: number }
  /** `permanent`: not restarted because no restart can help; the job fails with the error itself. */
  | { readonly restart: false; readonly permanent?: boolean };

/**
 * Whether and when to restart a failed task. `restarts` in the answer is the new count. A permanent
 * failure is never restarted, whatever the strategy: restarting it would loop forever.
 */
export function decideRestart(s: RestartStrategy, f: RestartFacts): RestartDecision {
  if (f.permanent === true) return { restart: false, permanent: true };
  switch (s.kind) {
    case 'none':
      return { restart: false };
    case 'fixed-delay':
      return f.restarts < s.attempts
        ? { restart: true, delayMs: s.delayMs, restarts: f.restarts + 1 }
        : { restart: false };
    case 'failure-rate': {
      const now = f.now ?? 0;
      const within = (f.failureTimes ?? []).filter((t) => t > now - s.intervalMs).length + 1;
      return within <= s.maxFailures
        ? { restart: true, delayMs: s.delayMs, restarts: within }
        : { restart: false };
    }
    case 'exponential-backoff': {
      const restarts = f.ranForMs >= (s.resetAfterMs ?? 60_000) ? 0 : f.restarts;
      if (s.maxAttempts !== undefined && restarts >= s.maxAttempts) return { restart: false };
      return { restart: true, delayMs: restartDelay(s, restarts), restarts: restarts + 1 };
    }
  }
}

/**
 * The delay before restart number `n + 1` of a streak under strategy `s` (fixed: its delay; backoff:
 * growing to its maximum). Also the delay of a transient failure's restart, which no strategy limits
 * (`failureClass`: the job keeps its own streak of those).
 */
export function restartDelay(s: RestartStrategy, n: number): number {
  switch (s.kind) {
    case 'none':
      return 0;
    case 'fixed-delay':
    case 'failure-rate':
      return s.delayMs;
    case 'exponential-backoff':
      return Math.min(s.maxDelayMs, s.initialDelayMs * s.multiplier ** n);
  }
}

/** Where a task restores from when it starts. */
export type RestoreFrom =
  | { readonly kind: 'latest' }
  | { readonly kind: 'savepoint'; readonly name: string }
  | { readonly kind: 'checkpoint'; readonly checkpointId: number };

/** What a task knows when it starts, before it reads any snapshot. */
export interface RestoreFacts {
  readonly from: RestoreFrom;
  /**
   * The task's sink commits its checkpoints (a CheckpointCommitter: the Kafka transaction carries
   * output, input positions and the pointer to the checkpoint). Its output up to the newest
   * checkpoint is committed, so an older checkpoint would emit it again.
   */
  readonly committer: boolean;
  /**
   * The newest committed checkpoint: the one the committer's pointer names, else the storage's
   * newest; with the savepoint its run started from (`TaskPayload.fromSavepoint`). Undefined when
   * there is none, and not looked up for `from.kind === 'checkpoint'`.
   */
  readonly newest: { readonly checkpointId: number; readonly fromSavepoint: string | undefined } | undefined;
  readonly restoreFallback: 'refuse' | 'previous';
}

/** The checkpoint (or savepoint) a task restores first. */
export type RestoreTarget =
  | { readonly kind: 'empty' }
  | { readonly kind: 'newest' }
  | { readonly kind: 'savepoint'; readonly name: string }
  | { readonly kind: 'checkpoint'; readonly checkpointId: number };

/**
 * When the target's files are corrupt or missing (CHECKPOINT_CORRUPT, CHECKPOINT_NOT_FOUND):
 * - `refuse`: fail with that error (a savepoint or a checkpoint asked for by id; a committer's task
 *   left at the default);
 * - `refuse-suggest-previous`: fail, saying that `checkpoints.restoreFallback = 'previous'` would
 *   restore the newest older intact checkpoint;
 * - `refuse-committed`: fail, saying why the fallback cannot apply (the output is committed);
 * - `older`: restore the newest older retained checkpoint that is intact, with a warning.
 */
export type OnDamagedRestore = 'refuse' | 'refuse-suggest-previous' | 'refuse-committed' | 'older';

export interface RestorePlan {
  readonly target: RestoreTarget;
  readonly onDamaged: OnDamagedRestore;
  /**
   * The savepoint lineage the run's checkpoints carry (`TaskPayload.fromSavepoint`): the named
   * savepoint, or `carried` on from the checkpoint restored (an instance started without the
   * savepoint may hold the partition in between).
   */
  readonly lineage: { readonly kind: 'savepoint'; readonly name: string } | { readonly kind: 'carried' };
}

/**
 * The restore choice. A savepoint restores the newest committed checkpoint instead once the run has
 * checkpointed past it (its lineage names the savepoint): restoring the savepoint again would emit
 * the output since then a second time. `latest` restores the newest committed checkpoint, or starts
 * empty when there is none. It never starts empty when a savepoint or a checkpoint was asked for.
 */
export function decideRestore(f: RestoreFacts): RestorePlan {
  const carried = { kind: 'carried' } as const;
  switch (f.from.kind) {
    case 'savepoint': {
      const { name } = f.from;
      const past = f.newest !== undefined && f.newest.fromSavepoint === name;
      return {
        target: past ? { kind: 'newest' } : { kind: 'savepoint', name },
        onDamaged: 'refuse',
        lineage: { kind: 'savepoint', name },
      };
    }
    case 'checkpoint':
      return {
        target: { kind: 'checkpoint', checkpointId: f.from.checkpointId },
        onDamaged: 'refuse',
        lineage: carried,
      };
    case 'latest': {
      const onDamaged: OnDamagedRestore =
        f.restoreFallback === 'previous'
          ? f.committer
            ? 'refuse-committed'
            : 'older'
          : f.committer
            ? 'refuse'
            : 'refuse-suggest-previous';
      return {
        target: f.newest === undefined ? { kind: 'empty' } : { kind: 'newest' },
        onDamaged,
        lineage: carried,
      };
    }
  }
}

/** Whether a restore that failed with `code` failed on a damaged checkpoint (a file corrupt or missing). */
export function isDamagedCheckpoint(code: string | undefined): boolean {
  return code === 'CHECKPOINT_CORRUPT' || code === 'CHECKPOINT_NOT_FOUND';
}

/**
 * The first checkpoint id of a run: after the checkpoint restored and after the highest id the
 * storage holds for the task, so no id is used twice (a failed run may have written files under ids
 * above the restored one).
 */
export function firstCheckpointId(
  restoredId: number | undefined,
  storageLatestId: number | undefined,
): number {
  return Math.max(restoredId ?? 0, storageLatestId ?? 0) + 1;
}
