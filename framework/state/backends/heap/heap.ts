import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { Serializer } from '../../../api/serializer.ts';
import type {
  CheckpointFiles,
  KeyedStateCapture,
  KeyedStateHandle,
  KeyedStateSnapshot,
  KeyedStateSnapshotEntry,
  StateAccess,
  StateMeta,
} from '../../backend.ts';
import { KEYED_SNAPSHOT_FORMAT_VERSION } from '../../state-meta.ts';
import { type StoredValueCodec, storedValueCodec } from '../../value-codec.ts';
import { BaseKeyedStateBackend, type HeldState, type KeyedBackendOptions } from '../base.ts';
import { BackendCapture } from '../capture.ts';
import {
  type ChainLayout,
  type ChainState,
  checkChainEntryCounts,
  plainMeta,
  type RunFilesWriter,
  readChainEntries,
} from '../checkpoint/chain.ts';
import type { ChainPosition, CheckpointContent } from '../checkpoint/write-checkpoint.ts';
import { forEachChangeAsync, forEachInViewAsync, LayeredTable, type TableView } from './layered-table.ts';

/**
 * The heap keyed state backend: JS maps, one copy-on-write `LayeredTable` per state.
 *
 * - `capture()` is O(number of states): each table freezes its layers and starts a fresh top layer.
 * - Processing goes on writing the top layers; `getForUpdate` copies a value the first time it is
 *   changed after a capture, and only then.
 * - `materialize()` serializes the frozen layers with each state's serializer, yielding to the event
 *   loop every `materializeChunk` entries, so records keep flowing while a large state is written.
 * - `release()` merges the frozen layers back (cost: the writes made since the capture). Releasing
 *   while a `materialize()` of the same capture runs is deferred until it settles (capture.ts).
 * - A restored state that no one has registered yet is kept as bytes and handed on unchanged to
 *   the next snapshots; registering it checks its serializer and decodes it.
 * - Checkpoints in the chain format (checkpoint/): full, or incremental on top of the previous
 *   capture's checkpoint. The delta is the top layer a capture freezes, which holds exactly the
 *   entries written and deleted since the capture before (layered-table.ts).
 *
 * Validation of `register`, `restore` and `restoreHandle`, and capture tokens: base.ts.
 */
export interface HeapBackendOptions extends KeyedBackendOptions {
  /** Entries serialized between two yields to the event loop while materializing. Default 4096. */
  readonly materializeChunk?: number;
}

interface RegisteredState {
  readonly meta: StateMeta;
  readonly codec: StoredValueCodec;
  readonly table: LayeredTable;
}

export class HeapKeyedStateBackend extends BaseKeyedStateBackend {
  readonly kind = 'heap';
  readonly #states = new Map<string, RegisteredState>();
  /** Restored states not registered yet, as bytes. */
  #pending = new Map<string, KeyedStateSnapshotEntry>();
  readonly #chunk: number;

  constructor(options: HeapBackendOptions = {}) {
    super('heap backend', options);
    const chunk = options.materializeChunk ?? 4096;
    if (!Number.isSafeInteger(chunk) || chunk < 1) {
      throw new StreamError(
        'CONFIG_INVALID',
        `heap backend materializeChunk must be a positive integer, got ${chunk}`,
      );
    }
    this.#chunk = chunk;
  }

  protected _held(name: string): HeldState | undefined {
    const s = this.#states.get(name);
    if (s !== undefined) return { meta: s.meta, registered: true };
    const p = this.#pending.get(name);
    return p === undefined ? undefined : { meta: p.meta, registered: false };
  }

