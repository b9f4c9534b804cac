import { pack, unpack } from 'msgpackr';
import { StreamError } from '../api/errors.ts';
import type { CheckpointPointer } from '../api/sink.ts';
import { decodePointedMetadata } from '../checkpoint/storage/pointer-codec.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import type {
  CheckpointFiles,
  KeyedStateBackend,
  KeyedStateHandle,
  KeyedStateSnapshot,
} from '../state/backend.ts';
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
  /**
   * The stage's partitioner (`partitionerName`: 'murmur2', 'crc32', 'fnv1a', or 'custom[:name]'),
   * with which its keys were placed in key groups; a rescale re-hashes with it. Absent in snapshots
   * from before it was recorded: murmur2.
   */
  readonly partitioner?: string;
  readonly backend: string;
  readonly unaligned: boolean;
  readonly channels: readonly ChannelPosition[];
  /** Keyed state in the canonical format (savepoints, and backends without their own format)... */
  readonly keyedFile?: string;
  /** ... or in the backend's own format, possibly incremental. */
  readonly keyedHandle?: KeyedStateHandle;
  readonly operatorsFile: string;
  /**
   * The savepoint this task's run started from, carried on by every checkpoint after it: a task
   * asked to restore from that savepoint again (a restart, or its partition coming back after a
   * rebalance) takes its newest checkpoint instead, which has progressed past it.
   */
  readonly fromSavepoint?: string;
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
  /** Exactly one of `keyed` and `keyedHandle` is set. */
  readonly keyed: KeyedStateSnapshot | undefined;
  readonly keyedHandle: KeyedStateHandle | undefined;
  readonly operators: OperatorsFile;
}

/** The checkpoint files of one task and checkpoint attempt, as backends see them. */
export function checkpointFiles(
  storage: CheckpointStorage,
  scope: Scope,
  checkpointId: number,
  attempt: string,
): CheckpointFiles {
  return {
    write: (name, bytes) => storage.writeFile(scope, checkpointId, `${name}-${attempt}`, bytes),
    read: (ref) => storage.readFile(ref),
  };
}

/**
 * The canonical snapshot of keyed state a checkpoint holds in a backend's own format: restored into
 * a fresh backend of that kind (made by `open`), captured, materialized, and the backend closed.
 */
export async function materializeKeyedHandle(
  handle: KeyedStateHandle,
  files: CheckpointFiles,
  checkpointId: number,
  open: () => KeyedStateBackend | Promise<KeyedStateBackend>,
): Promise<KeyedStateSnapshot> {
  const backend = await open();
  try {
    await backend.restoreHandle!(handle, files);
    const capture = backend.capture(checkpointId);
    try {
      return await capture.materialize();
    } finally {
      capture.release();
    }
  } finally {
    await backend.close();
  }
}

export function writeKeyedFile(files: CheckpointFiles, keyed: KeyedStateSnapshot): Promise<FileRef> {
  return files.write('keyed', encodeKeyedSnapshot(keyed));
}

export function writeOperatorsFile(files: CheckpointFiles, operators: OperatorsFile): Promise<FileRef> {
  return files.write('operators', pack(operators));
}

/**
 * The metadata a committed checkpoint pointer names (a sink committed it with the task's output and
 * offsets: `CheckpointCommitter.latestCheckpoint`), decoded by the pointer codec and checked to be
 * that checkpoint of `taskId` (CHECKPOINT_CORRUPT otherwise).
 */
export async function readPointedMetadata(
  storage: CheckpointStorage,
  pointer: CheckpointPointer,
  taskId: string,
): Promise<CheckpointMetadata> {
  const { checkpointId, ...ref } = pointer;
  return decodePointedMetadata(await storage.readFile(ref), { checkpointId, taskId, path: ref.path });
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
  let keyed: KeyedStateSnapshot | undefined;
  if (payload.keyedFile !== undefined) {
    keyed = decodeKeyedSnapshot(await storage.readFile(file(payload.keyedFile)), payload.keyedFile);
  } else if (payload.keyedHandle === undefined) {
    throw new StreamError(
      'CHECKPOINT_CORRUPT',
      `${what} of task ${meta.taskId} has no keyed state in its metadata`,
    );
  } else {
    for (const f of payload.keyedHandle.files) file(f.path);
  }
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
  return { meta, payload, keyed, keyedHandle: payload.keyedHandle, operators };
}
