import type { KeyId } from '../api/keys.ts';
import type { Serializer } from '../api/serializer.ts';
import type { StateKind, StateTtlConfig } from '../api/state.ts';
import type { FileRef } from '../checkpoint/storage/storage.ts';

/**
 * The keyed state backend contract: one primitive store of JS values per (state name, key id).
 * The state handles (ValueState, ListState ...) and TTL are implemented once, above this contract,
 * in `handles.ts`; a backend implements only storage, snapshot capture and restore.
 *
 * Snapshot contract (copy-on-write): `capture()` is the synchronous part at the barrier. The returned
 * capture must keep seeing the state as it was at that call while processing goes on changing the
 * backend, until the capture is `release()`d. Several captures may be alive at once (max concurrent
 * checkpoints > 1). `materialize()` is the asynchronous part and may run while records are processed.
 */
export interface KeyedStateBackend {
  readonly kind: string;
  /**
   * Declare a state. Idempotent for the same meta; throws STATE_DESCRIPTOR_CONFLICT otherwise.
   * `serializer` (id and version equal to the meta's) is how the backend turns stored values into
   * snapshot bytes and back; it may be omitted for the built-in `msgpack` and `json` serializers.
   * Registering a state that a restored snapshot holds checks the snapshot's serializer
   * (SERIALIZER_MISMATCH) and makes its entries readable.
   */
  register(meta: StateMeta, serializer?: Serializer<unknown>): void;
  get(state: string, key: KeyId): unknown;
  /**
   * A value the caller may mutate in place: if the stored value is shared with a live capture, the
   * backend first stores `copy(value)` and returns that copy.
   */
  getForUpdate<T>(state: string, key: KeyId, copy: (value: T) => T): T | undefined;
  put(state: string, key: KeyId, value: unknown): void;
  delete(state: string, key: KeyId): void;
  /** All entries of one state (a consistent copy; safe to mutate the backend while iterating). */
  entries(state: string): [KeyId, unknown][];
  /** Number of entries per registered state. */
  size(state: string): number;
  capture(checkpointId: number): KeyedStateCapture;
  /** Replace all state by the snapshot's. Refuses unknown format versions and serializer changes. */
  restore(snapshot: KeyedStateSnapshot): Promise<void>;
  /**
   * Optional counterpart of `KeyedStateCapture.writeCheckpoint`: replace all state by the state of a
   * checkpoint this kind of backend wrote (reusing a matching local copy when it can: local recovery).
   * A missing or corrupt file is CHECKPOINT_CORRUPT / CHECKPOINT_NOT_FOUND naming the file.
   */
  restoreHandle?(handle: KeyedStateHandle, files: CheckpointFiles): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional native storage of time-indexed states (kind `timeIndexed`, see time-index.ts): each
   * version its own entry, ordered by time. Without it, the handles keep a key's versions as one
   * `TimeVersions` value through `get`/`getForUpdate`/`put`. Either way `materialize()` and
   * `restore()` use one entry per key (value-codec.ts).
   */
  readonly versioned?: VersionedStateOps;
  /**
   * Optional: the primitives of one registered state, bound once (see `StateAccess`). Without it,
   * `bindState` binds through `get`, `put` ... with the name.
   */
  bind?(state: string): StateAccess;
  /** Optional: the metas of every state the backend holds, registered or restored (for queries). */
  states?(): readonly StateMeta[];
}

/**
 * The primitives of one registered state, bound once: the handles of `handles.ts` bind when they are
 * made and use the binding for every access, so an access looks up its key, not first its state's
 * name (and, through an operator's scoped view, the scoped name before that). Same contracts as the
 * backend's methods of the same name (`put` of `undefined` deletes). Valid while the backend is open,
 * across captures and restores.
 */
export interface StateAccess {
  get(key: KeyId): unknown;
  getForUpdate<T>(key: KeyId, copy: (value: T) => T): T | undefined;
  put(key: KeyId, value: unknown): void;
  delete(key: KeyId): void;
}

/** `backend.bind(state)`, or a binding through the backend's named methods when it has none. */
export function bindState(backend: KeyedStateBackend, state: string): StateAccess {
  return backend.bind?.(state) ?? new NamedAccess(backend, state);
}

