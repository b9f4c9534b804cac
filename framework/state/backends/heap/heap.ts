import { randomBytes } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { Serializer } from '../../../api/serializer.ts';
import type { FileRef } from '../../../checkpoint/storage/storage.ts';
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
// Checkpoint chains and run files are backend-neutral (they import no native module).
import {
  type ChainLayout,
  type ChainPolicy,
  type ChainState,
  captureToken,
  chooseCheckpointType,
  parseChainLayout,
  plainMeta,
  RunFilesWriter,
  readChainEntries,
  resolveChainPolicy,
} from '../level/chain.ts';
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
 *   while a `materialize()` of the same capture runs is deferred until it settles.
 * - A restored state that no one has registered yet is kept as bytes and handed on unchanged to
 *   the next snapshots; registering it checks its serializer and decodes it.
 * - Checkpoints in its own format (`writeCheckpoint`, see level/chain.ts): full, or incremental on
 *   top of the previous capture's checkpoint. The delta is the top layer a capture freezes, which
 *   holds exactly the entries written and deleted since the capture before (layered-table.ts).
 */
export interface HeapBackendOptions {
  /** Entries serialized between two yields to the event loop while materializing. Default 4096. */
  readonly materializeChunk?: number;
  /** Deltas on one full checkpoint before the next full one. Default 10. */
  readonly maxDeltas?: number;
  /** A full checkpoint instead of a delta once the deltas would outweigh the base x this. Default 1. */
  readonly maxDeltaRatio?: number;
  /** Checkpoint run files are cut at about this size. Default 64 MiB. */
  readonly fileBytes?: number;
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
  readonly #policy: ChainPolicy;
  readonly #instance = randomBytes(6).toString('hex');
  #captures = 0;
  /** Token of the last capture, or of the restored checkpoint: what the next delta builds on. */
  #lastToken: string | undefined;

