import { pack, unpack } from 'msgpackr';
import { StreamError } from '../api/errors.ts';
import type { CheckpointCommitter, CheckpointPointer } from '../api/sink.ts';
import { decodePointedMetadata, encodePointedMetadata } from '../checkpoint/storage/pointer-codec.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import type {
  CheckpointFiles,
  KeyedStateBackend,
  KeyedStateCapture,
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
  /**
   * The highest event timestamp the task had taken from the channel when the snapshot was taken
   * (absent: none). A restore gives it back to the watermark valve, so event time resumes where the
   * snapshot left it: timers due at that watermark fire although no record follows, and a record
   * late before the failure is late after it.
   */
  readonly eventTime?: number;
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

/** The payload fields a task's checkpoints share (stage, partitions, backend, lineage ...). */
export type TaskPayloadBase = Omit<
  TaskPayload,
  'unaligned' | 'channels' | 'keyedFile' | 'keyedHandle' | 'operatorsFile'
>;

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

/** What the asynchronous part of checkpoint `checkpointId` writes (see writeCheckpointFiles). */
export interface CheckpointWrite {
  readonly storage: CheckpointStorage;
  readonly scope: Scope;
  readonly jobId: string;
  readonly attempt: string;
  readonly checkpointId: number;
  readonly capture: KeyedStateCapture;
  /** Keyed state in the backend's own format where it has one (not for savepoints: canonical). */
  readonly ownFormat: boolean;
  /** The incremental base: the previous capture's handle once its checkpoint settled (undefined: full). */
  readonly base: Promise<KeyedStateHandle | undefined> | undefined;
  readonly payload: TaskPayloadBase & Pick<TaskPayload, 'unaligned' | 'channels'>;
  readonly operators: OperatorsFile['operators'];
  readonly inflight: OperatorsFile['inflight'];
  /** Also write the metadata as a file of the checkpoint, for a committer's pointer (pointer codec). */
  readonly pointedMetadata: boolean;
}

/**
 * The files of one checkpoint: keyed state (the backend's own format, possibly incremental, or the
 * canonical keyed file), the operators file, and with `pointedMetadata` the metadata file a
 * committer's pointer names (then last in `meta.files`). Returns the metadata to commit.
 */
export async function writeCheckpointFiles(w: CheckpointWrite): Promise<{
  meta: CheckpointMetadata;
  handle: KeyedStateHandle | undefined;
  pointedFile: FileRef | undefined;
}> {
  const files = checkpointFiles(w.storage, w.scope, w.checkpointId, w.attempt);
  let keyedFile: FileRef | undefined;
  let handle: KeyedStateHandle | undefined;
  // The keyed state and the operators file are independent: written at once (each is a write and an
  // fsync), so a checkpoint waits for the slower of the two, then for the metadata naming both.
  const keyed = (async () => {
    if (w.capture.writeCheckpoint && w.ownFormat) {
      handle = await w.capture.writeCheckpoint(files, w.base === undefined ? undefined : await w.base);
    } else {
      keyedFile = await writeKeyedFile(files, await w.capture.materialize());
    }
  })();
  const operators = writeOperatorsFile(files, {
    format: TASK_SNAPSHOT_FORMAT,
    operators: w.operators,
    inflight: w.inflight,
  });
  const [k, o] = await Promise.allSettled([keyed, operators]);
  if (k.status === 'rejected') throw k.reason;
  if (o.status === 'rejected') throw o.reason;
  const operatorsFile = o.value;
  const payload: TaskPayload = {
    ...w.payload,
    ...(keyedFile ? { keyedFile: keyedFile.path } : { keyedHandle: handle }),
    operatorsFile: operatorsFile.path,
  };
  let meta: CheckpointMetadata = {
    formatVersion: 1,
    jobId: w.jobId,
    taskId: w.scope.taskId,
    checkpointId: w.checkpointId,
    timestamp: Date.now(),
    files: [...(keyedFile ? [keyedFile] : handle!.files), operatorsFile],
    type: handle?.type ?? 'full',
    payload,
  };
  let pointedFile: FileRef | undefined;
  if (w.pointedMetadata) {
    pointedFile = await files.write('metadata', encodePointedMetadata(meta));
    meta = { ...meta, files: [...meta.files, pointedFile] };
  }
  return { meta, handle, pointedFile };
}

/** A commit's outcome: the metadata committed (with a savepoint's name), and what failed after it. */
export interface Committed {
  readonly meta: CheckpointMetadata;
  /** The storage index after a committer's commit (listing and retention; the checkpoint stands). */
  readonly indexError: { readonly error: unknown } | undefined;
  /** A savepoint's second metadata (the checkpoint stands; the savepoint request fails). */
  readonly savepointError: { readonly error: unknown } | undefined;
}

/**
 * Commit checkpoint `meta`: with a committer, its transaction is the commit (output, the input
 * positions, broadcast inputs excluded, and the pointer to `pointedFile`), and the storage index
 * follows; without one, the storage's metadata commit. Then, for a savepoint, a second metadata over
 * the same files. Resolves with `{ error }` when the commit itself failed.
 */
export async function commitCheckpoint(c: {
  readonly storage: CheckpointStorage;
  readonly meta: CheckpointMetadata;
  readonly savepoint: string | undefined;
  readonly committer?: CheckpointCommitter;
  readonly pointedFile?: FileRef;
  readonly broadcastUids?: ReadonlySet<string>;
}): Promise<Committed | { readonly error: unknown }> {
  let meta = c.meta;
  try {
    if (c.committer) {
      await c.committer.commitCheckpoint({
        checkpointId: meta.checkpointId,
        positions: (meta.payload as TaskPayload).channels
          .filter((ch) => !c.broadcastUids?.has(ch.source))
          .map((ch) => ({ source: ch.source, partition: ch.partition, position: ch.position })),
        pointer: { checkpointId: meta.checkpointId, ...c.pointedFile! },
      });
    } else {
      await c.storage.commit(meta);
    }
  } catch (error) {
    return { error };
  }
  const failed = (p: Promise<void>) =>
    p.then(
      () => undefined,
      (error: unknown) => ({ error }),
    );
  const indexError = c.committer ? await failed(c.storage.commit(meta)) : undefined;
  let savepointError: { error: unknown } | undefined;
  if (c.savepoint !== undefined) {
    meta = { ...meta, savepoint: c.savepoint };
    savepointError = await failed(c.storage.commit(meta));
  }
  return { meta, indexError, savepointError };
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
