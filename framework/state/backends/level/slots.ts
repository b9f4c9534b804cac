import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { Serializer } from '../../../api/serializer.ts';
import type { StateMeta } from '../../backend.ts';
import { parseVersionKey, VersionIndex, versionKey, versionValueCodec } from '../../time-index.ts';
import {
  packVersionBytes,
  type StoredValueCodec,
  storedValueCodec,
  unpackVersionBytes,
} from '../../value-codec.ts';
import { plainMeta } from '../checkpoint/chain.ts';
import { type RegistryEntry, statePrefix } from './local-db.ts';

/**
 * The level backend's states: one slot per state name, registered or restored. A slot holds the
 * state's key index (every key id, in memory; the values live in the database), its part of the
 * write-behind cache (cache.ts) and the keys changed since the last capture (the next delta).
 */

/** A value in the write-behind cache. */
export interface Entry {
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

export interface Slot {
  readonly name: string;
  readonly id: number;
  /** The database key prefix of its entries: `s<id>:`. */
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

/** The slots by name, the ids they get, and whether the database's registry of them is stale. */
export class Slots {
  #byName = new Map<string, Slot>();
  #nextId = 1;
  /** The registry changed since it was last handed to a batch. */
  registryDirty = false;

  get(name: string): Slot | undefined {
    return this.#byName.get(name);
  }

  values(): IterableIterator<Slot> {
    return this.#byName.values();
  }

  /** Registers a state: a new slot, or the slot of a restored state, which becomes readable. */
  register(meta: StateMeta, serializer: Serializer<unknown>): void {
    const codec = slotCodec(meta, serializer);
    const existing = this.#byName.get(meta.name);
    if (existing !== undefined) {
      existing.meta = meta;
      existing.codec = codec;
    } else {
      this.#byName.set(meta.name, newSlot(meta.name, this.#nextId++, meta, codec));
    }
    this.registryDirty = true;
  }

  /** The database's registry of the slots. */
  registry(): RegistryEntry[] {
    return [...this.#byName.values()].map((s) => ({ name: s.name, id: s.id, meta: plainMeta(s.meta) }));
  }

  /** The registry when it changed since the last call (for the next batch), else undefined. */
  takeRegistry(): RegistryEntry[] | undefined {
    if (!this.registryDirty) return undefined;
    this.registryDirty = false;
    return this.registry();
  }

  /**
   * Replaces all slots by empty ones for `states` (ids given, or new), keeping the registration of
   * the states registered now; registered states that `states` lacks start empty.
   */
  reset(states: readonly { name: string; id?: number; meta: StateMeta }[]): void {
    const old = this.#byName;
    this.#byName = new Map();
    this.#nextId = Math.max(1, ...states.map((s) => (s.id ?? 0) + 1));
    for (const s of states) {
      const registered = old.get(s.name);
      const slot =
        registered?.codec !== undefined
          ? newSlot(s.name, s.id ?? this.#nextId++, registered.meta, registered.codec)
          : newSlot(s.name, s.id ?? this.#nextId++, s.meta, undefined);
      this.#byName.set(s.name, slot);
    }
    for (const r of old.values()) {
      if (r.codec !== undefined && !this.#byName.has(r.name)) {
        this.#byName.set(r.name, newSlot(r.name, this.#nextId++, r.meta, r.codec));
      }
    }
    this.registryDirty = true;
  }

  clear(): void {
    this.#byName.clear();
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
  return meta.kind === 'timeIndexed'
    ? versionValueCodec(meta, serializer)
    : storedValueCodec(meta, serializer);
}

/** Finds the state of a data key (`s<id>:<key id>`); keys come sorted, so mostly the last one's. */
export class StatesByPrefix<S extends { readonly prefix: string }> {
  readonly #byPrefix: Map<string, S>;
  #last: S | undefined;

  constructor(states: Iterable<S>) {
    this.#byPrefix = new Map([...states].map((s) => [s.prefix, s]));
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

/** Snapshot entries as the slot stores them: a time-indexed key's entry split into its versions. */
export function* splitEntries(
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
export function groupVersions(name: string, entries: readonly [string, Uint8Array][]): [KeyId, Uint8Array][] {
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
