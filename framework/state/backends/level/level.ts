import { join } from 'node:path';
import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { Serializer } from '../../../api/serializer.ts';
import type { Scope } from '../../../checkpoint/storage/storage.ts';
import type {
  CheckpointFiles,
  KeyedStateBackend,
  KeyedStateCapture,
  KeyedStateHandle,
  KeyedStateSnapshot,
  StateMeta,
  VersionedStateOps,
} from '../../backend.ts';
import { VersionIndex, versionKey } from '../../time-index.ts';
import type { TimeVersions } from '../../value-codec.ts';
import { BaseKeyedStateBackend, type HeldState, type KeyedBackendOptions } from '../base.ts';
import { type ChainLayout, resolveChainPolicy } from '../checkpoint/chain.ts';
import type { ChainPosition } from '../checkpoint/write-checkpoint.ts';
import { WriteBehindCache } from './cache.ts';
import { captureLevel } from './capture.ts';
import { FlushQueue } from './flush.ts';
import { describe, type LevelDbOptions, LocalDb } from './local-db.ts';
import { type LevelParts, type LevelRestoreInfo, restoreChain, restoreSnapshot } from './restore.ts';
import { type Slot, Slots } from './slots.ts';

export type { LevelRestoreInfo } from './restore.ts';

/**
 * The level keyed state backend: the synchronous backend contract over an embedded LevelDB
 * (classic-level), one database per task in a local working directory, with asynchronous, full or
 * incremental checkpoints and local recovery. This file wires the parts and answers the contract's
 * calls; each part has its own file:
 *
 * - slots.ts: the states, each with its key index (key ids in memory; values live on disk), which
 *   answers `size()`, `entries()` and every read of an absent key without a native call;
 * - cache.ts: the write-behind cache of decoded values (`cacheEntries`, CLOCK eviction, frozen
 *   entries copied on write);
 * - flush.ts: every `writeBatchEntries` dirty entries become one LevelDB batch, written in the
 *   background, one job at a time, with the local-recovery marker for a capture;
 * - capture.ts: `capture()` is O(states) at the barrier; checkpoints and snapshots read a LevelDB
 *   snapshot under the overlay of the entries not landed yet;
 * - restore.ts: restore from a snapshot, and from a checkpoint with local recovery (the database is
 *   reused when its marker is the checkpoint's token, else rebuilt from the files);
 * - local-db.ts: the database itself (open, repair, wipe, scans).
 *
 * Validation of `register`, `restore` and `restoreHandle`, capture tokens and the chain options:
 * ../base.ts; the checkpoint format: ../checkpoint/.
 */
export interface LevelBackendOptions extends KeyedBackendOptions {
  /** Local working directory of this task's database (created if missing). */
  readonly directory: string;
  /** Decoded values kept in memory (clean and dirty). Default 50 000. */
  readonly cacheEntries?: number;
  /** Dirty entries that trigger a background batch write. Default 4096. */
  readonly writeBatchEntries?: number;
  /** Passed to LevelDB when opening. */
  readonly leveldb?: LevelDbOptions;
  /** Where warnings go (a damaged local database was replaced ...). Default `process.emitWarning`. */
  readonly onWarning?: (message: string) => void;
}

/** The factory for `JobOptions.backend`: one database per task under `baseDir/<jobId>/<taskId>`. */
export function levelBackend(
  baseDir: string,
  options: Omit<LevelBackendOptions, 'directory'> = {},
): (scope: Scope) => Promise<KeyedStateBackend> {
  return (scope) =>
    LevelKeyedStateBackend.open({ ...options, directory: join(baseDir, scope.jobId, scope.taskId) });
}

export class LevelKeyedStateBackend extends BaseKeyedStateBackend {
  readonly kind = 'level';
  readonly directory: string;
  readonly #local: LocalDb;
  readonly #slots = new Slots();
  readonly #cache: WriteBehindCache;
  readonly #flushes: FlushQueue;
  readonly #parts: LevelParts;
  #closed = false;

  /** How the last `restoreHandle` got its state (for tests, benchmarks and logs). */
  lastRestore: LevelRestoreInfo | undefined;
  /** Counters for tests and benchmarks: `getSync` reads, write jobs, entries written. */
  readonly stats = { reads: 0, batches: 0, written: 0 };

