import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type {
  KeyedStateCapture,
  KeyedStateSnapshot,
  KeyedStateSnapshotEntry,
  StateMeta,
} from '../../backend.ts';
import { KEYED_SNAPSHOT_FORMAT_VERSION } from '../../state-meta.ts';
import type { StoredValueCodec } from '../../value-codec.ts';
import { BackendCapture } from '../capture.ts';
import { type ChainState, plainMeta, type RunFilesWriter } from '../checkpoint/chain.ts';
import type { ChainPosition, CheckpointContent } from '../checkpoint/write-checkpoint.ts';
import type { Group, WriteBehindCache } from './cache.ts';
import type { CaptureView, FlushQueue } from './flush.ts';
import { DATA_GTE, DATA_LT, describe, levelCode, scan } from './local-db.ts';
import { groupVersions, type Slots, StatesByPrefix } from './slots.ts';

/**
 * A level capture: a LevelDB snapshot, with the overlay of the entries not yet written on top.
 *
 * `capture` (at the barrier) flushes, keeps the entries of the jobs that have not landed yet (its own
 * included) as the overlay, and takes the keys changed since the previous capture (the next delta):
 * O(states), whatever the state's size or the writes since the last capture. The snapshot comes from
 * the capture's flush job (flush.ts). The overlay's values stay frozen until `release()` (the cache
 * copies on write: `holdOverlay`), so reading them later is safe.
 *
 * `materialize` and `writeCheckpoint` read overlay-over-snapshot while processing goes on: the
 * snapshot's entries except the keys the overlay holds, then the overlay's. A delta reads its changed
 * keys from the overlay, or from the snapshot (`getMany`) for the keys a batch has written since.
 */
export function captureLevel(
  checkpointId: number,
  at: ChainPosition,
  slots: Slots,
  cache: WriteBehindCache,
  flushes: FlushQueue,
): KeyedStateCapture {
  const { view, overlay } = flushes.capture(at.token);
  const released = cache.holdOverlay(overlay);
  const states: CapturedState[] = [];
  const changed: ChangedKeys[] = [];
  let totalKeys = 0;
  for (const s of slots.values()) {
    states.push({
      id: s.id,
      prefix: s.prefix,
      meta: plainMeta(s.meta),
      codec: s.codec,
      entries: s.keys.size,
    });
    totalKeys += s.keys.size;
    if (s.changed.size > 0) {
      changed.push({ name: s.name, prefix: s.prefix, keys: s.changed });
      s.changed = new Set();
    }
  }
  return new LevelCapture(checkpointId, at, { states, changed, totalKeys, view, overlay, released });
}

interface CapturedState {
  readonly id: number;
  readonly prefix: string;
  readonly meta: StateMeta;
  readonly codec: StoredValueCodec | undefined;
  readonly entries: number;
}

interface ChangedKeys {
  readonly name: string;
  readonly prefix: string;
  readonly keys: Set<KeyId>;
}

interface CaptureInit {
  readonly states: readonly CapturedState[];
  readonly changed: readonly ChangedKeys[];
  readonly totalKeys: number;
  /** The database when the capture's batch starts (so without that batch and later ones). */
  readonly view: Promise<CaptureView>;
  /** Entries not landed at the capture, oldest first: they take precedence over the snapshot. */
  readonly overlay: readonly Group[];
  readonly released: () => void;
}

/** Keys of a delta read from the snapshot per native call (the next one in flight meanwhile). */
const GET_MANY = 16_384;

class LevelCapture extends BackendCapture {
  readonly #c: CaptureInit;
  #merged: Map<string, Map<KeyId, unknown>> | undefined;

  constructor(checkpointId: number, at: ChainPosition, c: CaptureInit) {
    super(checkpointId, at);
    this.#c = c;
  }

  protected async _materialize(): Promise<KeyedStateSnapshot> {
    const entries = new Map(this.#c.states.map((s) => [s, [] as [KeyId, Uint8Array][]]));
    await this.#forEach((s, key, bytes) => {
      entries.get(s)!.push([key, bytes]);
    });
    const states: KeyedStateSnapshotEntry[] = this.#c.states.map((s) => ({
      meta: s.meta,
      entries: s.meta.kind === 'timeIndexed' ? groupVersions(s.meta.name, entries.get(s)!) : entries.get(s)!,
    }));
    return { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states };
  }

  protected _content(): CheckpointContent {
    const c = this.#c;
    const states: ChainState[] = c.states.map((s) => ({ meta: s.meta, entries: s.entries }));
    return {
      states,
      changedKeys: c.changed.reduce((n, x) => n + x.keys.size, 0),
      totalKeys: c.totalKeys,
      writeAll: (out) =>
        this.#forEach((s, key, bytes) => (out.put(s.meta.name, key, bytes) ? out.ready() : undefined)),
      writeChanges: (out) => this.#writeChanges(out),
    };
  }

  /** A level error while reading the snapshot fails the checkpoint, not the backend. */
  protected override _readFailed(e: unknown): unknown {
    if (levelCode(e) === undefined) return e;
    return new StreamError(
      'CHECKPOINT_DECLINED',
      `checkpoint ${this.checkpointId}: reading the level state backend's snapshot failed: ${describe(e)}`,
      { cause: e },
    );
  }

  protected _free(): void {
    this.#c.view.then(
      ({ snapshot }) => snapshot.close().catch(() => {}),
      () => {},
    );
    this.#merged = undefined;
    this.#c.released();
  }

  /** The changed keys: from the overlay when it holds them, else from the snapshot. */
  async #writeChanges(out: RunFilesWriter): Promise<void> {
    const merged = this.#overlay();
    const byName = new Map(this.#c.states.map((s) => [s.meta.name, s]));
    const elsewhere: { name: string; key: KeyId; dbKey: string }[] = [];
    for (const { name, prefix, keys } of this.#c.changed) {
      const mine = merged.get(name);
      const s = byName.get(name)!;
      for (const key of keys) {
        if (mine?.has(key)) {
          const v = mine.get(key);
          if (
            v === undefined
              ? out.delete(name, key)
              : out.put(name, key, this.encode(s.meta, s.codec!, key, v))
          ) {
            await out.ready();
          }
        } else {
          elsewhere.push({ name, key, dbKey: prefix + key });
        }
      }
    }
    const { db, snapshot } = await this.#c.view;
    const fetch = (i: number) =>
      db.getMany(
        elsewhere.slice(i, i + GET_MANY).map((x) => x.dbKey),
        { snapshot },
      );
    let next = elsewhere.length > 0 ? fetch(0) : undefined;
    for (let i = 0; next !== undefined; i += GET_MANY) {
      const values = await next;
      next = i + GET_MANY < elsewhere.length ? fetch(i + GET_MANY) : undefined;
      for (let j = 0; j < values.length; j++) {
        const { name, key } = elsewhere[i + j]!;
        const v = values[j];
        if (v === undefined ? out.delete(name, key) : out.put(name, key, v)) await out.ready();
      }
    }
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
  async #forEach(
    each: (s: CapturedState, key: KeyId, bytes: Uint8Array) => void | Promise<void>,
  ): Promise<void> {
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
        const r = each(s, key, this.encode(s.meta, s.codec!, key, v));
        if (r !== undefined) await r;
      }
    }
  }
}
