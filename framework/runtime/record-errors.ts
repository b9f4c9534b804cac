import type { StreamError } from '../api/errors.ts';
import type { RecordErrorPolicy } from '../api/source.ts';
import type { InputChannel } from './channel.ts';
import type { TaskListener } from './listener.ts';
import type { OperatorWiring } from './wiring.ts';

/** The record the task is emitting now: the channel it came from, its origin and its timestamp. */
export interface CurrentRecord {
  channel?: InputChannel | undefined;
  origin?: unknown;
  timestamp?: number | undefined;
}

export interface RecordErrorContext {
  readonly taskId: string;
  readonly wiring: OperatorWiring;
  /** The job's policy for records a user function throws on (`onUserFunctionError`). */
  readonly defaultPolicy: RecordErrorPolicy | undefined;
  readonly listener: TaskListener | undefined;
}

/**
 * A record error raised by an operator while it processes the record being emitted (`current`). A
 * key outside the key group: the source the record came from decides (`Source.rejected`). A user
 * function threw (`user`): the operator's policy, else the job's onUserFunctionError, applied by
 * that source (it knows the record: a dead letter carries it, a failure names it); skipped and
 * dead-lettered ones are reported (`TaskListener.recordFailed`). A dead letter goes on the source's
 * side output (same task, same checkpoint). Returns true when the record was taken care of,
 * otherwise the error to fail with. Without a source record (one emitted by a timer) or a source
 * that takes rejections, only `skip` takes it.
 */
export function handleRecordError(
  ctx: RecordErrorContext,
  current: CurrentRecord,
  error: StreamError,
  keyBytes: Uint8Array,
  user?: { readonly operator: string; readonly policy: RecordErrorPolicy | undefined },
): true | StreamError {
  const policy = user === undefined ? undefined : (user.policy ?? ctx.defaultPolicy);
  const verdict = verdictOf(ctx.wiring, current, error, keyBytes, policy);
  if (verdict === true && user !== undefined && policy !== undefined && policy !== 'fail')
    ctx.listener?.recordFailed?.({ taskId: ctx.taskId, operator: user.operator, policy, error });
  return verdict;
}

function verdictOf(
  wiring: OperatorWiring,
  cur: CurrentRecord,
  error: StreamError,
  keyBytes: Uint8Array,
  policy: RecordErrorPolicy | undefined,
): true | StreamError {
  const uid = cur.channel?.sourceUid;
  const source = uid === undefined ? undefined : wiring.sources.find((s) => s.uid === uid)?.source;
  const verdict =
    cur.channel === undefined
      ? undefined
      : source?.rejected?.({
          error,
          keyBytes,
          origin: cur.origin,
          partition: cur.channel.partition,
          ...(policy === undefined ? {} : { policy }),
        });
  switch (verdict?.kind) {
    case undefined:
      return policy === 'skip' ? true : error;
    case 'fail':
      return verdict.error;
    case 'skip':
      return true;
    case 'emit':
      wiring.emitFromSource(uid!, verdict.value, cur.timestamp, verdict.tag);
      return true;
  }
}