  /** Entries in the cache now (clean, dirty and not yet landed). */
  get cachedEntries(): number {
    return this.#cache.entries;
  }

  private constructor(local: LocalDb, options: LevelBackendOptions) {
    super('level backend', options);
    const writeBatch = options.writeBatchEntries ?? 4096;
    this.#local = local;
    this.directory = local.directory;
    this.#cache = new WriteBehindCache({
      capacity: options.cacheEntries ?? 50_000,
      writeBatch,
      load: (slot, key) => this.#load(slot, key),
      full: () => this.#flushes.flush(),
    });
    this.#flushes = new FlushQueue(local, this.#slots, this.#cache, this.stats);
    this.#parts = {
      local,
      slots: this.#slots,
      cache: this.#cache,
      flushes: this.#flushes,
      writeBatch: writeBatch * 4,
      warn: warning(options),
    };
  }

  /**
   * Opens (creating if needed) the database in `options.directory`. A directory locked by another
   * process is CONFIG_INVALID naming it; a damaged database is replaced by an empty one (with a
   * warning): the restore that follows rebuilds it from checkpoint storage.
   */
  static async open(options: LevelBackendOptions): Promise<LevelKeyedStateBackend> {
    if (typeof options?.directory !== 'string' || options.directory === '') {
      throw new StreamError('CONFIG_INVALID', 'level backend: options.directory must be a non-empty path');
    }
    // Validate the options before taking the lock.
    atLeast('cacheEntries', options.cacheEntries ?? 0, 0);
    atLeast('writeBatchEntries', options.writeBatchEntries ?? 1, 1);
    resolveChainPolicy('level backend', options);
    const local = await LocalDb.open(options.directory, options.leveldb ?? {}, warning(options));
    return new LevelKeyedStateBackend(local, options);
  }

  // ---------------------------------------------------------------- primitives of the base

  protected override _checkUsable(): void {
    if (this.#flushes.failure !== undefined) throw this.#flushes.failure;
    if (this.#closed) {
      throw new StreamError('CHECKPOINT_DECLINED', `the level state backend at ${this.directory} is closed`);
    }
  }

  protected _held(name: string): HeldState | undefined {
    const s = this.#slots.get(name);
    return s === undefined ? undefined : { meta: s.meta, registered: s.codec !== undefined };
  }

  protected _register(meta: StateMeta, serializer: Serializer<unknown>): void {
    this.#slots.register(meta, serializer);
  }

  protected _capture(checkpointId: number, at: ChainPosition): KeyedStateCapture {
    return captureLevel(checkpointId, at, this.#slots, this.#cache, this.#flushes);
  }

  protected _restore(snapshot: KeyedStateSnapshot): Promise<void> {
    return restoreSnapshot(this.#parts, snapshot);
  }

  protected async _restoreChain(
    handle: KeyedStateHandle,
    layout: ChainLayout,
    files: CheckpointFiles,
  ): Promise<void> {
    this.lastRestore = await restoreChain(this.#parts, handle, layout, files, this.policy.fileConcurrency);
  }

  // ---------------------------------------------------------------- the synchronous state API

  get(state: string, key: KeyId): unknown {
    return this.#cache.get(this.#slot(state), key);
  }

  getForUpdate<T>(state: string, key: KeyId, copy: (value: T) => T): T | undefined {
    return this.#cache.getForUpdate(this.#slot(state), key, copy);
  }

  put(state: string, key: KeyId, value: unknown): void {
    if (value === undefined) {
      this.delete(state, key);
      return;
    }
    const slot = this.#slot(state);
    this.#cache.write(slot, key, value);
    slot.keys.add(key);
  }

  delete(state: string, key: KeyId): void {
    const slot = this.#slot(state);
    if (!slot.keys.delete(key)) return;
    this.#cache.write(slot, key, undefined);
  }

  entries(state: string): [KeyId, unknown][] {
    const slot = this.#slot(state);
    const out: [KeyId, unknown][] = [];
    if (slot.keys instanceof VersionIndex) {
      // One entry per key, in the stored form of the array storage (TimeVersions), like the heap's.
      for (const key of slot.keys.keys()) {
        const t = slot.keys.times(key).slice();
        out.push([
          key,
          { t, v: t.map((time) => this.get(state, versionKey(key, time))) } satisfies TimeVersions,
        ]);
      }
      return out;
    }
    for (const key of slot.keys) out.push([key, this.#cache.peek(slot, key)]);
    return out;
  }

  size(state: string): number {
    const keys = this.#slot(state).keys;
    return keys instanceof VersionIndex ? keys.keyCount : keys.size;
  }

  /**
   * Time-indexed states natively: each version is the entry `versionKey(key, time)` of its state, so
   * the cache, batches, captures, incremental checkpoints and local recovery treat versions as
   * entries; the state's key index (a `VersionIndex`) holds every key's version times.
   */
  readonly versioned: VersionedStateOps = {
    times: (state, key) => this.#versions(state).times(key),
    get: (state, key, time) => this.get(state, versionKey(key, time)),
    put: (state, key, time, value) => {
      this.#versions(state);
      this.put(state, versionKey(key, time), value);
    },
    delete: (state, key, time) => {
      this.#versions(state);
      this.delete(state, versionKey(key, time));
    },
    keys: (state) => this.#versions(state).keys(),
  };

  /** The metas of every state held, registered or restored. */
  states(): readonly StateMeta[] {
    return [...this.#slots.values()].map((s) => s.meta);
  }

  /** Resolves once every batch queued so far has landed in the local database (tests, benchmarks). */
  async flushed(): Promise<void> {
    await this.#flushes.drain();
    if (this.#flushes.failure !== undefined) throw this.#flushes.failure;
  }

  /**
   * Writes the batches up to the last capture's (so that the database may match the last
   * checkpoint: local recovery), drops later ones and the writes still in the cache, and closes.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#flushes.close();
    this.#slots.clear();
    await this.#local.close();
  }

  // ---------------------------------------------------------------- internals

  #slot(state: string): Slot {
    if (this.#flushes.failure !== undefined) throw this.#flushes.failure;
    const s = this.#slots.get(state);
    if (s?.codec === undefined) {
      this._checkUsable();
      throw this.notRegistered(state);
    }
    return s;
  }

  #versions(state: string): VersionIndex {
    const keys = this.#slot(state).keys;
    if (!(keys instanceof VersionIndex)) {
      throw new StreamError('STATE_DESCRIPTOR_CONFLICT', `state '${state}' is not a time-indexed state`);
    }
    return keys;
  }

  /** A cache miss: the value from the database (the key index holds the key, so it must be there). */
  #load(slot: Slot, key: KeyId): unknown {
    let bytes: Buffer | undefined;
    try {
      bytes = this.#local.db.getSync(slot.prefix + key);
    } catch (e) {
      throw this.#damaged(
        `reading state '${slot.name}' key ${JSON.stringify(key)} failed: ${describe(e)}`,
        e,
      );
    }
    this.stats.reads++;
    if (bytes === undefined) {
      throw this.#damaged(`state '${slot.name}' key ${JSON.stringify(key)} is missing from the database`);
    }
    return slot.codec!.decode(bytes, key);
  }

  /**
   * The local database lost or damaged data: fail, and make the next open drop it (the restore then
   * rebuilds it from checkpoint storage). LOCAL_STATE_DAMAGED, not CHECKPOINT_CORRUPT: the task
   * restarts; no checkpoint is damaged.
   */
  #damaged(why: string, cause?: unknown): StreamError {
    const e = new StreamError(
      'LOCAL_STATE_DAMAGED',
      `the level state backend's database ${this.#local.location} is damaged: ${why}; it will be rebuilt from checkpoint storage`,
      { cause },
    );
    this.#local.poison(e.message);
    this.#flushes.failure = e;
    return e;
  }
}

function warning(options: LevelBackendOptions): (message: string) => void {
  return options.onWarning ?? ((m) => process.emitWarning(m, 'LevelStateBackendWarning'));
}

function atLeast(field: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new StreamError('CONFIG_INVALID', `level backend: ${field} must be an integer >= ${min}, got ${v}`);
  }
  return v;
}
