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
  VersionedStateOps,
} from '../../backend.ts';
import {
  checkKeyedSnapshotFormat,
  checkRestoredCompatible,
  checkSameRegistration,
  KEYED_SNAPSHOT_FORMAT_VERSION,
  resolveSerializer,
} from '../../state-meta.ts';
import {
  packVersionBytes,
  type StoredValueCodec,
  storedValueCodec,
  type TimeVersions,
  unpackVersionBytes,
} from '../../value-codec.ts';
import { parseVersionKey, VersionIndex, versionKey, versionValueCodec } from '../../time-index.ts';
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
  statePrefix,
} from './local-db.ts';
import { OP_PUT, type RunReader } from './run-file.ts';

/**
 * The level keyed state backend: state in an embedded LevelDB (classic-level), one database per task
 * in a local working directory, with asynchronous, full or incremental checkpoints and local recovery.
 *
 * Hot path (the backend contract is synchronous, LevelDB's writes are not):
 * - a key index per state (the key ids, in memory; values live on disk) answers `size()`, `entries()`
 *   and every read of an absent key without a native call;
 * - reads go through a write-behind cache of decoded values (`cacheEntries`, CLOCK eviction); a miss
 *   is one `getSync` and a decode;
 * - writes go to the cache; every `writeBatchEntries` dirty entries become one LevelDB batch. A
 *   flush only freezes the dirty entries (it swaps each state's map of them: O(states)); a queued
 *   job encodes them and writes the batch in the background, batches one after the other. An entry
 *   stays in the cache until its batch has landed, so reads never miss a write. A frozen entry is
 *   never changed: `put` replaces it, and `getForUpdate` copies its value (copy-on-write).
 *
 * Snapshots: `capture()` flushes and keeps the entries of the jobs that have not landed yet (its own
 * included) as an immutable overlay: O(states) at the barrier, whatever the state's size or the
 * writes since the last capture. It takes an explicit LevelDB snapshot at once when no batch is being
 * written, else its own job takes it when it starts (every earlier batch has landed, no later one
 * has started), so that the barrier never waits for LevelDB's mutex behind a write; the job also
 * writes the local-recovery marker. `writeCheckpoint`
 * and `materialize` read overlay-over-snapshot while processing goes on. Entries in a live capture's
 * overlay stay frozen (copy-on-write) until it is released: entries are frozen by generation (each
 * flush starts a new one), so this costs no work per entry.
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
  /**
   * Run files of one checkpoint uploaded at once, and downloaded ahead while a restore applies them
   * (in order). Default 4; 1 transfers one file after the other. Memory: about (n + 1) x fileBytes.
   */
  readonly fileConcurrency?: number;
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
  /**
   * Written since the last flush (`gen` is the current generation), or frozen in a flush whose job
   * has not encoded it yet (an older `gen`); false once encoded.
   */
  dirty: boolean;
  /**
   * The flush generation in which it was written (0: read from the database). An entry of an older
   * generation is frozen (never changed) while it is dirty, or while a live capture's overlay may
   * hold it (generation >= the oldest live overlay's).
   */
  gen: number;
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
  /**
   * The key index: the key ids, or for a time-indexed state the version entry keys (`versionKey`),
   * held as each key's sorted version times.
   */
  readonly keys: Set<KeyId> | VersionIndex;
  readonly cache: Map<KeyId, Entry>;
  /** The entries written since the last flush. */
  dirty: Map<KeyId, Entry>;
  /** Keys put or deleted since the last capture (the next delta). */
  changed: Set<KeyId>;
}

/** The entries of one state frozen by one flush, and that flush's generation. */
interface Group {
  readonly slot: Slot;
  readonly gen: number;
  readonly entries: Map<KeyId, Entry>;
}

/** One background write: the frozen entries of one or more flushes. */
interface FlushJob {
  readonly seq: number;
  readonly groups: Group[];
  registry: RegistryEntry[] | undefined;
  /** Set when a capture claims the job: it then writes the marker, and takes the capture's snapshot. */
  token: string | undefined;
  snapshot: Deferred<CaptureView> | undefined;
  readonly dropMarker: boolean;
  landed: Promise<void>;
}

