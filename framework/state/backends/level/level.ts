import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { Serializer } from '../../../api/serializer.ts';
import type { FileRef, Scope } from '../../../checkpoint/storage/storage.ts';
import type {
  CheckpointFiles,
  KeyedStateBackend,
  KeyedStateCapture,
  KeyedStateHandle,
  KeyedStateSnapshot,
  KeyedStateSnapshotEntry,
  StateMeta,
} from '../../backend.ts';
import {
  checkKeyedSnapshotFormat,
  checkRestoredCompatible,
  checkSameRegistration,
  KEYED_SNAPSHOT_FORMAT_VERSION,
  resolveSerializer,
} from '../../state-meta.ts';
import { type StoredValueCodec, storedValueCodec } from '../../value-codec.ts';
import {
  type ChainLayout,
  type ChainPolicy,
  type ChainState,
  captureToken,
  chooseCheckpointType,
  parseChainLayout,
  plainMeta,
  RunFilesWriter,
  readChain,
  resolveChainPolicy,
} from './chain.ts';
import {
  DATA_GTE,
  DATA_LT,
  type Db,
  describe,
  type LevelDbOptions,
  LocalDb,
  levelCode,
  MARKER_KEY,
  markerBytes,
  REGISTRY_KEY,
  type RegistryEntry,
  registryBytes,
  type Snapshot,
  scan,
  scanKeys,
  stateRange,
} from './local-db.ts';
import { OP_PUT } from './run-file.ts';

/**
 * The level keyed state backend: state in an embedded LevelDB (classic-level), one database per task
 * in a local working directory, with asynchronous, full or incremental checkpoints and local recovery.
 *
 * Hot path (the backend contract is synchronous, LevelDB's writes are not):
 * - a key index per state (the key ids, in memory; values live on disk) answers `size()`, `entries()`
 *   and every read of an absent key without a native call;
 * - reads go through a write-behind cache of decoded values (`cacheEntries`, CLOCK eviction); a miss
 *   is one `getSync` and a decode;
 * - writes go to the cache; every `writeBatchEntries` dirty entries are encoded and written as one
 *   LevelDB batch in the background (writes are serialised in one queue). An entry stays in the
 *   cache until its batch has landed, so reads never miss a write.
 *
 * Snapshots: `capture()` encodes the dirty entries into a batch (O(dirty entries), at most
 * `writeBatchEntries`, never O(state)) and queues it; once it has landed, the capture takes a LevelDB
 * snapshot before any later batch is written. `writeCheckpoint` and `materialize` read that snapshot
 * while processing goes on. Values handed out by `get` are never shared with a capture (a capture
 * holds bytes), so `getForUpdate` never copies.
 *
 * Checkpoints (chain.ts): a full one writes every entry to run files; an incremental one writes the
 * keys put or deleted since the previous capture (known from a per-state set of changed keys),
 * read from the snapshot, on top of the previous checkpoint's files.
 *
 * Local recovery: the capture's batch also writes its token as the database's marker, and any later
 * batch deletes it. `restoreHandle` reuses the local database when its marker is the handle's token
 * (the data is exactly that capture's), and otherwise wipes it and rebuilds it from the files.
 */
export interface LevelBackendOptions {
  /** Local working directory of this task's database (created if missing). */
  readonly directory: string;
  /** Decoded values kept in memory (clean and dirty). Default 50 000. */
  readonly cacheEntries?: number;
  /** Dirty entries that trigger a background batch write. Default 4096. */
  readonly writeBatchEntries?: number;
  /** Deltas on one full checkpoint before the next full one. Default 10. */
  readonly maxDeltas?: number;
  /** A full checkpoint instead of a delta once the deltas would outweigh the base x this. Default 1. */
  readonly maxDeltaRatio?: number;
  /** Checkpoint run files are cut at about this size. Default 64 MiB. */
  readonly fileBytes?: number;
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

/** How the last `restoreHandle` got its state. */
export interface LevelRestoreInfo {
  readonly from: 'local' | 'storage';
  /** Why the local database was not reused (storage only). */
  readonly reason: string;
  readonly filesRead: number;
  readonly bytesRead: number;
}

interface Entry {
  /** The decoded value; `undefined` for a delete not yet written. */
  v: unknown;
  dirty: boolean;
  /** Sequence number of the batch that writes it; evictable once that batch has landed. */
  pin: number;
  /** Read since the eviction hand last passed (CLOCK). */
  ref: boolean;
  /** In the eviction queue (clean entries whose write, if any, has landed). */
  queued: boolean;
}

/** The eviction queue: clean, landed entries in the order they became so (CLOCK's ring). */
class EvictionQueue {
  #slots: Slot[] = [];
  #keys: KeyId[] = [];
  #entries: Entry[] = [];
  #head = 0;

