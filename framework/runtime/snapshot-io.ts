import { pack, unpack } from 'msgpackr';
import { StreamError } from '../api/errors.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import type { KeyedStateSnapshot } from '../state/backend.ts';
import { decodeKeyedSnapshot, encodeKeyedSnapshot } from '../state/snapshot-codec.ts';
import type { InflightRecord } from './channel.ts';
import type { OperatorSnapshot } from './operators/types.ts';

/** Format version of the task payload and operators file; restore refuses others. */
export const TASK_SNAPSHOT_FORMAT = 1;

/** Where one input channel resumes. */
export interface ChannelPosition {
  readonly source: string;
  readonly partition: number;
  readonly position: unknown;
  /** Number of in-flight records stored in the operators file (unaligned checkpoints). */
  readonly inflight: number;
}

/** The runtime's part of checkpoint metadata (`CheckpointMetadata.payload`). */
export interface TaskPayload {
  readonly format: number;
  readonly stage: string;
  readonly partition: number;
  readonly partitions: number;
  readonly backend: string;
  readonly unaligned: boolean;
  readonly channels: readonly ChannelPosition[];
  readonly keyedFile: string;
  readonly operatorsFile: string;
}

/** Content of the operators file: operator snapshots and channel state. */
export interface OperatorsFile {
  readonly format: number;
  readonly operators: Record<string, OperatorSnapshot>;
  /** In-flight records per channel, same order as `TaskPayload.channels`. */
  readonly inflight: readonly (readonly InflightRecord[])[];
}

export interface RestoredTask {
  readonly meta: CheckpointMetadata;
  readonly payload: TaskPayload;
  readonly keyed: KeyedStateSnapshot;
  readonly operators: OperatorsFile;
}

export async function writeTaskFiles(
  storage: CheckpointStorage,
  scope: Scope,
  checkpointId: number,
  attempt: string,
  keyed: KeyedStateSnapshot,
  operators: OperatorsFile,
): Promise<{ keyed: FileRef; operators: FileRef }> {
  const keyedRef = await storage.writeFile(
    scope,
    checkpointId,
    `keyed-${attempt}`,
    encodeKeyedSnapshot(keyed),
  );
  const opsRef = await storage.writeFile(scope, checkpointId, `operators-${attempt}`, pack(operators));
  return { keyed: keyedRef, operators: opsRef };
}

/** Load and check everything a task needs to restore from `meta`. Never returns partial state. */
export async function readTaskSnapshot(
  storage: CheckpointStorage,
  meta: CheckpointMetadata,
): Promise<RestoredTask> {
  const what = meta.savepoint ? `savepoint '${meta.savepoint}'` : `checkpoint ${meta.checkpointId}`;
  const payload = meta.payload as TaskPayload;
  if (payload?.format !== TASK_SNAPSHOT_FORMAT) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `${what} of task ${meta.taskId} has task format ${JSON.stringify(payload?.format)}; this build reads format ${TASK_SNAPSHOT_FORMAT}`,
    );
  }
  const file = (path: string): FileRef => {
    const ref = meta.files.find((f) => f.path === path);
    if (!ref)
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `${what} of task ${meta.taskId} does not list its file ${path}`,
      );
    return ref;
  };
  const keyed = decodeKeyedSnapshot(await storage.readFile(file(payload.keyedFile)), payload.keyedFile);
  let operators: OperatorsFile;
  try {
    operators = unpack(await storage.readFile(file(payload.operatorsFile))) as OperatorsFile;
  } catch (e) {
    if (e instanceof StreamError) throw e;
    throw new StreamError(
      'CHECKPOINT_CORRUPT',
      `operators file ${payload.operatorsFile} of ${what} cannot be decoded`,
      { cause: e },
    );
  }
  if (operators?.format !== TASK_SNAPSHOT_FORMAT) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `operators file ${payload.operatorsFile} has format ${JSON.stringify(operators?.format)}`,
    );
  }
  return { meta, payload, keyed, operators };
}
