import { StreamError } from '../api/errors.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import type { KeyedStateBackend, KeyedStateSnapshot } from '../state/backend.ts';
import { builtinSerializer } from '../state/serializers.ts';
import { storedValueCodec } from '../state/value-codec.ts';
import {
  checkpointFiles,
  materializeKeyedHandle,
  readTaskSnapshot,
  type TaskPayload,
} from './snapshot-io.ts';

/** What `kstate inspect` prints about one task's checkpoint or savepoint. */
export interface CheckpointReport {
  readonly taskId: string;
  readonly checkpointId: number;
  readonly savepoint: string | undefined;
  readonly time: string;
  readonly type: 'full' | 'incremental';
  readonly bytes: number;
  readonly partition: number;
  readonly partitions: number;
  readonly backend: string;
  readonly channels: TaskPayload['channels'];
  readonly operators: readonly {
    uid: string;
    timers: number;
    operatorState: number;
    raw: number;
    committables: number;
  }[];
  readonly keyedStates: readonly {
    name: string;
    kind: string;
    serializer: string;
    entries: number;
    bytes: number;
  }[];
}

/**
 * Load one checkpoint (`checkpointId`), savepoint (`savepoint`) or the latest checkpoint of a task,
 * and describe it. Keyed state in a backend's own format (LevelDB handles) is read through
 * `openBackend`, restored into a scratch instance.
 */
export async function inspectCheckpoint(
  storage: CheckpointStorage,
  scope: Scope,
  which: { checkpointId?: number; savepoint?: string },
  openBackend?: (scope: Scope) => Promise<KeyedStateBackend>,
): Promise<{ report: CheckpointReport; keyed: KeyedStateSnapshot }> {
  const meta: CheckpointMetadata | undefined =
    which.savepoint !== undefined
      ? await storage.loadSavepoint(which.savepoint, scope)
      : which.checkpointId !== undefined
        ? await storage.load(scope, which.checkpointId)
        : await storage.latest(scope);
  if (!meta)
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `task ${scope.taskId} of job ${scope.jobId} has no committed checkpoint`,
    );
  const restored = await readTaskSnapshot(storage, meta);
  let keyed = restored.keyed;
  if (!keyed && restored.keyedHandle) {
    if (!openBackend) {
      throw new StreamError(
        'CONFIG_INVALID',
        `checkpoint ${meta.checkpointId} holds '${restored.keyedHandle.backend}' state: pass a backend to read it`,
      );
    }
    keyed = await materializeKeyedHandle(
      restored.keyedHandle,
      checkpointFiles(storage, scope, meta.checkpointId, 'inspect'),
      meta.checkpointId,
      () => openBackend(scope),
    );
  }
  const ops = restored.operators.operators;
  const report: CheckpointReport = {
    taskId: meta.taskId,
    checkpointId: meta.checkpointId,
    savepoint: meta.savepoint,
    time: new Date(meta.timestamp).toISOString(),
    type: meta.type,
    bytes: meta.files.reduce((s, f) => s + f.bytes, 0),
    partition: restored.payload.partition,
    partitions: restored.payload.partitions,
    backend: restored.payload.backend,
    channels: restored.payload.channels,
    operators: Object.entries(ops).map(([uid, o]) => ({
      uid,
      timers: (o.timers?.event.length ?? 0) + (o.timers?.processing.length ?? 0),
      operatorState: o.operatorState ? JSON.stringify(o.operatorState).length : 0,
      raw: o.raw?.length ?? 0,
      committables: o.committables?.length ?? 0,
    })),
    keyedStates: (keyed?.states ?? []).map((s) => ({
      name: s.meta.name,
      kind: s.meta.kind,
      serializer: `${s.meta.serializerId} v${s.meta.serializerVersion}`,
      entries: s.entries.length,
      bytes: s.entries.reduce((n, [, v]) => n + v.length, 0),
    })),
  };
  return { report, keyed: keyed ?? { formatVersion: 1, states: [] } };
}

/**
 * The value of one key of one keyed state (`<operator uid>/<state name>`) in a snapshot, decoded with
 * the state's built-in serializer; `undefined` when the key has no entry.
 */
export function keyedStateValue(keyed: KeyedStateSnapshot, state: string, keyIdOfKey: string): unknown {
  const s = keyed.states.find((x) => x.meta.name === state);
  if (!s) {
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `no keyed state '${state}' in the snapshot; states: ${keyed.states.map((x) => x.meta.name).join(', ')}`,
    );
  }
  const entry = s.entries.find(([k]) => k === keyIdOfKey);
  if (!entry) return undefined;
  const serializer = builtinSerializer(s.meta.serializerId);
  if (!serializer) return { bytes: entry[1].length, note: `user serializer ${s.meta.serializerId}` };
  const stored = storedValueCodec(s.meta, serializer).decode(entry[1], keyIdOfKey);
  return stored;
}