/** What a capture reads: the database at its job's start. */
interface CaptureView {
  readonly db: Db;
  readonly snapshot: Snapshot;
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

interface CapturedState {
  readonly id: number;
  readonly prefix: string;
  readonly meta: StateMeta;
  readonly codec: StoredValueCodec | undefined;
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
  /** Entries in all caches, and how many of them were written since the last flush. */
  #entries = 0;
  #dirty = 0;
  /** Flush generation: dirty entries of an older one are frozen. */
  #gen = 1;
  readonly #clock = new EvictionQueue();

  /** Background writes, one at a time, in order; the jobs not landed yet; the one not started. */
  #queue: Promise<unknown> = Promise.resolve();
  #unlanded: FlushJob[] = [];
  #pending: FlushJob | undefined;
  #running: FlushJob | undefined;
  /** Oldest generation a live capture's overlay may hold (Infinity: none), and the live ones. */
  #overlayFloor = Number.POSITIVE_INFINITY;
  readonly #liveFloors = new Map<number, number>();
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
  /** After `close()`: the last batch still written. */
  #writeUpTo = 0;

  /** How the last `restoreHandle` got its state (for tests, benchmarks and logs). */
  lastRestore: LevelRestoreInfo | undefined;
  /** Counters for tests and benchmarks: `getSync` reads, write jobs, entries written. */
  readonly stats = { reads: 0, batches: 0, written: 0 };

  /** Entries in the cache now (clean, dirty and not yet landed). */
  get cachedEntries(): number {
    return this.#entries;
  }

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
    const codec = slotCodec(meta, resolveSerializer(meta, serializer));
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
    const fresh: Entry = { v, dirty: false, gen: 0, pin: 0, ref: false, queued: false };
    slot.cache.set(key, fresh);
    this.#entries++;
    this.#clock.push(slot, key, fresh);
    if (this.#entries > this.#capacity) this.#evict();
    return v;
  }

