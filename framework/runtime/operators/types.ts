import type { Clock } from '../../api/clock.ts';
import { StreamError } from '../../api/errors.ts';
import type { RuntimeInfo } from '../../api/functions.ts';
import type { KeyId } from '../../api/keys.ts';
import type { CheckpointCommitter } from '../../api/sink.ts';
import type { KeyedStateBackend } from '../../state/backend.ts';
import type { OperatorStateSnapshot } from '../../state/operator-state.ts';

/**
 * The runtime side of an operator: what a task calls. Every member is required except the sink's
 * three (`committer`, `flush`, `ready`); the interface has no defaults, StatelessOperator
 * (stateless.ts) gives operators without state or timers no-op hooks, and FunctionOperator
 * (process.ts) implements them all. The task calls every member on its own turn, never from a promise
 * continuation: `open` while it restores, `abort` when it is torn down, the rest from its loop; the
 * asynchronous ones (`flush`, `notifyComplete`) are started there and their outcome comes back
 * through the task's mailbox, while records go on being processed. `snapshot` is the synchronous
 * part of a checkpoint: it returns plain data that no later processing changes.
 */
export interface RuntimeOperator {
  readonly uid: string;
  open(restored: OperatorSnapshot | undefined): Promise<void>;
  process(input: number, value: unknown, timestamp: number | undefined): void;
  /** The operator's combined input watermark advanced to `watermark`: fire due event-time timers. */
  advanceWatermark(watermark: number): void;
  /** Fire processing-time timers due at `now`. */
  fireProcessingTimers(now: number): void;
  /** Earliest pending processing-time timer, if any. */
  nextProcessingTimer(): number | undefined;
  snapshot(checkpointId: number): OperatorSnapshot;
  notifyComplete(checkpointId: number): Promise<void>;
  notifyAborted(checkpointId: number): void;
  /** Orderly end (after the final checkpoint). */
  close(): Promise<void>;
  /** Failure or cancellation: drop uncommitted work. Must not throw. */
  abort(): Promise<void>;
  /** The checkpoint committer of a sink that commits checkpoints itself. */
  committer?(): CheckpointCommitter | undefined;
  /** Asynchronous part of checkpoint n, before it commits (sinks flush what they prepared). */
  flush?(checkpointId: number): Promise<void>;
  /** Backpressure from a sink: a promise while it cannot take more records. */
  ready?(): Promise<void> | undefined;
}

/** The part of a task snapshot that belongs to one operator. Plain, serializable data. */
export interface OperatorSnapshot {
  timers?: { event: [number, KeyId][]; processing: [number, KeyId][] };
  operatorState?: OperatorStateSnapshot;
  raw?: Uint8Array;
  /** Sink committables not yet committed, by checkpoint id, oldest first. */
  committables?: [number, unknown][];
}

/** Where an operator sends its output: downstream operators, synchronously. */
export interface Emitter {
  emit(value: unknown, timestamp: number | undefined): void;
  side(tag: string, value: unknown, timestamp: number | undefined): void;
  /** Count a record the operator dropped for being late (ProcessContext.lateRecordDropped); sends nothing. */
  dropLate(): void;
}

/** What a task gives each operator it creates. */
export interface OperatorEnv {
  readonly info: RuntimeInfo;
  readonly clock: Clock;
  /** The task's keyed backend with state names scoped to this operator. */
  readonly keyed: KeyedStateBackend;
  readonly out: Emitter;
  /** The operator's current combined input watermark. */
  watermark(): number;
  /** The uid of the source whose record is being processed (undefined in timers, and in tests). */
  readonly currentSource?: () => string | undefined;
  /**
   * A record error: this operator cannot take the record being processed (a key outside the task's
   * key group). The policy of the source it came from decides: true when the record was skipped or
   * dead-lettered (the operator drops it), otherwise the error to fail the task with (the source may
   * say more than `error` does, e.g. the record's offset). Absent: the operator throws `error`.
   */
  readonly recordError?: (error: StreamError, keyBytes: Uint8Array) => true | StreamError;
}

/**
 * Run a user function; wrap what it throws as USER_FUNCTION_FAILED naming the operator (errors
 * that are already StreamErrors, e.g. from a downstream operator, pass through unchanged).
 */
export function failUser(uid: string, what: string, e: unknown): never {
  if (e instanceof StreamError) throw e;
  const msg = e instanceof Error ? e.message : String(e);
  throw new StreamError('USER_FUNCTION_FAILED', `operator '${uid}' failed in ${what}: ${msg}`, { cause: e });
}