  get length(): number {
    return this.#entries.length - this.#head;
  }

  push(slot: Slot, key: KeyId, e: Entry): void {
    e.queued = true;
    this.#slots.push(slot);
    this.#keys.push(key);
    this.#entries.push(e);
  }

  /** Removes the oldest item and passes it to `take`. */
  shift(take: (slot: Slot, key: KeyId, e: Entry) => void): void {
    const i = this.#head++;
    const slot = this.#slots[i]!;
    const key = this.#keys[i]!;
    const e = this.#entries[i]!;
    if (this.#head > 4096 && this.#head * 2 > this.#entries.length) {
      this.#slots = this.#slots.slice(this.#head);
      this.#keys = this.#keys.slice(this.#head);
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    take(slot, key, e);
  }

  clear(): void {
    this.#slots = [];
    this.#keys = [];
    this.#entries = [];
    this.#head = 0;
  }
}

interface Slot {
  readonly name: string;
  readonly id: number;
  readonly prefix: string;
  meta: StateMeta;
  /** Set once the state is registered (restored states are kept as bytes until then). */
  codec: StoredValueCodec | undefined;
  readonly keys: Set<KeyId>;
  readonly cache: Map<KeyId, Entry>;
  dirty: Set<KeyId>;
  /** Keys put or deleted since the last capture (the next delta). */
  changed: Set<KeyId>;
}

interface CapturedState {
  readonly id: number;
  readonly prefix: string;
  readonly meta: StateMeta;
  readonly entries: number;
}

const FLUSH_BATCH_BYTES = 8 * 1024 * 1024;

export class LevelKeyedStateBackend implements KeyedStateBackend {
  readonly kind = 'level';
  readonly directory: string;
  readonly #local: LocalDb;
  readonly #capacity: number;
  readonly #writeBatch: number;
  readonly #policy: ChainPolicy;
  readonly #warn: (message: string) => void;
  readonly #instance = randomBytes(6).toString('hex');

  #slots = new Map<string, Slot>();
  #nextId = 1;
  #registryDirty = false;
  /** Entries in all caches, and how many of them are dirty. */
  #entries = 0;
  #dirty = 0;
  readonly #clock = new EvictionQueue();

  /** Background writes, one at a time, in order. */
  #queue: Promise<unknown> = Promise.resolve();
  #seq = 0;
  #landed = 0;
  /** Whether the database holds data of this run (else it is wiped before the first write). */
  #initialized: boolean;
  /** The marker after the batches queued so far, and after the ones landed. */
  #markerQueued: boolean;
  #diskMarker: string | undefined;
  #diskRegistry: RegistryEntry[] | undefined;

  #captures = 0;
  /** Token of the last capture, or of the restored checkpoint: what the next delta builds on. */
  #lastToken: string | undefined;
  #failure: unknown;
  #closed = false;

  /** How the last `restoreHandle` got its state (for tests, benchmarks and logs). */
  lastRestore: LevelRestoreInfo | undefined;
  /** Counters for tests and benchmarks. */
  readonly stats = { reads: 0, batches: 0, written: 0 };

  private constructor(local: LocalDb, options: LevelBackendOptions) {
    this.#local = local;
    this.directory = local.directory;
    this.#capacity = positiveInt('cacheEntries', options.cacheEntries ?? 50_000, 0);
    this.#writeBatch = positiveInt('writeBatchEntries', options.writeBatchEntries ?? 4096, 1);
    this.#policy = resolveChainPolicy('level backend', options);
    this.#warn = options.onWarning ?? ((m) => process.emitWarning(m, 'LevelStateBackendWarning'));
    this.#initialized = !local.hasData;
    this.#diskMarker = local.marker;
    this.#diskRegistry = local.registry;
    this.#markerQueued = local.marker !== undefined;
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
    positiveInt('cacheEntries', options.cacheEntries ?? 0, 0);
    positiveInt('writeBatchEntries', options.writeBatchEntries ?? 1, 1);
    resolveChainPolicy('level backend', options);
    const warn = options.onWarning ?? ((m: string) => process.emitWarning(m, 'LevelStateBackendWarning'));
    const local = await LocalDb.open(options.directory, options.leveldb ?? {}, warn);
    return new LevelKeyedStateBackend(local, options);
  }

  // ---------------------------------------------------------------- registration

