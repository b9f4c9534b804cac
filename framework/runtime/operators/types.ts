import type { Clock } from '../../api/clock.ts';
import { StreamError } from '../../api/errors.ts';
import type { RuntimeInfo } from '../../api/functions.ts';
import type { KeyId } from '../../api/keys.ts';
import type { CheckpointCommitter } from '../../api/sink.ts';
import type { RecordErrorPolicy } from '../../api/source.ts';
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
   * A record error: this operator cannot take the record being processed. A key outside the task's
   * key group (`user` absent): the policy of the source it came from decides. A user function threw
   * on it (`user`: the operator's own `onError`, if it has one, else the job's onUserFunctionError).
   * True when the record was skipped or dead-lettered (the operator drops it), otherwise the error to
   * fail the task with (the source may say more than `error` does, e.g. the record's offset).
   * Absent: the operator throws `error`.
   */
  readonly recordError?: RecordErrorHook;
  /** This operator's own policy for records its user function throws on (`onError`). */
  readonly onError?: RecordErrorPolicy;
}

export type RecordErrorHook = (
  error: StreamError,
  keyBytes: Uint8Array,
  user?: { readonly operator: string; readonly policy: RecordErrorPolicy | undefined },
) => true | StreamError;

/**
 * Run a user function; wrap what it throws as USER_FUNCTION_FAILED naming the operator (errors
 * that are already StreamErrors, e.g. from a downstream operator, pass through unchanged).
 */
export function failUser(uid: string, what: string, e: unknown): never {
  if (e instanceof StreamError) throw e;
  const msg = e instanceof Error ? e.message : String(e);
  throw new StreamError('USER_FUNCTION_FAILED', `operator '${uid}' failed in ${what}: ${msg}`, { cause: e });
}

/** Errors that escaped a downstream operator (its own policy already decided them): see `passOn`. */
const fromDownstream = new WeakSet<object>();

/**
 * An error that escapes an operator's `process` on its way upstream: marked, so that the upstream
 * operator whose function was emitting (a process function's collector) passes it on instead of
 * taking it for its own function's error. Returns what to throw.
 */
export function passOn(e: unknown): unknown {
  const error = typeof e === 'object' && e !== null ? e : new StreamError('USER_FUNCTION_FAILED', String(e));
  fromDownstream.add(error);
  return error;
}

/**
 * A user function of operator `uid` threw `e` in `what` while processing a record: a record error
 * under the operator's policy (`env.recordError`). Returns when the record was skipped or
 * dead-lettered (the operator drops it); throws otherwise: the error from a downstream operator as it
 * is, an error of a permanent code as it is (never skipped: GRAPH_INVALID, a misconfiguration), else
 * the policy's error (USER_FUNCTION_FAILED naming the operator and what threw; a StreamError the
 * function threw keeps its code).
 */
export function userRecordError(
  env: OperatorEnv,
  uid: string,
  what: string,
  e: unknown,
  keyBytes: Uint8Array = NO_KEY,
): void {
  if (typeof e === 'object' && e !== null && fromDownstream.has(e)) throw e;
  if (e instanceof StreamError && e.permanent) throw e;
  const error = new StreamError(
    e instanceof StreamError ? e.code : 'USER_FUNCTION_FAILED',
    `operator '${uid}' failed in ${what}: ${e instanceof Error ? e.message : String(e)}`,
    { cause: e },
  );
  if (env.recordError === undefined) throw error;
  const verdict = env.recordError(error, keyBytes, { operator: uid, policy: env.onError });
  if (verdict !== true) throw verdict;
}

const NO_KEY = new Uint8Array(0);