  constructor(options: HeapBackendOptions = {}) {
    const chunk = options.materializeChunk ?? 4096;
    if (!Number.isSafeInteger(chunk) || chunk < 1) {
      throw new StreamError(
        'CONFIG_INVALID',
        `heap backend materializeChunk must be a positive integer, got ${chunk}`,
      );
    }
    this.#chunk = chunk;
    this.#policy = resolveChainPolicy('heap backend', options);
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

  /** The metas of every state held, registered or restored (not registered yet). */
  states(): readonly StateMeta[] {
    return [...[...this.#states.values()].map((s) => s.meta), ...[...this.#pending.values()].map((p) => p.meta)];
  }

  /** Layers of a state's table (1 when no capture is alive); for tests and metrics. */
  layerDepth(state: string): number {
    return this.#table(state).depth;
  }

  capture(checkpointId: number): KeyedStateCapture {
    const views: CapturedState[] = [];
    for (const s of this.#states.values())
      views.push({ meta: s.meta, codec: s.codec, entries: s.table.size, view: s.table.capture() });
    const token = captureToken(this.#instance, ++this.#captures);
    const baseToken = this.#lastToken;
    this.#lastToken = token;
    return new HeapCapture({
      checkpointId,
      views,
      pending: [...this.#pending.values()],
      chunk: this.#chunk,
      policy: this.#policy,
      token,
      baseToken,
    });
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
      s.table.load(decoded.get(name) ?? []);
    }
    this.#pending = pending;
    this.#lastToken = undefined;
  }

  /** Restores a checkpoint `writeCheckpoint` wrote: its base and deltas, read into a snapshot. */
  async restoreHandle(handle: KeyedStateHandle, files: CheckpointFiles): Promise<void> {
    const layout = parseChainLayout(handle, this.kind);
    const maps = await readChainEntries(handle, layout, files);
    const states: KeyedStateSnapshotEntry[] = [];
    for (const s of layout.states) {
      const entries = maps.get(s.meta.name)!;
      if (entries.size !== s.entries) {
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `the files of checkpoint token ${layout.token} hold ${entries.size} entries of state '${s.meta.name}', its layout says ${s.entries}`,
        );
      }
      states.push({ meta: s.meta, entries: [...entries] });
    }
    await this.restore({ formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states });
    this.#lastToken = layout.token;
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
  readonly entries: number;
  readonly view: TableView;
}

interface HeapCaptureInit {
  readonly checkpointId: number;
  readonly views: readonly CapturedState[];
  readonly pending: readonly KeyedStateSnapshotEntry[];
  readonly chunk: number;
  readonly policy: ChainPolicy;
  readonly token: string;
  readonly baseToken: string | undefined;
}

class HeapCapture implements KeyedStateCapture {
  readonly checkpointId: number;
  readonly #c: HeapCaptureInit;
  #reading = 0;
  #released = false;
  #freed = false;

  constructor(c: HeapCaptureInit) {
    this.checkpointId = c.checkpointId;
    this.#c = c;
  }

  async materialize(): Promise<KeyedStateSnapshot> {
    return this.#read(async () => {
      const states: KeyedStateSnapshotEntry[] = [];
      for (const { meta, codec, view } of this.#c.views) {
        const entries: [KeyId, Uint8Array][] = [];
        await forEachInViewAsync(view.layers, this.#c.chunk, yieldToEventLoop, (key, value) => {
          entries.push([key, encode(meta, codec, key, value, this.checkpointId)]);
        });
        states.push({ meta, entries });
      }
      states.push(...this.#c.pending);
      return { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states };
    });
  }

  async writeCheckpoint(
    files: CheckpointFiles,
    previous: KeyedStateHandle | undefined,
  ): Promise<KeyedStateHandle> {
    return this.#read(async () => {
      const c = this.#c;
      let prev: ChainLayout | undefined;
      if (previous !== undefined) {
        try {
          prev = parseChainLayout(previous, 'heap');
        } catch {
          prev = undefined; // not ours, or malformed: write a full checkpoint
        }
      }
      const changed = c.views.reduce((n, v) => n + v.view.changes.size, 0);
      const total = c.views.reduce((n, v) => n + v.entries, 0);
      const type = chooseCheckpointType(prev, c.baseToken, changed, total, c.policy);
      const states: ChainState[] = [
        ...c.views.map((v) => ({ meta: plainMeta(v.meta), entries: v.entries })),
        ...c.pending.map((p) => ({ meta: plainMeta(p.meta), entries: p.entries.length })),
      ];
      const full = type === 'full' || prev === undefined;
      const w = new RunFilesWriter(files, full ? 'keyed-full' : 'keyed-delta', c.policy.fileBytes);
      const pause = async (): Promise<void> => {
        await yieldToEventLoop();
        await w.ready();
      };
      for (const { meta, codec, view } of c.views) {
        const put = (key: KeyId, value: unknown): void => {
          if (value === undefined) w.delete(meta.name, key);
          else w.put(meta.name, key, encode(meta, codec, key, value, this.checkpointId));
        };
        if (full) await forEachInViewAsync(view.layers, c.chunk, pause, put);
        else await forEachChangeAsync(view, c.chunk, pause, put);
      }
      if (full) {
        for (const p of c.pending) {
          for (const [key, bytes] of p.entries) if (w.put(p.meta.name, key, bytes)) await w.ready();
        }
      }
      const { refs, part } = await w.finish();
      if (full) {
        const layout: ChainLayout = { format: 1, token: c.token, states, base: part, deltas: [] };
        return { backend: 'heap', type: 'full', files: refs, layout };
      }
      const layout: ChainLayout = {
        format: 1,
        token: c.token,
        states,
        base: prev!.base,
        deltas: [...prev!.deltas, { token: c.token, ...part }],
      };
      const inherited: FileRef[] = previous!.files.map((f) => ({
        path: f.path,
        bytes: f.bytes,
        sha256: f.sha256,
      }));
      return { backend: 'heap', type: 'incremental', files: [...inherited, ...refs], layout };
    });
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#reading === 0) this.#free();
  }

  /** Runs `read` over the frozen layers; a `release()` meanwhile is deferred until it settles. */
  async #read<T>(read: () => Promise<T>): Promise<T> {
    if (this.#released) {
      throw new StreamError(
        'CHECKPOINT_DECLINED',
        `the keyed state capture of checkpoint ${this.checkpointId} was released before it was materialized`,
      );
    }
    this.#reading++;
    try {
      return await read();
    } finally {
      this.#reading--;
      if (this.#released && this.#reading === 0) this.#free();
    }
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    for (const { view } of this.#c.views) view.table.release(view);
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