  protected _register(meta: StateMeta, serializer: Serializer<unknown>): void {
    const codec = storedValueCodec(meta, serializer);
    const table = new LayeredTable();
    const restored = this.#pending.get(meta.name);
    if (restored !== undefined) {
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

  /** The state's table itself (restores clear and reload it in place, so the binding stays valid). */
  bind(state: string): StateAccess {
    return new TableAccess(this.#table(state));
  }

  entries(state: string): [KeyId, unknown][] {
    return this.#table(state).entries();
  }

  size(state: string): number {
    return this.#table(state).size;
  }

  /** The metas of every state held, registered or restored (not registered yet). */
  states(): readonly StateMeta[] {
    return [
      ...[...this.#states.values()].map((s) => s.meta),
      ...[...this.#pending.values()].map((p) => p.meta),
    ];
  }

  /** Layers of a state's table (1 when no capture is alive); for tests and metrics. */
  layerDepth(state: string): number {
    return this.#table(state).depth;
  }

  protected _capture(checkpointId: number, at: ChainPosition): KeyedStateCapture {
    const views: CapturedState[] = [];
    for (const s of this.#states.values())
      views.push({ meta: s.meta, codec: s.codec, entries: s.table.size, view: s.table.capture() });
    return new HeapCapture(checkpointId, at, views, [...this.#pending.values()], this.#chunk);
  }

  protected async _restore(snapshot: KeyedStateSnapshot): Promise<void> {
    // Decode everything first, so that a snapshot whose bytes do not decode leaves the state untouched.
    const decoded = new Map<string, [KeyId, unknown][]>();
    const pending = new Map<string, KeyedStateSnapshotEntry>();
    for (const entry of snapshot.states) {
      const registered = this.#states.get(entry.meta.name);
      if (registered === undefined) pending.set(entry.meta.name, entry);
      else decoded.set(entry.meta.name, decodeEntries(entry, registered.codec));
    }
    for (const [name, s] of this.#states) {
      s.table.clear();
      s.table.load(decoded.get(name) ?? []);
    }
    this.#pending = pending;
  }

  /** A chain's base and deltas, read into a snapshot (`fileConcurrency` files read ahead). */
  protected async _restoreChain(
    handle: KeyedStateHandle,
    layout: ChainLayout,
    files: CheckpointFiles,
  ): Promise<void> {
    const maps = await readChainEntries(handle, layout, files, this.policy.fileConcurrency);
    checkChainEntryCounts(layout, (name) => maps.get(name)!.size);
    const states = layout.states.map((s) => ({ meta: s.meta, entries: [...maps.get(s.meta.name)!] }));
    await this._restore({ formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states });
  }

  async close(): Promise<void> {
    // Bound handles (`bind`) keep their table: emptied, it holds no memory.
    for (const s of this.#states.values()) s.table.clear();
    this.#states.clear();
    this.#pending.clear();
  }

  #table(state: string): LayeredTable {
    const s = this.#states.get(state);
    if (s === undefined) throw this.notRegistered(state);
    return s.table;
  }
}

/** `StateAccess` over one state's table: `put` of `undefined` deletes, as the backend's `put`. */
class TableAccess implements StateAccess {
  readonly #t: LayeredTable;
  constructor(table: LayeredTable) {
    this.#t = table;
  }
  get(key: KeyId): unknown {
    return this.#t.get(key);
  }
  getForUpdate<T>(key: KeyId, copy: (value: T) => T): T | undefined {
    return this.#t.getForUpdate(key, copy);
  }
  put(key: KeyId, value: unknown): void {
    if (value === undefined) this.#t.delete(key);
    else this.#t.put(key, value);
  }
  delete(key: KeyId): void {
    this.#t.delete(key);
  }
}

interface CapturedState {
  readonly meta: StateMeta;
  readonly codec: StoredValueCodec;
  readonly entries: number;
  readonly view: TableView;
}

/** A heap capture: the frozen layers of every table, and the restored states held as bytes. */
class HeapCapture extends BackendCapture {
  readonly #views: readonly CapturedState[];
  readonly #pending: readonly KeyedStateSnapshotEntry[];
  readonly #chunk: number;

  constructor(
    checkpointId: number,
    at: ChainPosition,
    views: readonly CapturedState[],
    pending: readonly KeyedStateSnapshotEntry[],
    chunk: number,
  ) {
    super(checkpointId, at);
    this.#views = views;
    this.#pending = pending;
    this.#chunk = chunk;
  }

  protected async _materialize(): Promise<KeyedStateSnapshot> {
    const states: KeyedStateSnapshotEntry[] = [];
    for (const { meta, codec, view } of this.#views) {
      const entries: [KeyId, Uint8Array][] = [];
      await forEachInViewAsync(view.layers, this.#chunk, yieldToEventLoop, (key, value) => {
        entries.push([key, this.encode(meta, codec, key, value)]);
      });
      states.push({ meta, entries });
    }
    states.push(...this.#pending);
    return { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states };
  }

  protected _content(): CheckpointContent {
    const views = this.#views;
    const states: ChainState[] = [
      ...views.map((v) => ({ meta: plainMeta(v.meta), entries: v.entries })),
      ...this.#pending.map((p) => ({ meta: plainMeta(p.meta), entries: p.entries.length })),
    ];
    // Values are encoded between yields; a cut file waits for an upload slot at the next yield.
    const write = async (out: RunFilesWriter, changes: boolean): Promise<void> => {
      const pause = async (): Promise<void> => {
        await yieldToEventLoop();
        await out.ready();
      };
      for (const { meta, codec, view } of views) {
        const put = (key: KeyId, value: unknown): void => {
          if (value === undefined) out.delete(meta.name, key);
          else out.put(meta.name, key, this.encode(meta, codec, key, value));
        };
        if (changes) await forEachChangeAsync(view, this.#chunk, pause, put);
        else await forEachInViewAsync(view.layers, this.#chunk, pause, put);
      }
    };
    return {
      states,
      changedKeys: views.reduce((n, v) => n + v.view.changes.size, 0),
      totalKeys: views.reduce((n, v) => n + v.entries, 0),
      writeAll: async (out) => {
        await write(out, false);
        for (const p of this.#pending) {
          for (const [key, bytes] of p.entries) if (out.put(p.meta.name, key, bytes)) await out.ready();
        }
      },
      writeChanges: (out) => write(out, true),
    };
  }

  protected _free(): void {
    for (const { view } of this.#views) view.table.release(view);
  }
}

function decodeEntries(entry: KeyedStateSnapshotEntry, codec: StoredValueCodec): [KeyId, unknown][] {
  return entry.entries.map(([key, bytes]) => [key, codec.decode(bytes, key)]);
}
