import { StreamError } from '../api/errors.ts';
import type { KeyId } from '../api/keys.ts';
import type { CheckpointMetadata, CheckpointStorage, Scope } from '../checkpoint/storage/storage.ts';
import { toJsonValue } from '../savepoint/json-values.ts';
import type { KeyedStateBackend, KeyedStateSnapshot, StateMeta } from '../state/backend.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';
import { builtinSerializer } from '../state/serializers.ts';
import { storedValueCodec, type TimeVersions, type TtlValue, userKeyOf } from '../state/value-codec.ts';
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
 * and describe it. Keyed state in a backend's own format is restored into a scratch instance: the
 * heap backend's into a new heap backend, any other (LevelDB handles) into one `openBackend` opens.
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
    const heap = restored.keyedHandle.backend === 'heap';
    if (!heap && !openBackend) {
      throw new StreamError(
        'CONFIG_INVALID',
        `checkpoint ${meta.checkpointId} holds '${restored.keyedHandle.backend}' state: pass a backend to read it`,
      );
    }
    keyed = await materializeKeyedHandle(
      restored.keyedHandle,
      checkpointFiles(storage, scope, meta.checkpointId, 'inspect'),
      meta.checkpointId,
      () => (heap ? new HeapKeyedStateBackend() : openBackend!(scope)),
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

/**
 * One key's entry in a keyed state, as `kstate inspect --state --key` prints it: `undefined` when the
 * snapshot has no such state or the key has no entry in it (`keyedStateValue` tells the two apart).
 * The value is the one the job's functions see, written with the savepoint export's JSON codec
 * (savepoint/json-values.ts), so what JSON cannot hold stays recognisable: a map state is
 * `{"$map": [[userKey, value], ...]}` (its keys as the job put them), Set, Date, bigint, Uint8Array
 * and NaN get their `$` tags. With TTL, `ttl` holds the timestamp each value's age counts from (one
 * per element of a list, a `$map` per entry of a map). A time-indexed state is its versions
 * `[{"time", "value"}, ...]`, oldest first. A state written by a user serializer cannot be decoded:
 * its `bytes` (base64) are given instead.
 */
export function keyedStateJson(
  keyed: KeyedStateSnapshot,
  state: string,
  keyIdOfKey: KeyId,
): { value: unknown; ttl?: unknown } | { bytes: string; serializer: string } | undefined {
  const s = keyed.states.find((x) => x.meta.name === state);
  const entry = s?.entries.find(([k]) => k === keyIdOfKey);
  if (!s || !entry) return undefined;
  const serializer = builtinSerializer(s.meta.serializerId);
  if (!serializer)
    return { bytes: Buffer.from(entry[1]).toString('base64'), serializer: s.meta.serializerId };
  const stored = storedValueCodec(s.meta, serializer).decode(entry[1], keyIdOfKey);
  const { value, ttl } = userView(s.meta, stored);
  return { value: toJsonValue(value), ...(ttl === undefined ? {} : { ttl: toJsonValue(ttl) }) };
}

/** A stored value (value-codec.ts) as the job sees it, and its TTL timestamps apart. */
function userView(meta: StateMeta, stored: unknown): { value: unknown; ttl?: unknown } {
  const withTtl = meta.ttl !== undefined;
  switch (meta.kind) {
    case 'map': {
      const entries = [...(stored as Map<unknown, unknown>)];
      const value = new Map(
        entries.map(([k, e]) => [userKeyOf(k), withTtl ? (e as TtlValue<unknown>).v : e]),
      );
      if (!withTtl) return { value };
      return { value, ttl: new Map(entries.map(([k, e]) => [userKeyOf(k), (e as TtlValue<unknown>).ts])) };
    }
    case 'list': {
      const items = stored as unknown[];
      if (!withTtl) return { value: items };
      const ttl = items as TtlValue<unknown>[];
      return { value: ttl.map((e) => e.v), ttl: ttl.map((e) => e.ts) };
    }
    case 'timeIndexed': {
      const { t, v } = stored as TimeVersions;
      return { value: t.map((time, i) => ({ time, value: v[i] })) };
    }
    default:
      return withTtl
        ? { value: (stored as TtlValue<unknown>).v, ttl: (stored as TtlValue<unknown>).ts }
        : { value: stored };
  }
}