  register(meta: StateMeta, serializer?: Serializer<unknown>): void {
    this.#check();
    const existing = this.#slots.get(meta.name);
    if (existing?.codec !== undefined) {
      checkSameRegistration(existing.meta, meta);
      return;
    }
    const codec = storedValueCodec(meta, resolveSerializer(meta, serializer));
    if (existing !== undefined) {
      checkRestoredCompatible(existing.meta, meta);
      existing.meta = meta;
      existing.codec = codec;
    } else {
      this.#slots.set(meta.name, newSlot(meta.name, this.#nextId++, meta, codec));
    }
    this.#registryDirty = true;
  }

  // ---------------------------------------------------------------- the synchronous state API

  get(state: string, key: KeyId): unknown {
    const slot = this.#slot(state);
    const e = slot.cache.get(key);
    if (e !== undefined) {
      e.ref = true;
      return e.v;
    }
    if (!slot.keys.has(key)) return undefined;
    const v = this.#read(slot, key);
    const fresh: Entry = { v, dirty: false, pin: 0, ref: false, queued: false };
    slot.cache.set(key, fresh);
    this.#entries++;
    this.#clock.push(slot, key, fresh);
    if (this.#entries > this.#capacity) this.#evict();
    return v;
  }

  /** Values in the cache are never shared with a capture (captures hold bytes): no copy needed. */
  getForUpdate<T>(state: string, key: KeyId, _copy: (value: T) => T): T | undefined {
    return this.get(state, key) as T | undefined;
  }

  put(state: string, key: KeyId, value: unknown): void {
    if (value === undefined) {
      this.delete(state, key);
      return;
    }
    const slot = this.#slot(state);
    this.#write(slot, key, value);
    slot.keys.add(key);
  }

  delete(state: string, key: KeyId): void {
    const slot = this.#slot(state);
    if (!slot.keys.delete(key)) return;
    this.#write(slot, key, undefined);
  }

  entries(state: string): [KeyId, unknown][] {
    const slot = this.#slot(state);
    const out: [KeyId, unknown][] = [];
    for (const key of slot.keys) {
      const e = slot.cache.get(key);
      out.push([key, e !== undefined ? e.v : this.#read(slot, key)]);
    }
    return out;
  }

  size(state: string): number {
    return this.#slot(state).keys.size;
  }

  // ---------------------------------------------------------------- snapshots

  capture(checkpointId: number): KeyedStateCapture {
    this.#check();
    const token = captureToken(this.#instance, ++this.#captures);
    // First the batch (a serializer that throws fails the capture and changes nothing).
    const { landed, written } = this.#flush(token);
    const snapshot = landed as Promise<{ db: Db; snapshot: Snapshot }>;
    snapshot.catch(() => {});
    const states: CapturedState[] = [];
    const changed: { name: string; prefix: string; keys: Set<KeyId> }[] = [];
    let totalKeys = 0;
    for (const s of this.#slots.values()) {
      states.push({ id: s.id, prefix: s.prefix, meta: plainMeta(s.meta), entries: s.keys.size });
      totalKeys += s.keys.size;
      if (s.changed.size > 0) {
        changed.push({ name: s.name, prefix: s.prefix, keys: s.changed });
        s.changed = new Set();
      }
    }
    const baseToken = this.#lastToken;
    this.#lastToken = token;
    return new LevelCapture({
      checkpointId,
      token,
      baseToken,
      states,
      changed,
      written,
      totalKeys,
      snapshot,
      policy: this.#policy,
    });
  }

  async restore(snapshot: KeyedStateSnapshot): Promise<void> {
    this.#check();
    checkKeyedSnapshotFormat(snapshot);
    // Check everything first, so that a refused snapshot leaves the state untouched.
    const seen = new Set<string>();
    for (const entry of snapshot.states) {
      const name = entry.meta.name;
      if (seen.has(name)) {
        throw new StreamError('CHECKPOINT_CORRUPT', `keyed state snapshot holds state '${name}' twice`);
      }
      seen.add(name);
      const registered = this.#slots.get(name);
      if (registered?.codec !== undefined) checkRestoredCompatible(entry.meta, registered.meta);
      const keys = new Set<KeyId>();
      for (const [key] of entry.entries) {
        if (keys.has(key)) {
          throw new StreamError(
            'CHECKPOINT_CORRUPT',
            `keyed state snapshot holds key ${JSON.stringify(key)} of state '${name}' twice`,
          );
        }
        keys.add(key);
      }
    }
    await this.#drain();
    await this.#local.wipe();
    this.#diskMarker = undefined;
    this.#diskRegistry = undefined;
    this.#markerQueued = false;
    this.#resetSlots(snapshot.states.map((s) => ({ name: s.meta.name, meta: s.meta })));
    const db = this.#local.db;
    try {
      let batch = db.batch();
      let n = 0;
      let bytes = 0;
      for (const entry of snapshot.states) {
        const slot = this.#slots.get(entry.meta.name)!;
        for (const [key, value] of entry.entries) {
          batch.put(slot.prefix + key, asBuffer(value));
          slot.keys.add(key);
          bytes += value.length;
          if (++n >= this.#writeBatch * 4 || bytes >= FLUSH_BATCH_BYTES) {
            await batch.write();
            batch = db.batch();
            n = 0;
            bytes = 0;
          }
        }
      }
      batch.put(REGISTRY_KEY, registryBytes(this.#registry()));
      await batch.write();
    } catch (e) {
      this.#resetSlots([]);
      this.#local.hasData = true;
      this.#initialized = false;
      throw e;
    }
    this.#registryDirty = false;
    this.#diskRegistry = this.#registry();
    this.#initialized = true;
    this.#lastToken = undefined;
  }

  async restoreHandle(handle: KeyedStateHandle, files: CheckpointFiles): Promise<void> {
    this.#check();
    const layout = parseChainLayout(handle, this.kind);
    const seen = new Set<string>();
    for (const s of layout.states) {
      if (seen.has(s.meta.name)) {
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `the level keyed state handle lists state '${s.meta.name}' twice`,
        );
      }
      seen.add(s.meta.name);
      const registered = this.#slots.get(s.meta.name);
      if (registered?.codec !== undefined) checkRestoredCompatible(s.meta, registered.meta);
    }
    await this.#drain();
    const reason = this.#localMismatch(layout);
    if (reason === undefined) {
      try {
        await this.#reuseLocal(layout);
        this.lastRestore = { from: 'local', reason: '', filesRead: 0, bytesRead: 0 };
        return;
      } catch (e) {
        if (e instanceof StreamError && e.code !== 'CHECKPOINT_CORRUPT') throw e;
        this.#warn(
          `level state backend: the local database at ${this.#local.location} matches checkpoint token ${layout.token} but cannot be reused (${describe(e)}); rebuilding it from checkpoint storage`,
        );
        await this.#rebuild(handle, layout, files, `local database unusable: ${describe(e)}`);
        return;
      }
    }
    await this.#rebuild(handle, layout, files, reason);
  }

  /** Resolves once every batch queued so far has landed in the local database (tests, benchmarks). */
  async flushed(): Promise<void> {
    await this.#drain();
    if (this.#failure !== undefined) throw this.#failure;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Batches not yet started are dropped (the database then holds the state of the last landed
    // one, which is what local recovery wants); the one being written is awaited.
    await this.#drain();
    this.#slots.clear();
    await this.#local.close();
  }

  // ---------------------------------------------------------------- internals

  #slot(state: string): Slot {
    if (this.#failure !== undefined) throw this.#failure;
    const s = this.#slots.get(state);
    if (s?.codec === undefined) {
      this.#check();
      throw new StreamError(
        'STATE_DESCRIPTOR_CONFLICT',
        `state '${state}' is used before it was registered: register its descriptor (get its handle) first`,
      );
    }
    return s;
  }

  #check(): void {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed) {
      throw new StreamError('CHECKPOINT_DECLINED', `the level state backend at ${this.directory} is closed`);
    }
  }

  #read(slot: Slot, key: KeyId): unknown {
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

  /** The local database lost or damaged data: fail, and make the next open start empty. */
  #damaged(why: string, cause?: unknown): StreamError {
    const e = new StreamError(
      'CHECKPOINT_CORRUPT',
      `the level state backend's database ${this.#local.location} is damaged: ${why}; it will be rebuilt from checkpoint storage`,
      { cause },
    );
    this.#local.poison(e.message);
    this.#failure = e;
    return e;
  }

  #write(slot: Slot, key: KeyId, v: unknown): void {
    let e = slot.cache.get(key);
    if (e === undefined) {
      e = { v, dirty: false, pin: 0, ref: true, queued: false };
      slot.cache.set(key, e);
      this.#entries++;
    } else {
      e.v = v;
      e.ref = true;
    }
    slot.changed.add(key);
    if (!e.dirty) {
      e.dirty = true;
      slot.dirty.add(key);
      if (++this.#dirty >= this.#writeBatch) {
        this.#flush(undefined).landed.catch(() => {});
        return;
      }
    }
    if (this.#entries > this.#capacity) this.#evict();
  }

  /**
   * CLOCK eviction over the queue of clean, landed entries until the cache fits (or only dirty and
   * in-flight entries are left: those join the queue when their batch lands). O(1) amortized.
   */
  #evict(): void {
    const q = this.#clock;
    const take = (slot: Slot, key: KeyId, e: Entry): void => {
      if (slot.cache.get(key) !== e) return; // replaced meanwhile
      if (e.dirty || e.pin > this.#landed) {
        e.queued = false; // queued again when its batch lands
      } else if (e.ref) {
        e.ref = false;
        q.push(slot, key, e);
      } else {
        e.queued = false;
        slot.cache.delete(key);
        this.#entries--;
      }
    };
    while (this.#entries > this.#capacity && q.length > 0) q.shift(take);
  }

  /**
   * Encodes every dirty entry into a batch and queues it. With `token` (a capture) the batch also
   * sets the marker, `landed` gives a LevelDB snapshot taken right after the batch landed, and
   * `written` the batch's bytes per state (`undefined` for a delete).
   */
  #flush(token: string | undefined): {
    landed: Promise<{ db: Db; snapshot: Snapshot } | undefined>;
    written: Map<string, Map<KeyId, Buffer | undefined>>;
  } {
    const seq = ++this.#seq;
    const keys: string[] = [];
    const values: (Buffer | undefined)[] = [];
    const flushed: Slot[] = [];
    const perState = new Map<string, Map<KeyId, Buffer | undefined>>();
    for (const slot of this.#slots.values()) {
      if (slot.dirty.size === 0) continue;
      flushed.push(slot);
      const mine = token === undefined ? undefined : new Map<KeyId, Buffer | undefined>();
      if (mine !== undefined) perState.set(slot.name, mine);
      for (const key of slot.dirty) {
        const e = slot.cache.get(key)!;
        const bytes = e.v === undefined ? undefined : asBuffer(encode(slot, key, e.v));
        keys.push(slot.prefix + key);
        values.push(bytes);
        mine?.set(key, bytes);
      }
    }
    // Everything encoded: now mark it (a serializer that throws leaves the entries dirty).
    const written: { slot: Slot; keys: Set<KeyId> }[] = [];
    for (const slot of flushed) {
      for (const key of slot.dirty) {
        const e = slot.cache.get(key)!;
        e.dirty = false;
        e.pin = seq;
      }
      written.push({ slot, keys: slot.dirty });
      slot.dirty = new Set();
    }
    this.#dirty = 0;
    const registry = this.#registryDirty ? this.#registry() : undefined;
    this.#registryDirty = false;
    const dropMarker = token === undefined && this.#markerQueued;
    this.#markerQueued = token !== undefined;
    this.stats.batches++;
    this.stats.written += keys.length;
    const landed = this.#enqueue(async () => {
      if (!this.#initialized) await this.#initialize();
      const db = this.#local.db;
      const batch = db.batch();
      for (let i = 0; i < keys.length; i++) {
        const v = values[i];
        if (v === undefined) batch.del(keys[i]!);
        else batch.put(keys[i]!, v);
      }
      if (registry !== undefined) batch.put(REGISTRY_KEY, registryBytes(registry));
      if (token !== undefined) batch.put(MARKER_KEY, markerBytes(token));
      else if (dropMarker) batch.del(MARKER_KEY);
      try {
        await batch.write();
      } catch (e) {
        this.#failure = new StreamError(
          'CHECKPOINT_STORAGE_FAILED',
          `the level state backend could not write to its database ${this.#local.location}: ${describe(e)}` +
            (/space/i.test(describe(e)) ? ' (the local disk is full: free space or move the directory)' : ''),
          { cause: e },
        );
        throw this.#failure;
      }
      this.#landed = seq;
      if (registry !== undefined) this.#diskRegistry = registry;
      if (token !== undefined) this.#diskMarker = token;
      else if (dropMarker) this.#diskMarker = undefined;
      // Written entries may now be evicted; written deletes leave the cache.
      for (const { slot, keys } of written) {
        for (const key of keys) {
          const e = slot.cache.get(key);
          if (e === undefined || e.dirty || e.pin !== seq) continue;
          if (e.v === undefined) {
            slot.cache.delete(key);
            this.#entries--;
          } else if (!e.queued) {
            this.#clock.push(slot, key, e);
          }
        }
      }
      if (this.#entries > this.#capacity) this.#evict();
      // The snapshot is taken before the next queued batch can start: it sees exactly this capture.
      return token === undefined ? undefined : { db, snapshot: db.snapshot() };
    });
    return { landed, written: perState };
  }

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#closed) {
        throw new StreamError(
          'CHECKPOINT_DECLINED',
          `the level state backend at ${this.directory} was closed`,
        );
      }
      return job();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  async #drain(): Promise<void> {
    await this.#queue;
  }