  /**
   * A frozen value (in a batch not encoded yet, or in a live capture's overlay) is copied, once: the
   * copy is a new dirty entry. Any other value is the cache's own.
   */
  getForUpdate<T>(state: string, key: KeyId, copy: (value: T) => T): T | undefined {
    const slot = this.#slot(state);
    const e = slot.cache.get(key);
    if (e === undefined || e.v === undefined || !this.#frozen(e)) return this.get(state, key) as T | undefined;
    e.ref = true;
    const mine = copy(e.v as T);
    this.#write(slot, key, mine);
    return mine;
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
    if (slot.keys instanceof VersionIndex) {
      // One entry per key, in the stored form of the array storage (TimeVersions), like the heap's.
      for (const key of slot.keys.keys()) {
        const t = slot.keys.times(key).slice();
        out.push([key, { t, v: t.map((time) => this.get(state, versionKey(key, time))) } satisfies TimeVersions]);
      }
      return out;
    }
    for (const key of slot.keys) {
      const e = slot.cache.get(key);
      out.push([key, e !== undefined ? e.v : this.#read(slot, key)]);
    }
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

  #versions(state: string): VersionIndex {
    const keys = this.#slot(state).keys;
    if (!(keys instanceof VersionIndex)) {
      throw new StreamError('STATE_DESCRIPTOR_CONFLICT', `state '${state}' is not a time-indexed state`);
    }
    return keys;
  }

  // ---------------------------------------------------------------- snapshots

  capture(checkpointId: number): KeyedStateCapture {
    this.#check();
    const token = captureToken(this.#instance, ++this.#captures);
    const job = this.#flush(token);
    job.landed.catch(() => {});
    const view = job.snapshot!.promise;
    if (this.#running === undefined && this.#initialized) {
      const db = this.#local.db;
      job.snapshot!.resolve({ db, snapshot: db.snapshot() });
      job.snapshot = undefined;
    }
    // Overlay: every entry not landed yet, oldest first (the snapshot may hold some of them).
    const overlay = this.#unlanded.flatMap((j) => j.groups);
    const floor = overlay.length === 0 ? this.#gen : overlay[0]!.gen;
    this.#liveFloors.set(floor, (this.#liveFloors.get(floor) ?? 0) + 1);
    this.#overlayFloor = Math.min(this.#overlayFloor, floor);
    const states: CapturedState[] = [];
    const changed: { name: string; prefix: string; keys: Set<KeyId> }[] = [];
    let totalKeys = 0;
    for (const s of this.#slots.values()) {
      states.push({ id: s.id, prefix: s.prefix, meta: plainMeta(s.meta), codec: s.codec, entries: s.keys.size });
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
      totalKeys,
      view,
      overlay,
      policy: this.#policy,
      released: () => this.#releaseFloor(floor),
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
        for (const [key, value] of splitEntries(slot, entry.entries)) {
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
    // The batches up to the last capture's are written (so that the database may match the last
    // checkpoint: local recovery); later ones and the writes still in the cache are dropped.
    this.#writeUpTo = Math.max(this.#landed, ...this.#unlanded.filter((j) => j.token).map((j) => j.seq));
    this.#closed = true;
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

  /** Whether an entry must not change: see `Entry.gen`. */
  #frozen(e: Entry): boolean {
    return e.gen < this.#gen && (e.dirty || e.gen >= this.#overlayFloor);
  }

  #releaseFloor(floor: number): void {
    const n = (this.#liveFloors.get(floor) ?? 1) - 1;
    if (n > 0) this.#liveFloors.set(floor, n);
    else this.#liveFloors.delete(floor);
    this.#overlayFloor = Math.min(Number.POSITIVE_INFINITY, ...this.#liveFloors.keys());
  }

  #write(slot: Slot, key: KeyId, v: unknown): void {
    slot.changed.add(key);
    const e = slot.cache.get(key);
    if (e !== undefined && e.dirty && e.gen === this.#gen) {
      e.v = v; // written since the last flush already
      e.ref = true;
      return;
    }
    if (e !== undefined && !this.#frozen(e)) {
      e.v = v;
      e.ref = true;
      e.dirty = true;
      e.gen = this.#gen;
      slot.dirty.set(key, e);
    } else {
      // New, or frozen: a new entry (the frozen one stays as it is).
      const fresh: Entry = { v, dirty: true, gen: this.#gen, pin: 0, ref: true, queued: false };
      if (e === undefined) this.#entries++;
      slot.cache.set(key, fresh);
      slot.dirty.set(key, fresh);
    }
    if (++this.#dirty >= this.#writeBatch) this.#flush(undefined).landed.catch(() => {});
    else if (this.#entries > this.#capacity) this.#evict();
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
   * Freezes the entries written since the last flush (O(states): each state's map of them is
   * swapped) and hands them to a write job. Jobs run one at a time; while one runs, the flushes
   * after it join one pending job (unless a capture has claimed it), which writes each key once: so
   * the queue never holds more than a running and a pending job (and a capture's), however far
   * LevelDB lags. With `token` (a capture) the job also writes the local-recovery marker.
   */
  #flush(token: string | undefined): FlushJob {
    const groups: Group[] = [];
    for (const slot of this.#slots.values()) {
      if (slot.dirty.size === 0) continue;
      groups.push({ slot, gen: this.#gen, entries: slot.dirty });
      slot.dirty = new Map();
    }
    this.#gen++;
    this.#dirty = 0;
    const registry = this.#registryDirty ? this.#registry() : undefined;
    this.#registryDirty = false;
    const pending = this.#pending;
    if (pending !== undefined && pending.token === undefined) {
      pending.groups.push(...groups);
      if (registry !== undefined) pending.registry = registry;
      if (token !== undefined) {
        pending.token = token;
        pending.snapshot = deferred();
        this.#markerQueued = true;
      }
      return pending;
    }
    const job: FlushJob = {
      seq: ++this.#seq,
      groups,
      registry,
      token,
      snapshot: token === undefined ? undefined : deferred(),
      dropMarker: token === undefined && this.#markerQueued,
      landed: Promise.resolve(),
    };
    this.#markerQueued = token !== undefined;
    this.#pending = job;
    this.#unlanded.push(job);
    this.stats.batches++;
    job.landed = this.#enqueue(() => {
      if (this.#pending === job) this.#pending = undefined;
      if (this.#closed && job.seq > this.#writeUpTo) {
        throw new StreamError('CHECKPOINT_DECLINED', `the level state backend at ${this.directory} was closed`);
      }
      this.#running = job;
      return this.#writeJob(job).finally(() => {
        this.#running = undefined;
      });
    });
    job.landed.catch((e) => job.snapshot?.reject(e));
    return job;
  }

  /** A write job: encodes the frozen entries (each key once: the newest) and writes them. */
  async #writeJob(job: FlushJob): Promise<void> {
    if (!this.#initialized) await this.#initialize();
    const { seq, token, registry, dropMarker } = job;
    const db = this.#local.db;
    // Every earlier batch has landed and no later one has started: the capture's database.
    job.snapshot?.resolve({ db, snapshot: db.snapshot() });
    const batch = db.batch();
    const written = new Map<Slot, Set<KeyId>>();
    const landed: [Slot, KeyId, Entry][] = [];
    try {
      // Newest group first: an older entry of a key already written is superseded.
      for (let g = job.groups.length - 1; g >= 0; g--) {
        const { slot, entries } = job.groups[g]!;
        let mine = written.get(slot);
        if (mine === undefined) {
          mine = new Set();
          written.set(slot, mine);
        }
        for (const [key, e] of entries) {
          e.dirty = false;
          e.pin = seq;
          if (mine.has(key)) continue;
          mine.add(key);
          if (e.v === undefined) batch.del(slot.prefix + key);
          else batch.put(slot.prefix + key, asBuffer(encode(slot, key, e.v)));
          landed.push([slot, key, e]);
          this.stats.written++;
        }
      }
    } catch (e) {
      // A serializer failed: the task fails (the state at hand cannot be written).
      this.#failure = e;
      throw e;
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
    this.#unlanded = this.#unlanded.filter((j) => j !== job);
    if (registry !== undefined) this.#diskRegistry = registry;
    if (token !== undefined) this.#diskMarker = token;
    else if (dropMarker) this.#diskMarker = undefined;
    // Written entries may now be evicted; written deletes leave the cache.
    for (const [slot, key, e] of landed) {
      if (slot.cache.get(key) !== e || e.dirty) continue;
      if (e.v === undefined) {
        slot.cache.delete(key);
        this.#entries--;
      } else if (!e.queued) {
        this.#clock.push(slot, key, e);
      }
    }
    if (this.#entries > this.#capacity) this.#evict();
  }

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#failure !== undefined) throw this.#failure;
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
    const registry = this.#diskRegistry ?? NO_STATES;
    if (
      registry.length !== layout.states.length ||
      !layout.states.every((s) => registry.some((r) => r.name === s.meta.name))
    ) {
      return 'the local database holds other states than the checkpoint';
    }
    return undefined;
  }

  async #reuseLocal(layout: ChainLayout): Promise<void> {
    // A capture of a backend that never registered a state writes a marker and no registry.
    const registry = this.#diskRegistry ?? NO_STATES;
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
      const apply = async (r: RunReader): Promise<void> => {
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
      };
      // The next files download while one is applied; they are applied in chain order.
      await readChain(handle, layout, files, apply, this.#policy.fileConcurrency);
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
/** The registry of a database whose captures had no state (none is written then). */
const NO_STATES: readonly RegistryEntry[] = [];

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
    prefix: statePrefix(id),
    meta,
    codec,
    keys: meta.kind === 'timeIndexed' ? new VersionIndex() : new Set(),
    cache: new Map(),
    dirty: new Map(),
    changed: new Set(),
  };
}

/** A stored value's codec: a time-indexed state's slot holds single versions. */
function slotCodec(meta: StateMeta, serializer: Serializer<unknown>): StoredValueCodec {
  return meta.kind === 'timeIndexed' ? versionValueCodec(meta, serializer) : storedValueCodec(meta, serializer);
}

/** Snapshot entries as the slot stores them: a time-indexed key's entry split into its versions. */
function* splitEntries(
  slot: Slot,
  entries: readonly (readonly [KeyId, Uint8Array])[],
): Iterable<readonly [string, Uint8Array]> {
  if (!(slot.keys instanceof VersionIndex)) {
    yield* entries;
    return;
  }
  for (const [key, bytes] of entries) {
    for (const [time, b] of unpackVersionBytes(bytes, slot.name, key)) yield [versionKey(key, time), b];
  }
}

/** A time-indexed state's version entries grouped into one snapshot entry per key. */
function groupVersions(name: string, entries: readonly [string, Uint8Array][]): [KeyId, Uint8Array][] {
  const byKey = new Map<KeyId, [number, Uint8Array][]>();
  for (const [entry, bytes] of entries) {
    const parsed = parseVersionKey(entry);
    if (parsed === undefined) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `time-indexed state '${name}' holds the entry ${JSON.stringify(entry)}, which is not a version key`,
      );
    }
    const [key, time] = parsed;
    let versions = byKey.get(key);
    if (versions === undefined) {
      versions = [];
      byKey.set(key, versions);
    }
    versions.push([time, bytes]);
  }
  const out: [KeyId, Uint8Array][] = [];
  for (const [key, versions] of byKey) {
    versions.sort((a, b) => a[0] - b[0]);
    out.push([key, packVersionBytes(versions)]);
  }
  return out;
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
  readonly totalKeys: number;
  /** The database when the capture's batch starts (so without that batch and later ones). */
  readonly view: Promise<CaptureView>;
  /** Entries not landed at the capture, oldest first: they take precedence over the snapshot. */
  readonly overlay: readonly Group[];
  readonly policy: ChainPolicy;
  readonly released: () => void;
}

/**
 * A capture: the snapshot, with the overlay of entries not yet written on top. The overlay's values
 * are frozen until `release()` (the backend copies on write), so reading them later is safe.
 */
class LevelCapture implements KeyedStateCapture {
  readonly checkpointId: number;
  readonly #c: CaptureInit;
  #reading = 0;
  #released = false;
  #freed = false;
  #merged: Map<string, Map<KeyId, unknown>> | undefined;

  constructor(c: CaptureInit) {
    this.checkpointId = c.checkpointId;
    this.#c = c;
  }

  async materialize(): Promise<KeyedStateSnapshot> {
    return this.#read(async () => {
      const entries = new Map(this.#c.states.map((s) => [s, [] as [KeyId, Uint8Array][]]));
      await this.#forEach((s, key, bytes) => {
        entries.get(s)!.push([key, bytes]);
      });
      const states: KeyedStateSnapshotEntry[] = this.#c.states.map((s) => ({
        meta: s.meta,
        entries: s.meta.kind === 'timeIndexed' ? groupVersions(s.meta.name, entries.get(s)!) : entries.get(s)!,
      }));
      return { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states };
    });
  }

  async writeCheckpoint(files: CheckpointFiles, previous: KeyedStateHandle | undefined): Promise<KeyedStateHandle> {
    return this.#read(async () => {
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
        const w = new RunFilesWriter(files, 'keyed-full', c.policy.fileBytes, c.policy.fileConcurrency);
        await this.#forEach((s, key, bytes) => (w.put(s.meta.name, key, bytes) ? w.ready() : undefined));
        const { refs, part } = await w.finish();
        const layout: ChainLayout = { format: 1, token: c.token, states, base: part, deltas: [] };
        return { backend: 'level', type: 'full', files: refs, layout };
      }
      // The changed keys: from the overlay when it holds them, else from the snapshot.
      const w = new RunFilesWriter(files, 'keyed-delta', c.policy.fileBytes, c.policy.fileConcurrency);
      const merged = this.#overlay();
      const byName = new Map(c.states.map((s) => [s.meta.name, s]));
      const elsewhere: { name: string; key: KeyId; dbKey: string }[] = [];
      for (const { name, prefix, keys } of c.changed) {
        const mine = merged.get(name);
        const s = byName.get(name)!;
        for (const key of keys) {
          if (mine?.has(key)) {
            const v = mine.get(key);
            if (v === undefined ? w.delete(name, key) : w.put(name, key, encodeCaptured(s, key, v))) {
              await w.ready();
            }
          } else {
            elsewhere.push({ name, key, dbKey: prefix + key });
          }
        }
      }
      // A native call per 16 384 keys, the next one in flight while this one's values are written.
      const { db, snapshot } = await c.view;
      const CHUNK = 16_384;
      const fetch = (i: number) =>
        db.getMany(
          elsewhere.slice(i, i + CHUNK).map((x) => x.dbKey),
          { snapshot },
        );
      let next = elsewhere.length > 0 ? fetch(0) : undefined;
      for (let i = 0; next !== undefined; i += CHUNK) {
        const values = await next;
        next = i + CHUNK < elsewhere.length ? fetch(i + CHUNK) : undefined;
        for (let j = 0; j < values.length; j++) {
          const { name, key } = elsewhere[i + j]!;
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
      const inherited: FileRef[] = previous!.files.map((f) => ({ path: f.path, bytes: f.bytes, sha256: f.sha256 }));
      return { backend: 'level', type: 'incremental', files: [...inherited, ...refs], layout };
    });
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#reading === 0) this.#free();
  }

