import { StreamError } from '../../../api/errors.ts';
import type { CheckpointFiles, KeyedStateHandle, KeyedStateSnapshot, StateMeta } from '../../backend.ts';
import { type ChainLayout, checkChainEntryCounts, readChain, unlistedState } from '../checkpoint/chain.ts';
import { OP_PUT, type RunReader } from '../checkpoint/run-file.ts';
import type { WriteBehindCache } from './cache.ts';
import { asBuffer, type FlushQueue } from './flush.ts';
import {
  DATA_GTE,
  DATA_LT,
  type Db,
  describe,
  type LocalDb,
  MARKER_FILE,
  MARKER_KEY,
  markerBytes,
  REGISTRY_KEY,
  type RegistryEntry,
  registryBytes,
  scanKeys,
} from './local-db.ts';
import { type Slots, StatesByPrefix, splitEntries } from './slots.ts';

/**
 * The level backend's restores, both after the base's checks (base.ts) and after every queued
 * batch has been written (`flushes.drain()`):
 *
 * - `restoreSnapshot`: empties the database and writes the snapshot's entries into it.
 * - `restoreChain` (a checkpoint in the chain format), with local recovery: the database is reused
 *   as it is when it holds exactly the checkpoint's capture (`localMismatch` finds no reason not to,
 *   and a scan of its keys, which rebuilds the key index, finds the entries the layout recorded);
 *   otherwise it is emptied and rebuilt from the checkpoint's files, the marker written last (a
 *   rebuild cut short leaves no marker).
 *
 * A failed restore leaves an empty backend (registered states kept, empty) whose database is wiped
 * before its next write.
 */

/** How the last `restoreHandle` got its state. */
export interface LevelRestoreInfo {
  readonly from: 'local' | 'storage';
  /** Why the local database was not reused (storage only). */
  readonly reason: string;
  readonly filesRead: number;
  readonly bytesRead: number;
}

/** The parts of a level backend a restore replaces. */
export interface LevelParts {
  readonly local: LocalDb;
  readonly slots: Slots;
  readonly cache: WriteBehindCache;
  readonly flushes: FlushQueue;
  /** Entries per batch while restoring: `writeBatchEntries` x 4 (or 8 MiB). */
  readonly writeBatch: number;
  readonly warn: (message: string) => void;
}

const RESTORE_BATCH_BYTES = 8 * 1024 * 1024;

/** The registry of a database whose captures had no state (none is written then). */
const NO_STATES: readonly RegistryEntry[] = [];

export async function restoreSnapshot(p: LevelParts, snapshot: KeyedStateSnapshot): Promise<void> {
  await p.flushes.drain();
  await wipe(p);
  reset(
    p,
    snapshot.states.map((s) => ({ name: s.meta.name, meta: s.meta })),
  );
  await guarded(p, async () => {
    const w = new BatchWriter(p.local.db, p.writeBatch);
    for (const entry of snapshot.states) {
      const slot = p.slots.get(entry.meta.name)!;
      for (const [key, value] of splitEntries(slot, entry.entries)) {
        slot.keys.add(key);
        await w.put(slot.prefix + key, value);
      }
    }
    const registry = p.slots.registry();
    await w.finish(registry, undefined);
    p.slots.registryDirty = false;
    p.local.registry = registry;
    p.flushes.restored(undefined, true);
  });
}

export async function restoreChain(
  p: LevelParts,
  handle: KeyedStateHandle,
  layout: ChainLayout,
  files: CheckpointFiles,
  fileConcurrency: number,
): Promise<LevelRestoreInfo> {
  await p.flushes.drain();
  const reason = localMismatch(p.local, layout);
  if (reason !== undefined) return rebuild(p, handle, layout, files, fileConcurrency, reason);
  try {
    await reuseLocal(p, layout);
    return { from: 'local', reason: '', filesRead: 0, bytesRead: 0 };
  } catch (e) {
    if (e instanceof StreamError && e.code !== 'LOCAL_STATE_DAMAGED') throw e;
    p.warn(
      `level state backend: the local database at ${p.local.location} matches checkpoint token ${layout.token} but cannot be reused (${describe(e)}); rebuilding it from checkpoint storage`,
    );
    return rebuild(p, handle, layout, files, fileConcurrency, `local database unusable: ${describe(e)}`);
  }
}

/** The local-recovery decision: why the local database cannot serve `layout` as it is, or undefined when it can. */
export function localMismatch(local: LocalDb, layout: ChainLayout): string | undefined {
  if (local.marker === undefined) {
    if (local.hasData || local.registry !== undefined) {
      return 'the local database was written after its last capture';
    }
    if (local.unmarked) {
      return `the local database was written after its last capture (no ${MARKER_FILE} file: dropped at open, unread)`;
    }
    return local.dropped === undefined
      ? 'no local database'
      : `the local database was damaged (${local.dropped})`;
  }
  if (local.marker !== layout.token) {
    return `the local database holds capture ${local.marker}, the checkpoint capture ${layout.token}`;
  }
  const registry = local.registry ?? NO_STATES;
  if (
    registry.length !== layout.states.length ||
    !layout.states.every((s) => registry.some((r) => r.name === s.meta.name))
  ) {
    return 'the local database holds other states than the checkpoint';
  }
  return undefined;
}

