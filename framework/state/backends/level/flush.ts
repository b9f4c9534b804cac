import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { Group, WriteBehindCache } from './cache.ts';
import {
  type Db,
  describe,
  type LocalDb,
  MARKER_KEY,
  markerBytes,
  REGISTRY_KEY,
  type RegistryEntry,
  registryBytes,
  type Snapshot,
} from './local-db.ts';
import type { Entry, Slot, Slots } from './slots.ts';

/** What a capture reads: the database at its job's start. */
export interface CaptureView {
  readonly db: Db;
  readonly snapshot: Snapshot;
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

/**
 * The level backend's background writes: each flush freezes the cache's dirty entries (cache.ts)
 * and hands them to a write job, which encodes them (each key once: its newest value) and writes
 * them as one LevelDB batch, with the state registry when it changed.
 *
 * - Jobs run one at a time, in order. While one runs, the flushes after it join one pending job
 *   (unless a capture has claimed it), so the queue never holds more than a running and a pending
 *   job (and a capture's), however far LevelDB lags.
 * - A capture's flush (`capture`) also writes the local-recovery marker (its token), and any later
 *   batch deletes it in the same atomic batch as its data: the marker is present only while the
 *   database holds exactly that capture's state. The capture's snapshot of the database is taken at
 *   once when no batch is being written, else when its job starts (every earlier batch has landed,
 *   no later one has started), so the barrier never waits for LevelDB's mutex behind a write.
 * - A batch that cannot be encoded (a serializer throws) or written (the disk) sets `failure`: no
 *   later job runs, and the backend throws it from every call.
 * - `LocalDb.marker` and `LocalDb.registry` follow the batches that have landed.
 */
export class FlushQueue {
  readonly #local: LocalDb;
  readonly #slots: Slots;
  readonly #cache: WriteBehindCache;
  readonly #stats: { batches: number; written: number };
  /** Background writes, one at a time, in order; the jobs not landed yet; the one not started. */
  #queue: Promise<unknown> = Promise.resolve();
  #unlanded: FlushJob[] = [];
  #pending: FlushJob | undefined;
  #running: FlushJob | undefined;
  #seq = 0;
  /** The marker after the batches queued so far. */
  #markerQueued: boolean;
  /** After `close()`: the last batch still written. */
  #writeUpTo = Number.POSITIVE_INFINITY;
  /** Whether the database holds data of this run (else it is wiped before the first write). */
  initialized: boolean;
  /** The backend's failure (a batch, or a read that found damaged data): every later call throws it. */
  failure: unknown;

  constructor(
    local: LocalDb,
    slots: Slots,
    cache: WriteBehindCache,
    stats: { batches: number; written: number },
  ) {
    this.#local = local;
    this.#slots = slots;
    this.#cache = cache;
    this.#stats = stats;
    this.initialized = !local.hasData;
    this.#markerQueued = local.marker !== undefined;
  }

  /** Flushes the dirty entries (the cache is full of them). */
  flush(): void {
    this.#flush(undefined).landed.catch(() => {});
  }

  /**
   * A capture's flush: the database as the capture's batch finds it (`view`, so without that batch
   * and later ones) and the entries not landed yet, oldest first (`overlay`, its own included: they
   * take precedence over the view).
   */
  capture(token: string): { view: Promise<CaptureView>; overlay: Group[] } {
    const job = this.#flush(token);
    job.landed.catch(() => {});
    const view = job.snapshot!.promise;
    if (this.#running === undefined && this.initialized) {
      const db = this.#local.db;
      job.snapshot!.resolve({ db, snapshot: db.snapshot() });
      job.snapshot = undefined;
    }
    return { view, overlay: this.#unlanded.flatMap((j) => j.groups) };
  }

  /** Resolves once every batch queued so far has landed (or failed). */
  async drain(): Promise<void> {
    await this.#queue;
  }

  /**
   * Writes the batches up to the last capture's (so that the database may match the last
   * checkpoint: local recovery) and drops the later ones; resolves when the queue is empty.
   */
  async close(): Promise<void> {
    this.#writeUpTo = Math.max(
      this.#cache.landedSeq,
      ...this.#unlanded.filter((j) => j.token).map((j) => j.seq),
    );
    await this.drain();
  }

  /** A restore wrote the database itself (after `drain`): the marker it left, if any. */
  restored(marker: string | undefined, initialized: boolean): void {
    this.#markerQueued = marker !== undefined;
    this.initialized = initialized;
  }

  #flush(token: string | undefined): FlushJob {
    const groups = this.#cache.freeze(this.#slots.values());
    const registry = this.#slots.takeRegistry();
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
    this.#stats.batches++;
    job.landed = this.#enqueue(() => {
      if (this.#pending === job) this.#pending = undefined;
      if (job.seq > this.#writeUpTo) {
        throw new StreamError(
          'CHECKPOINT_DECLINED',
          `the level state backend at ${this.#local.directory} was closed`,
        );
      }
      this.#running = job;
      return this.#write(job).finally(() => {
        this.#running = undefined;
      });
    });
    job.landed.catch((e) => job.snapshot?.reject(e));
    return job;
  }

  /** A write job: encodes the frozen entries (each key once: the newest) and writes them. */
  async #write(job: FlushJob): Promise<void> {
    if (!this.initialized) await this.#initialize();
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
          this.#stats.written++;
        }
      }
    } catch (e) {
      // A serializer failed: the task fails (the state at hand cannot be written).
      this.failure = e;
      throw e;
    }
    if (registry !== undefined) batch.put(REGISTRY_KEY, registryBytes(registry));
    if (token !== undefined) batch.put(MARKER_KEY, markerBytes(token));
    else if (dropMarker) batch.del(MARKER_KEY);
    try {
      await batch.write();
    } catch (e) {
      this.failure = new StreamError(
        'CHECKPOINT_STORAGE_FAILED',
        `the level state backend could not write to its database ${this.#local.location}: ${describe(e)}` +
          (/space/i.test(describe(e)) ? ' (the local disk is full: free space or move the directory)' : ''),
        { cause: e },
      );
      throw this.failure;
    }
    this.#unlanded = this.#unlanded.filter((j) => j !== job);
    if (registry !== undefined) this.#local.registry = registry;
    if (token !== undefined) this.#local.marker = token;
    else if (dropMarker) this.#local.marker = undefined;
    this.#cache.landed(seq, landed);
  }

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.failure !== undefined) throw this.failure;
      return job();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Before the first write of a run that restored nothing: drop what an earlier run left. */
  async #initialize(): Promise<void> {
    if (this.#local.hasData) await this.#local.wipe();
    this.initialized = true;
  }
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

/** A Buffer over the same bytes (LevelDB takes Buffers). */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
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
