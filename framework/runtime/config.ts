import type { CheckpointConfig, RestartStrategy, RuntimeConfig } from '../api/config.ts';
import { StreamError } from '../api/errors.ts';
import type { RecordErrorPolicy } from '../api/source.ts';

export interface RuntimeConfigInput {
  readonly checkpoints?: Partial<CheckpointConfig>;
  readonly restart?: RestartStrategy;
  readonly channelCapacity?: number;
  readonly pollBatch?: number;
  /** See RuntimeConfig.allowNonRestoredState. Default false. */
  readonly allowNonRestoredState?: boolean;
  /** See RuntimeConfig.onUserFunctionError. Default 'fail'. */
  readonly onUserFunctionError?: RecordErrorPolicy;
}

export const DEFAULT_CHECKPOINTS: CheckpointConfig = {
  intervalMs: 1000,
  timeoutMs: 60_000,
  minPauseMs: 0,
  maxConcurrent: 1,
  tolerableFailures: 3,
  guarantee: 'exactly-once',
  unaligned: false,
  alignmentTimeoutMs: undefined,
  snapshot: 'async',
  incremental: false,
  restoreFallback: 'refuse',
  whenIdle: 'skip',
};

function bad(field: string, value: unknown, allowed: string): never {
  throw new StreamError('CONFIG_INVALID', `${field} is ${JSON.stringify(value)}; allowed: ${allowed}`);
}

function int(field: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) bad(field, v, `an integer >= ${min}`);
  return v;
}

/** Fill in defaults and validate; throws CONFIG_INVALID naming the field and the allowed values. */
export function resolveRuntimeConfig(input: RuntimeConfigInput = {}): RuntimeConfig {
  const c = { ...DEFAULT_CHECKPOINTS, ...input.checkpoints };
  int('checkpoints.intervalMs', c.intervalMs, 0);
  int('checkpoints.timeoutMs', c.timeoutMs, 1);
  int('checkpoints.minPauseMs', c.minPauseMs, 0);
  int('checkpoints.maxConcurrent', c.maxConcurrent, 1);
  int('checkpoints.tolerableFailures', c.tolerableFailures, 0);
  if (c.guarantee !== 'exactly-once' && c.guarantee !== 'at-least-once') {
    bad('checkpoints.guarantee', c.guarantee, "'exactly-once' | 'at-least-once'");
  }
  if (typeof c.unaligned !== 'boolean') bad('checkpoints.unaligned', c.unaligned, 'true | false');
  if (c.unaligned && c.guarantee === 'at-least-once') {
    bad(
      'checkpoints.unaligned',
      c.unaligned,
      "false when guarantee is 'at-least-once' (unaligned checkpoints are exactly-once)",
    );
  }
  if (c.alignmentTimeoutMs !== undefined) int('checkpoints.alignmentTimeoutMs', c.alignmentTimeoutMs, 0);
  if (c.snapshot !== 'async' && c.snapshot !== 'sync')
    bad('checkpoints.snapshot', c.snapshot, "'async' | 'sync'");
  if (c.restoreFallback !== 'refuse' && c.restoreFallback !== 'previous')
    bad('checkpoints.restoreFallback', c.restoreFallback, "'refuse' | 'previous'");
  if (c.whenIdle !== 'skip' && c.whenIdle !== 'checkpoint')
    bad('checkpoints.whenIdle', c.whenIdle, "'skip' | 'checkpoint'");
  const restart = input.restart ?? { kind: 'fixed-delay', attempts: 3, delayMs: 1000 };
  switch (restart.kind) {
    case 'none':
      break;
    case 'fixed-delay':
      int('restart.attempts', restart.attempts, 0);
      int('restart.delayMs', restart.delayMs, 0);
      break;
    case 'failure-rate':
      int('restart.maxFailures', restart.maxFailures, 0);
      int('restart.intervalMs', restart.intervalMs, 1);
      int('restart.delayMs', restart.delayMs, 0);
      break;
    case 'exponential-backoff':
      int('restart.initialDelayMs', restart.initialDelayMs, 0);
      int('restart.maxDelayMs', restart.maxDelayMs, restart.initialDelayMs);
      if (typeof restart.multiplier !== 'number' || !(restart.multiplier >= 1))
        bad('restart.multiplier', restart.multiplier, 'a number >= 1');
      if (restart.maxAttempts !== undefined) int('restart.maxAttempts', restart.maxAttempts, 0);
      if (restart.resetAfterMs !== undefined) int('restart.resetAfterMs', restart.resetAfterMs, 0);
      break;
    default:
      bad(
        'restart.kind',
        (restart as { kind: unknown }).kind,
        "'none' | 'fixed-delay' | 'exponential-backoff' | 'failure-rate'",
      );
  }
  const allow = input.allowNonRestoredState ?? false;
  if (typeof allow !== 'boolean') bad('allowNonRestoredState', allow, 'true | false');
  const onUserFunctionError = recordErrorPolicy('onUserFunctionError', input.onUserFunctionError ?? 'fail');
  return {
    allowNonRestoredState: allow,
    onUserFunctionError,
    checkpoints: c,
    restart,
    channelCapacity: int('channelCapacity', input.channelCapacity ?? 1024, 1),
    pollBatch: int('pollBatch', input.pollBatch ?? 256, 1),
  };
}

const POLICIES: readonly RecordErrorPolicy[] = ['fail', 'skip', 'dead-letter'];

/** A record-error policy, checked (CONFIG_INVALID naming `field` otherwise). */
export function recordErrorPolicy(field: string, p: unknown): RecordErrorPolicy {
  if (!POLICIES.includes(p as RecordErrorPolicy)) bad(field, p, "'fail' | 'skip' | 'dead-letter'");
  return p as RecordErrorPolicy;
}