  /** The overlay merged: per state, the newest value of each key (`undefined`: deleted). */
  #overlay(): Map<string, Map<KeyId, unknown>> {
    if (this.#merged !== undefined) return this.#merged;
    const merged = new Map<string, Map<KeyId, unknown>>();
    for (const { slot, entries } of this.#c.overlay) {
      let mine = merged.get(slot.name);
      if (mine === undefined) {
        mine = new Map();
        merged.set(slot.name, mine);
      }
      for (const [key, e] of entries) mine.set(key, e.v);
    }
    this.#merged = merged;
    return merged;
  }

  /** Every entry at the capture, as bytes: the snapshot's (less what the overlay holds), then the overlay's. */
  async #forEach(each: (s: CapturedState, key: KeyId, bytes: Uint8Array) => void | Promise<void>): Promise<void> {
    const c = this.#c;
    const merged = this.#overlay();
    const { db, snapshot } = await c.view;
    const byPrefix = new StatesByPrefix(c.states);
    await scan(db, { gte: DATA_GTE, lt: DATA_LT }, snapshot, (k, v) => {
      const s = byPrefix.of(k);
      const key = k.slice(s.prefix.length);
      return merged.get(s.meta.name)?.has(key) ? undefined : each(s, key, v);
    });
    for (const s of c.states) {
      const mine = merged.get(s.meta.name);
      if (mine === undefined) continue;
      for (const [key, v] of mine) {
        if (v === undefined) continue;
        const r = each(s, key, encodeCaptured(s, key, v));
        if (r !== undefined) await r;
      }
    }
  }

  async #read<T>(read: () => Promise<T>): Promise<T> {
    if (this.#released) {
      throw new StreamError(
        'CHECKPOINT_DECLINED',
        `the keyed state capture of checkpoint ${this.checkpointId} was released before it was read`,
      );
    }
    this.#reading++;
    try {
      return await read();
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
      this.#reading--;
      if (this.#released && this.#reading === 0) this.#free();
    }
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.#c.view.then(
      ({ snapshot }) => snapshot.close().catch(() => {}),
      () => {},
    );
    this.#merged = undefined;
    this.#c.released();
  }
}

function encodeCaptured(s: CapturedState, key: KeyId, v: unknown): Uint8Array {
  try {
    return s.codec!.encode(v);
  } catch (e) {
    throw new StreamError(
      'CHECKPOINT_DECLINED',
      `serializer '${s.meta.serializerId}' cannot serialize the value of state '${s.meta.name}' key ${JSON.stringify(key)}: ${describe(e)}`,
      { cause: e },
    );
  }
}