  /** Before the first write of a run that restored nothing: drop what an earlier run left. */
  async #initialize(): Promise<void> {
    if (this.#local.hasData) {
      await this.#local.wipe();
      this.#diskMarker = undefined;
      this.#diskRegistry = undefined;
    }
    this.#initialized = true;
  }

  #registry(): RegistryEntry[] {
    return [...this.#slots.values()].map((s) => ({ name: s.name, id: s.id, meta: plainMeta(s.meta) }));
  }

  /**
   * Replaces all slots by `states` (ids given, or new), keeping the registration of the states
   * registered now; registered states the restored state lacks start empty.
   */
  #resetSlots(states: readonly { name: string; id?: number; meta: StateMeta }[]): void {
    const old = this.#slots;
    this.#slots = new Map();
    this.#entries = 0;
    this.#dirty = 0;
    this.#clock.clear();
    this.#nextId = Math.max(1, ...states.map((s) => (s.id ?? 0) + 1));
    for (const s of states) {
      const registered = old.get(s.name);
      const slot =
        registered?.codec !== undefined
          ? newSlot(s.name, s.id ?? this.#nextId++, registered.meta, registered.codec)
          : newSlot(s.name, s.id ?? this.#nextId++, s.meta, undefined);
      this.#slots.set(s.name, slot);
    }
    for (const r of old.values()) {
      if (r.codec !== undefined && !this.#slots.has(r.name)) {
        this.#slots.set(r.name, newSlot(r.name, this.#nextId++, r.meta, r.codec));
      }
    }
    this.#registryDirty = true;
  }

  /** Why the local database cannot serve `layout` as it is, or undefined when it can. */
  #localMismatch(layout: ChainLayout): string | undefined {
    if (this.#diskMarker === undefined) {
      return this.#local.hasData || this.#diskRegistry !== undefined
        ? 'the local database was written after its last capture'
        : 'no local database';
    }
    if (this.#diskMarker !== layout.token) {
      return `the local database holds capture ${this.#diskMarker}, the checkpoint capture ${layout.token}`;
    }
    const registry = this.#diskRegistry ?? [];
    if (
      registry.length !== layout.states.length ||
      !layout.states.every((s) => registry.some((r) => r.name === s.meta.name))
    ) {
      return 'the local database holds other states than the checkpoint';
    }
    return undefined;
  }

  async #reuseLocal(layout: ChainLayout): Promise<void> {
    const registry = this.#diskRegistry!;
    const byName = new Map(layout.states.map((s) => [s.meta.name, s]));
    this.#resetSlots(registry.map((r) => ({ name: r.name, id: r.id, meta: byName.get(r.name)!.meta })));
    const byPrefix = new StatesByPrefix([...this.#slots.values()]);
    await scanKeys(this.#local.db, { gte: DATA_GTE, lt: DATA_LT }, (k) => {
      const slot = byPrefix.of(k);
      slot.keys.add(k.slice(slot.prefix.length));
    });
    for (const slot of this.#slots.values()) {
      const expected = byName.get(slot.name)?.entries ?? 0;
      if (slot.keys.size !== expected) {
        const found = slot.keys.size;
        this.#resetSlots([]);
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `state '${slot.name}' has ${found} entries in the local database, the checkpoint ${expected}`,
        );
      }
    }
    this.#initialized = true;
    this.#lastToken = layout.token;
  }

  async #rebuild(
    handle: KeyedStateHandle,
    layout: ChainLayout,
    files: CheckpointFiles,
    reason: string,
  ): Promise<void> {
    await this.#local.wipe();
    this.#diskMarker = undefined;
    this.#diskRegistry = undefined;
    this.#markerQueued = false;
    this.#initialized = false;
    this.#resetSlots(layout.states.map((s) => ({ name: s.meta.name, meta: s.meta })));
    const db = this.#local.db;
    let filesRead = 0;
    let bytesRead = 0;
    try {
      let batch = db.batch();
      let n = 0;
      let bytes = 0;
      await readChain(handle, layout, files, async (r) => {
        filesRead++;
        while (r.next()) {
          const slot = this.#slots.get(r.state);
          if (slot === undefined) {
            throw new StreamError(
              'CHECKPOINT_CORRUPT',
              `keyed state run file ${r.fileName} holds state '${r.state}', which the checkpoint's layout does not list`,
            );
          }
          if (r.op === OP_PUT) {
            batch.put(slot.prefix + r.key, asBuffer(r.value!));
            slot.keys.add(r.key);
            bytes += r.value!.length;
            bytesRead += r.value!.length;
          } else {
            batch.del(slot.prefix + r.key);
            slot.keys.delete(r.key);
          }
          if (++n >= this.#writeBatch * 4 || bytes >= FLUSH_BATCH_BYTES) {
            await batch.write();
            batch = db.batch();
            n = 0;
            bytes = 0;
          }
        }
      });
      for (const s of layout.states) {
        const found = this.#slots.get(s.meta.name)!.keys.size;
        if (found !== s.entries) {
          throw new StreamError(
            'CHECKPOINT_CORRUPT',
            `the files of checkpoint token ${layout.token} hold ${found} entries of state '${s.meta.name}', its layout says ${s.entries}`,
          );
        }
      }
      const registry = this.#registry();
      batch.put(REGISTRY_KEY, registryBytes(registry));
      batch.put(MARKER_KEY, markerBytes(layout.token));
      await batch.write();
      this.#diskRegistry = registry;
      this.#diskMarker = layout.token;
      this.#markerQueued = true;
      // Registered states may have newer metas than the checkpoint's: rewritten with the next batch.
      this.#registryDirty = [...this.#slots.values()].some((s) => s.codec !== undefined);
    } catch (e) {
      // Leave an empty backend; the partly written database is wiped before the next write.
      this.#resetSlots([]);
      this.#local.hasData = true;
      this.#initialized = false;
      throw e;
    }
    this.#initialized = true;
    this.#lastToken = layout.token;
    this.lastRestore = { from: 'storage', reason, filesRead, bytesRead };
  }
}