class NamedAccess implements StateAccess {
  readonly #b: KeyedStateBackend;
  readonly #name: string;
  constructor(backend: KeyedStateBackend, name: string) {
    this.#b = backend;
    this.#name = name;
  }
  get(key: KeyId): unknown {
    return this.#b.get(this.#name, key);
  }
  getForUpdate<T>(key: KeyId, copy: (value: T) => T): T | undefined {
    return this.#b.getForUpdate(this.#name, key, copy);
  }
  put(key: KeyId, value: unknown): void {
    this.#b.put(this.#name, key, value);
  }
  delete(key: KeyId): void {
    this.#b.delete(this.#name, key);
  }
}

/** Native time-indexed storage: versions per (state, key id), addressed by their time. */
export interface VersionedStateOps {
  /** The key's version times, ascending (a live array: do not change it). */
  times(state: string, key: KeyId): readonly number[];
  /** The value of the version at exactly `time`, or undefined. */
  get(state: string, key: KeyId, time: number): unknown;
  put(state: string, key: KeyId, time: number, value: unknown): void;
  delete(state: string, key: KeyId, time: number): void;
  /** The key ids with at least one version. */
  keys(state: string): Iterable<KeyId>;
}

/** The files of one task's checkpoint, as a backend sees them. */
export interface CheckpointFiles {
  /** Write a new file of the checkpoint being taken (names are unique per checkpoint). */
  write(name: string, bytes: Uint8Array): Promise<FileRef>;
  /** Read any file of a retained checkpoint of this task; verifies its checksum. */
  read(ref: FileRef): Promise<Uint8Array>;
}

/**
 * What a backend recorded for one checkpoint in its own format; stored in the checkpoint metadata,
 * so it must be JSON-safe. `files` lists every file the state needs, including files of earlier
 * checkpoints an incremental one builds on: checkpoint storage keeps a file while any retained
 * checkpoint lists it.
 */
export interface KeyedStateHandle {
  /** The backend kind that wrote it; restore refuses a handle of another kind. */
  readonly backend: string;
  readonly type: 'full' | 'incremental';
  readonly files: readonly FileRef[];
  /** Backend-specific, JSON-safe description (for example the base and the chain of deltas). */
  readonly layout: unknown;
}

/** What the framework knows about a registered state, recorded in every snapshot. */
export interface StateMeta {
  readonly name: string;
  readonly kind: StateKind;
  readonly serializerId: string;
  readonly serializerVersion: number;
  readonly ttl?: StateTtlConfig;
}

export interface KeyedStateCapture {
  readonly checkpointId: number;
  /**
   * The asynchronous part, canonical form: produce the snapshot (serializing values with the states'
   * serializers). Used for savepoints, and for checkpoints of backends without `writeCheckpoint`.
   */
  materialize(): Promise<KeyedStateSnapshot>;
  /**
   * Optional asynchronous part in the backend's own format. With `previous` (the handle of the
   * checkpoint of this backend's immediately preceding capture, given only when that checkpoint
   * completed and the job asks for incremental checkpoints) the backend may write only what changed
   * since that capture and refer to `previous.files`; without it, it writes all state. The backend
   * decides when a chain is long enough to write a full one instead.
   */
  writeCheckpoint?(files: CheckpointFiles, previous: KeyedStateHandle | undefined): Promise<KeyedStateHandle>;
  /** Let the backend drop what it kept for this capture. Idempotent. */
  release(): void;
}

/**
 * A backend-independent keyed snapshot (also the savepoint form). Values are the serializer's bytes
 * of the stored value: for value/reducing/aggregating states the value or accumulator, for list
 * states the array, for map states the array of entries, each wrapped with its TTL timestamp when
 * the state has a TTL (see handles.ts).
 */
export interface KeyedStateSnapshot {
  readonly formatVersion: 1;
  readonly states: readonly KeyedStateSnapshotEntry[];
}

export interface KeyedStateSnapshotEntry {
  readonly meta: StateMeta;
  readonly entries: readonly (readonly [KeyId, Uint8Array])[];
}