/** Takes the database as it is: its registry's slots, and the key index from a scan of its keys. */
async function reuseLocal(p: LevelParts, layout: ChainLayout): Promise<void> {
  // A capture of a backend that never registered a state writes a marker and no registry.
  const registry = p.local.registry ?? NO_STATES;
  const byName = new Map(layout.states.map((s) => [s.meta.name, s]));
  reset(
    p,
    registry.map((r) => ({ name: r.name, id: r.id, meta: byName.get(r.name)!.meta })),
  );
  const byPrefix = new StatesByPrefix(p.slots.values());
  await scanKeys(p.local.db, { gte: DATA_GTE, lt: DATA_LT }, (k) => {
    const slot = byPrefix.of(k);
    slot.keys.add(k.slice(slot.prefix.length));
  });
  for (const slot of p.slots.values()) {
    const expected = byName.get(slot.name)?.entries ?? 0;
    if (slot.keys.size !== expected) {
      const found = slot.keys.size;
      reset(p, []);
      throw new StreamError(
        'LOCAL_STATE_DAMAGED',
        `state '${slot.name}' has ${found} entries in the local database, the checkpoint ${expected}`,
      );
    }
  }
  p.flushes.initialized = true;
}

/** Empties the database and writes the chain's files into it, applied in chain order. */
async function rebuild(
  p: LevelParts,
  handle: KeyedStateHandle,
  layout: ChainLayout,
  files: CheckpointFiles,
  fileConcurrency: number,
  reason: string,
): Promise<LevelRestoreInfo> {
  await wipe(p);
  reset(
    p,
    layout.states.map((s) => ({ name: s.meta.name, meta: s.meta })),
  );
  let filesRead = 0;
  let bytesRead = 0;
  await guarded(p, async () => {
    const w = new BatchWriter(p.local.db, p.writeBatch);
    const apply = async (r: RunReader): Promise<void> => {
      filesRead++;
      while (r.next()) {
        const slot = p.slots.get(r.state);
        if (slot === undefined) throw unlistedState(r);
        if (r.op === OP_PUT) {
          slot.keys.add(r.key);
          bytesRead += r.value!.length;
          await w.put(slot.prefix + r.key, r.value!);
        } else {
          slot.keys.delete(r.key);
          await w.del(slot.prefix + r.key);
        }
      }
    };
    // The next files download while one is applied; they are applied in chain order.
    await readChain(handle, layout, files, apply, fileConcurrency);
    checkChainEntryCounts(layout, (name) => p.slots.get(name)!.keys.size);
    const registry = p.slots.registry();
    await w.finish(registry, layout.token);
    p.local.registry = registry;
    p.local.marker = layout.token;
    p.flushes.restored(layout.token, true);
    // Registered states may have newer metas than the checkpoint's: rewritten with the next batch.
    p.slots.registryDirty = [...p.slots.values()].some((s) => s.codec !== undefined);
  });
  return { from: 'storage', reason, filesRead, bytesRead };
}

async function wipe(p: LevelParts): Promise<void> {
  await p.local.wipe();
  p.flushes.restored(undefined, false);
}

/** Replaces the slots (registered states kept) and forgets the cache. */
function reset(p: LevelParts, states: readonly { name: string; id?: number; meta: StateMeta }[]): void {
  p.slots.reset(states);
  p.cache.clear();
}

/** Runs `write`; when it fails, leaves an empty backend whose partly written database is wiped before the next write. */
async function guarded(p: LevelParts, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (e) {
    reset(p, []);
    p.local.hasData = true;
    p.flushes.initialized = false;
    throw e;
  }
}

/** Puts and deletes in LevelDB batches of `entries` entries or 8 MiB. */
class BatchWriter {
  readonly #db: Db;
  readonly #entries: number;
  #batch: ReturnType<Db['batch']>;
  #n = 0;
  #bytes = 0;

  constructor(db: Db, entries: number) {
    this.#db = db;
    this.#entries = entries;
    this.#batch = db.batch();
  }

  async put(key: string, value: Uint8Array): Promise<void> {
    this.#batch.put(key, asBuffer(value));
    this.#bytes += value.length;
    await this.#maybeWrite();
  }

  async del(key: string): Promise<void> {
    this.#batch.del(key);
    await this.#maybeWrite();
  }

  /** Writes the last batch with the registry, and the marker when given. */
  async finish(registry: readonly RegistryEntry[], marker: string | undefined): Promise<void> {
    this.#batch.put(REGISTRY_KEY, registryBytes(registry));
    if (marker !== undefined) this.#batch.put(MARKER_KEY, markerBytes(marker));
    await this.#batch.write();
  }

  async #maybeWrite(): Promise<void> {
    if (++this.#n < this.#entries && this.#bytes < RESTORE_BATCH_BYTES) return;
    await this.#batch.write();
    this.#batch = this.#db.batch();
    this.#n = 0;
    this.#bytes = 0;
  }
}
