import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { Serializer } from '../../../api/serializer.ts';
import type {
  KeyedStateBackend,
  KeyedStateCapture,
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
import { forEachInViewAsync, LayeredTable, type TableView } from './layered-table.ts';

/**
 * The heap keyed state backend: JS maps, one copy-on-write `LayeredTable` per state.
 *
 * - `capture()` is O(number of states): each table freezes its layers and starts a fresh top layer.
 * - Processing goes on writing the top layers; `getForUpdate` copies a value the first time it is
 *   changed after a capture, and only then.
 * - `materialize()` serializes the frozen layers with each state's serializer, yielding to the event
 *   loop every `materializeChunk` entries, so records keep flowing while a large state is written.
 * - `release()` merges the frozen layers back (cost: the writes made since the capture). Releasing
 *   while a `materialize()` of the same capture runs is deferred until it settles.
 * - A restored state that no one has registered yet is kept as bytes and handed on unchanged to
 *   the next snapshots; registering it checks its serializer and decodes it.
 */
export interface HeapBackendOptions {
  /** Entries serialized between two yields to the event loop while materializing. Default 4096. */
  readonly materializeChunk?: number;
}

interface RegisteredState {
  readonly meta: StateMeta;
  readonly codec: StoredValueCodec;
  readonly table: LayeredTable;
}

export class HeapKeyedStateBackend implements KeyedStateBackend {
  readonly kind = 'heap';
  readonly #states = new Map<string, RegisteredState>();
  /** Restored states not registered yet, as bytes. */
  #pending = new Map<string, KeyedStateSnapshotEntry>();
  readonly #chunk: number;

  constructor(options: HeapBackendOptions = {}) {
    const chunk = options.materializeChunk ?? 4096;
    if (!Number.isSafeInteger(chunk) || chunk < 1) {
      throw new StreamError(
        'CONFIG_INVALID',
        `heap backend materializeChunk must be a positive integer, got ${chunk}`,
      );
    }
    this.#chunk = chunk;
  }

  register(meta: StateMeta, serializer?: Serializer<unknown>): void {
    const existing = this.#states.get(meta.name);
    if (existing !== undefined) {
      checkSameRegistration(existing.meta, meta);
      return;
    }
    const codec = storedValueCodec(meta, resolveSerializer(meta, serializer));
    const table = new LayeredTable();
    const restored = this.#pending.get(meta.name);
    if (restored !== undefined) {
      checkRestoredCompatible(restored.meta, meta);
      table.load(decodeEntries(restored, codec));
      this.#pending.delete(meta.name);
    }
    this.#states.set(meta.name, { meta, codec, table });
  }

  get(state: string, key: KeyId): unknown {
    return this.#table(state).get(key);
  }

  getForUpdate<T>(state: string, key: KeyId, copy: (value: T) => T): T | undefined {
    return this.#table(state).getForUpdate(key, copy);
  }

  put(state: string, key: KeyId, value: unknown): void {
    const table = this.#table(state);
    if (value === undefined) table.delete(key);
    else table.put(key, value);
  }

  delete(state: string, key: KeyId): void {
    this.#table(state).delete(key);
  }

  entries(state: string): [KeyId, unknown][] {
    return this.#table(state).entries();
  }

  size(state: string): number {
    return this.#table(state).size;
  }

  /** Layers of a state's table (1 when no capture is alive); for tests and metrics. */
  layerDepth(state: string): number {
    return this.#table(state).depth;
  }

  capture(checkpointId: number): KeyedStateCapture {
    const views: CapturedState[] = [];
    for (const s of this.#states.values())
      views.push({ meta: s.meta, codec: s.codec, view: s.table.capture() });
    return new HeapCapture(checkpointId, views, [...this.#pending.values()], this.#chunk);
  }

  async restore(snapshot: KeyedStateSnapshot): Promise<void> {
    checkKeyedSnapshotFormat(snapshot);
    // Check and decode everything first, so that a refused snapshot leaves the state untouched.
    const decoded = new Map<string, [KeyId, unknown][]>();
    const pending = new Map<string, KeyedStateSnapshotEntry>();
    for (const entry of snapshot.states) {
      const name = entry.meta.name;
      if (decoded.has(name) || pending.has(name)) {
        throw new StreamError('CHECKPOINT_CORRUPT', `keyed state snapshot holds state '${name}' twice`);
      }
      const registered = this.#states.get(name);
      if (registered === undefined) {
        pending.set(name, entry);
        continue;
      }
      checkRestoredCompatible(entry.meta, registered.meta);
      decoded.set(name, decodeEntries(entry, registered.codec));
    }
    for (const [name, s] of this.#states) {
      s.table.clear();
      const entries = decoded.get(name);
      if (entries !== undefined) s.table.load(entries);
    }
    this.#pending = pending;
  }

  async close(): Promise<void> {
    this.#states.clear();
    this.#pending.clear();
  }

  #table(state: string): LayeredTable {
    const s = this.#states.get(state);
    if (s === undefined) {
      throw new StreamError(
        'STATE_DESCRIPTOR_CONFLICT',
        `state '${state}' is used before it was registered: register its descriptor (get its handle) first`,
      );
    }
    return s.table;
  }
}

interface CapturedState {
  readonly meta: StateMeta;
  readonly codec: StoredValueCodec;
  readonly view: TableView;
}

class HeapCapture implements KeyedStateCapture {
  readonly checkpointId: number;
  readonly #views: readonly CapturedState[];
  readonly #pending: readonly KeyedStateSnapshotEntry[];
  readonly #chunk: number;
  #materializing = 0;
  #released = false;
  #freed = false;

  constructor(
    checkpointId: number,
    views: readonly CapturedState[],
    pending: readonly KeyedStateSnapshotEntry[],
    chunk: number,
  ) {
    this.checkpointId = checkpointId;
    this.#views = views;
    this.#pending = pending;
    this.#chunk = chunk;
  }

  async materialize(): Promise<KeyedStateSnapshot> {
    if (this.#released) {
      throw new StreamError(
        'CHECKPOINT_DECLINED',
        `the keyed state capture of checkpoint ${this.checkpointId} was released before it was materialized`,
      );
    }
    this.#materializing++;
    try {
      const states: KeyedStateSnapshotEntry[] = [];
      for (const { meta, codec, view } of this.#views) {
        const entries: [KeyId, Uint8Array][] = [];
        await forEachInViewAsync(view.layers, this.#chunk, yieldToEventLoop, (key, value) => {
          entries.push([key, encode(meta, codec, key, value, this.checkpointId)]);
        });
        states.push({ meta, entries });
      }
      states.push(...this.#pending);
      return { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states };
    } finally {
      this.#materializing--;
      if (this.#released && this.#materializing === 0) this.#free();
    }
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#materializing === 0) this.#free();
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    for (const { view } of this.#views) view.table.release(view);
  }
}

function encode(
  meta: StateMeta,
  codec: StoredValueCodec,
  key: KeyId,
  value: unknown,
  checkpointId: number,
): Uint8Array {
  try {
    return codec.encode(value);
  } catch (e) {
    throw new StreamError(
      'CHECKPOINT_DECLINED',
      `checkpoint ${checkpointId}: serializer '${meta.serializerId}' failed on state '${meta.name}' ` +
        `key ${JSON.stringify(key)}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
}

function decodeEntries(entry: KeyedStateSnapshotEntry, codec: StoredValueCodec): [KeyId, unknown][] {
  const out: [KeyId, unknown][] = [];
  const keys = new Set<KeyId>();
  for (const [key, bytes] of entry.entries) {
    if (keys.has(key)) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `keyed state snapshot holds key ${JSON.stringify(key)} of state '${entry.meta.name}' twice`,
      );
    }
    keys.add(key);
    out.push([key, codec.decode(bytes, key)]);
  }
  return out;
}
