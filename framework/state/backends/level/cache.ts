import type { KeyId } from '../../../api/keys.ts';
import type { Entry, Slot } from './slots.ts';

/**
 * The level backend's write-behind cache of decoded values, over all states (each slot holds its
 * part: `slot.cache`, `slot.dirty`).
 *
 * - Reads: a hit returns the cached value; a miss on a key the index holds is one `load` (the
 *   database's `getSync` and a decode), cached; a key the index lacks costs no native call.
 * - Writes go to the cache. Once `writeBatchEntries` dirty entries wait, `full` tells the backend,
 *   which flushes (flush.ts): it `freeze`s them: each state's map of dirty entries is swapped for
 *   an empty one (O(states)) and a new generation starts. A frozen entry is never changed: a write
 *   replaces it, and `getForUpdate` copies its value (the contract's copy-on-write).
 * - An entry stays until its batch has `landed`, so a read never misses a write; then CLOCK
 *   eviction keeps the cache within `cacheEntries` (clean, landed entries only).
 * - A capture's overlay (the entries not landed at the capture) stays frozen while the capture
 *   lives (`holdOverlay`): entries of a generation at or after the oldest live overlay's are copied
 *   on write, so holding costs nothing per entry.
 */
export class WriteBehindCache {
  readonly #capacity: number;
  readonly #writeBatch: number;
  readonly #load: (slot: Slot, key: KeyId) => unknown;
  readonly #full: () => void;
  /** Entries in all caches, and how many of them were written since the last flush. */
  #entries = 0;
  #dirty = 0;
  /** Flush generation: dirty entries of an older one are frozen. */
  #gen = 1;
  /** The last batch landed: entries pinned to a later one stay. */
  #landed = 0;
  readonly #clock = new EvictionQueue();
  /** Oldest generation a live capture's overlay may hold (Infinity: none), and the live ones. */
  #overlayFloor = Number.POSITIVE_INFINITY;
  readonly #liveFloors = new Map<number, number>();

  /**
   * `load` reads a value from the database (a miss); `full` is called when `writeBatchEntries`
   * entries were written since the last flush (the backend flushes).
   */
  constructor(o: {
    readonly capacity: number;
    readonly writeBatch: number;
    readonly load: (slot: Slot, key: KeyId) => unknown;
    readonly full: () => void;
  }) {
    this.#capacity = o.capacity;
    this.#writeBatch = o.writeBatch;
    this.#load = o.load;
    this.#full = o.full;
  }

  /** Entries in the cache now (clean, dirty and not yet landed). */
  get entries(): number {
    return this.#entries;
  }

  /** The sequence number of the last batch that landed. */
  get landedSeq(): number {
    return this.#landed;
  }

  get(slot: Slot, key: KeyId): unknown {
    const e = slot.cache.get(key);
    if (e !== undefined) {
      e.ref = true;
      return e.v;
    }
    if (!slot.keys.has(key)) return undefined;
    const v = this.#load(slot, key);
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
  getForUpdate<T>(slot: Slot, key: KeyId, copy: (value: T) => T): T | undefined {
    const e = slot.cache.get(key);
    if (e === undefined || e.v === undefined || !this.#frozen(e)) return this.get(slot, key) as T | undefined;
    e.ref = true;
    const mine = copy(e.v as T);
    this.write(slot, key, mine);
    return mine;
  }

  /** The value of a key the index holds, not cached when read (for `entries()`). */
  peek(slot: Slot, key: KeyId): unknown {
    const e = slot.cache.get(key);
    return e !== undefined ? e.v : this.#load(slot, key);
  }

  /** Writes `v` (`undefined`: a delete) and records the key as changed (the next delta). */
  write(slot: Slot, key: KeyId, v: unknown): void {
    slot.changed.add(key);
    const e = slot.cache.get(key);
    if (e?.dirty && e.gen === this.#gen) {
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
    if (++this.#dirty >= this.#writeBatch) this.#full();
    else if (this.#entries > this.#capacity) this.#evict();
  }

  /**
   * Freezes the entries written since the last flush (O(states): each state's map of them is
   * swapped) and starts a new generation. The groups go to a write job (flush.ts).
   */
  freeze(slots: Iterable<Slot>): Group[] {
    const groups: Group[] = [];
    for (const slot of slots) {
      if (slot.dirty.size === 0) continue;
      groups.push({ slot, gen: this.#gen, entries: slot.dirty });
      slot.dirty = new Map();
    }
    this.#gen++;
    this.#dirty = 0;
    return groups;
  }

  /** Batch `seq` has landed with `written`: they may now be evicted; written deletes leave the cache. */
  landed(seq: number, written: readonly (readonly [Slot, KeyId, Entry])[]): void {
    this.#landed = seq;
    for (const [slot, key, e] of written) {
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

  /**
   * Keeps `overlay` (the groups not landed at a capture, oldest first) frozen until the returned
   * release is called (once).
   */
  holdOverlay(overlay: readonly Group[]): () => void {
    const floor = overlay.length === 0 ? this.#gen : overlay[0]!.gen;
    this.#liveFloors.set(floor, (this.#liveFloors.get(floor) ?? 0) + 1);
    this.#overlayFloor = Math.min(this.#overlayFloor, floor);
    return () => {
      const n = (this.#liveFloors.get(floor) ?? 1) - 1;
      if (n > 0) this.#liveFloors.set(floor, n);
      else this.#liveFloors.delete(floor);
      this.#overlayFloor = Math.min(Number.POSITIVE_INFINITY, ...this.#liveFloors.keys());
    };
  }

  /** Forgets every entry (the slots were replaced: restore). */
  clear(): void {
    this.#entries = 0;
    this.#dirty = 0;
    this.#clock.clear();
  }

  /** Whether an entry must not change: see `Entry.gen`. */
  #frozen(e: Entry): boolean {
    return e.gen < this.#gen && (e.dirty || e.gen >= this.#overlayFloor);
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
}

/** The entries of one state frozen by one flush, and that flush's generation. */
export interface Group {
  readonly slot: Slot;
  readonly gen: number;
  readonly entries: Map<KeyId, Entry>;
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