/** Finds the state of a data key (`s<id>:<key id>`); keys come sorted, so mostly the last one's. */
class StatesByPrefix<S extends { readonly prefix: string }> {
  readonly #byPrefix: Map<string, S>;
  #last: S | undefined;

  constructor(states: readonly S[]) {
    this.#byPrefix = new Map(states.map((s) => [s.prefix, s]));
  }

  of(dbKey: string): S {
    const last = this.#last;
    if (last !== undefined && dbKey.startsWith(last.prefix)) return last;
    const s = this.#byPrefix.get(dbKey.slice(0, dbKey.indexOf(':', 1) + 1));
    if (s === undefined) {
      throw new StreamError(
        'CHECKPOINT_DECLINED',
        `the level state backend's database holds the key ${JSON.stringify(dbKey)} of no known state`,
      );
    }
    this.#last = s;
    return s;
  }
}

function newSlot(name: string, id: number, meta: StateMeta, codec: StoredValueCodec | undefined): Slot {
  return {
    name,
    id,
    prefix: stateRange(id).gte,
    meta,
    codec,
    keys: new Set(),
    cache: new Map(),
    dirty: new Set(),
    changed: new Set(),
  };
}

function encode(slot: Slot, key: KeyId, v: unknown): Uint8Array {
  try {
    return slot.codec!.encode(v);
  } catch (e) {
    throw new StreamError(
      'USER_FUNCTION_FAILED',
      `serializer '${slot.meta.serializerId}' cannot serialize the value of state '${slot.name}' key ${JSON.stringify(key)}: ${describe(e)}`,
      { cause: e },
    );
  }
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function positiveInt(field: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new StreamError('CONFIG_INVALID', `level backend: ${field} must be an integer >= ${min}, got ${v}`);
  }
  return v;
}

interface CaptureInit {
  readonly checkpointId: number;
  readonly token: string;
  readonly baseToken: string | undefined;
  readonly states: readonly CapturedState[];
  readonly changed: readonly { name: string; prefix: string; keys: Set<KeyId> }[];
  /** The capture's batch: the bytes of the entries written since the last flush, per state. */
  readonly written: ReadonlyMap<string, ReadonlyMap<KeyId, Buffer | undefined>>;
  readonly totalKeys: number;
  readonly snapshot: Promise<{ db: Db; snapshot: Snapshot }>;
  readonly policy: ChainPolicy;
}

class LevelCapture implements KeyedStateCapture {
  readonly checkpointId: number;
  readonly #c: CaptureInit;
  #using = 0;
  #released = false;
  #freed = false;

  constructor(c: CaptureInit) {
    this.checkpointId = c.checkpointId;
    this.#c = c;
  }

  async materialize(): Promise<KeyedStateSnapshot> {
    return this.#use(async ({ db, snapshot }) => {
      const entries = new Map(this.#c.states.map((s) => [s, [] as [KeyId, Uint8Array][]]));
      const byPrefix = new StatesByPrefix(this.#c.states);
      await scan(db, { gte: DATA_GTE, lt: DATA_LT }, snapshot, (k, v) => {
        const s = byPrefix.of(k);
        entries.get(s)!.push([k.slice(s.prefix.length), v]);
      });
      const states: KeyedStateSnapshotEntry[] = this.#c.states.map((s) => ({
        meta: s.meta,
        entries: entries.get(s)!,
      }));
      return { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states };
    });
  }

  async writeCheckpoint(
    files: CheckpointFiles,
    previous: KeyedStateHandle | undefined,
  ): Promise<KeyedStateHandle> {
    return this.#use(async ({ db, snapshot }) => {
      const c = this.#c;
      let prev: ChainLayout | undefined;
      if (previous !== undefined) {
        try {
          prev = parseChainLayout(previous, 'level');
        } catch {
          prev = undefined; // not ours, or malformed: write a full checkpoint
        }
      }
      const changedKeys = c.changed.reduce((s, x) => s + x.keys.size, 0);
      const type = chooseCheckpointType(prev, c.baseToken, changedKeys, c.totalKeys, c.policy);
      const states: ChainState[] = c.states.map((s) => ({ meta: s.meta, entries: s.entries }));
      if (type === 'full' || prev === undefined) {
        const w = new RunFilesWriter(files, 'keyed-full', c.policy.fileBytes);
        const byPrefix = new StatesByPrefix(c.states);
        await scan(db, { gte: DATA_GTE, lt: DATA_LT }, snapshot, (k, v) => {
          const s = byPrefix.of(k);
          return w.put(s.meta.name, k.slice(s.prefix.length), v) ? w.ready() : undefined;
        });
        const { refs, part } = await w.finish();
        const layout: ChainLayout = { format: 1, token: c.token, states, base: part, deltas: [] };
        return { backend: 'level', type: 'full', files: refs, layout };
      }
      // The changed keys: their bytes from the capture's own batch when it wrote them, else (an
      // earlier batch since the last capture wrote them) from the snapshot.
      const w = new RunFilesWriter(files, 'keyed-delta', c.policy.fileBytes);
      const elsewhere: { name: string; key: KeyId; dbKey: string }[] = [];
      for (const { name, prefix, keys } of c.changed) {
        const inBatch = c.written.get(name);
        for (const key of keys) {
          if (inBatch?.has(key)) {
            const v = inBatch.get(key);
            if (v === undefined ? w.delete(name, key) : w.put(name, key, v)) await w.ready();
          } else {
            elsewhere.push({ name, key, dbKey: prefix + key });
          }
        }
      }
      for (let i = 0; i < elsewhere.length; i += 1024) {
        const chunk = elsewhere.slice(i, i + 1024);
        const values = await db.getMany(
          chunk.map((x) => x.dbKey),
          { snapshot },
        );
        for (let j = 0; j < chunk.length; j++) {
          const { name, key } = chunk[j]!;
          const v = values[j];
          if (v === undefined ? w.delete(name, key) : w.put(name, key, v)) await w.ready();
        }
      }
      const { refs, part } = await w.finish();
      const layout: ChainLayout = {
        format: 1,
        token: c.token,
        states,
        base: prev.base,
        deltas: [...prev.deltas, { token: c.token, ...part }],
      };
      const inherited: FileRef[] = previous!.files.map((f) => ({
        path: f.path,
        bytes: f.bytes,
        sha256: f.sha256,
      }));
      return { backend: 'level', type: 'incremental', files: [...inherited, ...refs], layout };
    });
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#using === 0) this.#free();
  }

  async #use<T>(read: (s: { db: Db; snapshot: Snapshot }) => Promise<T>): Promise<T> {
    if (this.#released) {
      throw new StreamError(
        'CHECKPOINT_DECLINED',
        `the keyed state capture of checkpoint ${this.checkpointId} was released before it was read`,
      );
    }
    this.#using++;
    try {
      return await read(await this.#c.snapshot);
    } catch (e) {
      if (levelCode(e) !== undefined) {
        throw new StreamError(
          'CHECKPOINT_DECLINED',
          `checkpoint ${this.checkpointId}: reading the level state backend's snapshot failed: ${describe(e)}`,
          { cause: e },
        );
      }
      throw e;
    } finally {
      this.#using--;
      if (this.#released && this.#using === 0) this.#free();
    }
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.#c.snapshot.then(
      ({ snapshot }) => snapshot.close().catch(() => {}),
      () => {},
    );
  }
}
