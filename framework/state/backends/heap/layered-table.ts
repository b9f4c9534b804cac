import type { KeyId } from '../../../api/keys.ts';

/**
 * The copy-on-write store of one state in the heap backend: a stack of layers (JS maps), the top
 * one mutable, the ones below frozen because a live capture may read them.
 *
 *     layers:   [ L0 (base) | L1 | ... | Ltop ]      get(k): the first hit from the top down
 *     capture:  remembers [L0 .. L(top)], pushes a fresh empty top  -> O(1)
 *     release:  merges every frozen layer that no capture ends at into the layer below it
 *
 * Writes go to the top layer; a delete of a key that a lower layer holds writes a tombstone. A capture
 * sees exactly the layers that existed when it was taken. `getForUpdate` copies a value only when it
 * lives in a layer a live capture sees; a value below the top that no capture sees is moved to the
 * top as it is.
 *
 * The top layer is never merged: it holds exactly the writes (and tombstones) since the last capture,
 * so the capture that freezes it knows what changed since the capture before (`TableView.changes`,
 * used for incremental checkpoints). (Old versions of the keys written since the last capture stay
 * in the layer below until the next capture is released.)
 *
 * Merging: a frozen layer `i+1` may be merged into layer `i` as soon as no live capture *ends* at
 * layer `i`. Every capture that contains layer `i` then also contains layer `i+1`, so writing `i+1`'s
 * entries into `i` does not change what any capture sees; and a capture's reader iterates its layers
 * top-down, skipping keys it has already seen, so even a merge that happens while it iterates is
 * invisible to it (the merged keys come from a layer it has already read). Merging costs the size of
 * the upper layer, i.e. the writes made between two captures, never the size of the state. With `c`
 * captures alive a state has at most `c + 2` layers (2 at rest: the base and the changes since the
 * last capture).
 */

const TOMBSTONE: unique symbol = Symbol('deleted');
type Slot = unknown;

export class Layer {
  readonly map = new Map<KeyId, Slot>();
  /** Tombstones in `map` (kept for the top layer only, which alone takes writes). */
  tombstones = 0;
  /** Live captures whose view ends at this layer. */
  refs = 0;
  /** Set when this layer was merged into another: captures ending here now end there. */
  mergedInto: Layer | undefined = undefined;
}

/** What one capture holds of one table: the layers it sees (bottom first) and the one it ends at. */
export interface TableView {
  readonly table: LayeredTable;
  readonly layers: readonly Layer[];
  readonly top: Layer;
  /**
   * The entries written since the capture before (values, or tombstones: see `forEachChange`), or
   * since the table was created, cleared or loaded. Frozen.
   */
  readonly changes: ReadonlyMap<KeyId, unknown>;
}

const NO_CHANGES: ReadonlyMap<KeyId, unknown> = new Map();

export class LayeredTable {
  private layers: Layer[] = [new Layer()];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Number of layers (for tests and metrics). */
  get depth(): number {
    return this.layers.length;
  }

  get(key: KeyId): unknown {
    const layers = this.layers;
    for (let i = layers.length - 1; i >= 0; i--) {
      const v = layers[i]!.map.get(key);
      if (v !== undefined) return v === TOMBSTONE ? undefined : v;
    }
    return undefined;
  }

  getForUpdate<T>(key: KeyId, copy: (value: T) => T): T | undefined {
    const layers = this.layers;
    const top = layers[layers.length - 1]!;
    const own = top.map.get(key);
    if (own !== undefined) return own === TOMBSTONE ? undefined : (own as T);
    // A value in layer i is seen by a live capture iff some capture ends at layer i or above.
    let shared = false;
    for (let i = layers.length - 2; i >= 0; i--) {
      const layer = layers[i]!;
      if (layer.refs > 0) shared = true;
      const v = layer.map.get(key);
      if (v === undefined) continue;
      if (v === TOMBSTONE) return undefined;
      const mine = shared ? copy(v as T) : (v as T);
      top.map.set(key, mine);
      return mine;
    }
    return undefined;
  }

  /** Stores `value` (never `undefined`). */
  put(key: KeyId, value: unknown): void {
    const top = this.layers[this.layers.length - 1]!;
    const map = top.map;
    if (top.tombstones === 0) {
      // The common case, one map operation: a key the top layer held had a value, so only a key
      // new to the top layer can be new to the table (unless a layer below holds it).
      const before = map.size;
      map.set(key, value);
      if (map.size !== before && this.getBelowTop(key) === undefined) this.count++;
      return;
    }
    const own = map.get(key);
    if (own === undefined ? this.getBelowTop(key) === undefined : own === TOMBSTONE) this.count++;
    if (own === TOMBSTONE) top.tombstones--;
    map.set(key, value);
  }

  delete(key: KeyId): void {
    const layers = this.layers;
    const top = layers[layers.length - 1]!;
    const own = top.map.get(key);
    if (own === TOMBSTONE) return;
    const below = layers.length === 1 ? undefined : this.getBelowTop(key);
    if (own === undefined && below === undefined) return;
    this.count--;
    if (below === undefined) top.map.delete(key);
    else {
      top.map.set(key, TOMBSTONE);
      top.tombstones++;
    }
  }

  /** A consistent copy of the live entries. */
  entries(): [KeyId, unknown][] {
    return readView(this.layers);
  }

  clear(): void {
    // Captures keep their own layer lists; the table starts afresh.
    this.layers = [new Layer()];
    this.count = 0;
  }

  /**
   * Loads entries into an empty, uncaptured table, as its base: the next capture's changes are the
   * writes made after the load.
   */
  load(entries: Iterable<readonly [KeyId, unknown]>): void {
    const base = this.layers[0]!;
    for (const [k, v] of entries) base.map.set(k, v);
    this.count = base.map.size;
    this.layers.push(new Layer());
  }

  /** O(layers): freezes the current state for a capture. */
  capture(): TableView {
    const layers = this.layers;
    const top = layers[layers.length - 1]!;
    if (top.map.size === 0 && layers.length > 1) {
      // Nothing written since the last capture: end at the frozen layer below, push nothing.
      const below = layers[layers.length - 2]!;
      below.refs++;
      return { table: this, layers: layers.slice(0, -1), top: below, changes: NO_CHANGES };
    }
    top.refs++;
    const view = { table: this, layers: layers.slice(), top, changes: top.map };
    layers.push(new Layer());
    return view;
  }

  /** Drops one capture's reference and merges the layers nobody needs apart any more. */
  release(view: TableView): void {
    let end = view.top;
    while (end.mergedInto !== undefined) end = end.mergedInto;
    end.refs--;
    this.compact();
  }

  private compact(): void {
    const layers = this.layers;
    let i = 0;
    // Frozen layers only: the top one holds the changes since the last capture.
    while (i < layers.length - 2) {
      const lower = layers[i]!;
      if (lower.refs > 0) {
        i++;
        continue;
      }
      const upper = layers[i + 1]!;
      const isBase = i === 0;
      for (const [k, v] of upper.map) {
        if (v === TOMBSTONE && isBase) lower.map.delete(k);
        else lower.map.set(k, v);
      }
      lower.refs += upper.refs;
      upper.mergedInto = lower;
      layers.splice(i + 1, 1);
    }
  }

  private getBelowTop(key: KeyId): unknown {
    const layers = this.layers;
    for (let i = layers.length - 2; i >= 0; i--) {
      const v = layers[i]!.map.get(key);
      if (v !== undefined) return v === TOMBSTONE ? undefined : v;
    }
    return undefined;
  }
}

/**
 * Calls `each` for every entry of a view's changes (the value, or `undefined` for a delete), pausing
 * every `chunk` entries. The changes of a view are frozen, so pauses are safe.
 */
export async function forEachChangeAsync(
  view: TableView,
  chunk: number,
  pause: () => Promise<void>,
  each: (key: KeyId, value: unknown) => void,
): Promise<void> {
  let n = 0;
  for (const [k, v] of view.changes) {
    each(k, v === TOMBSTONE ? undefined : v);
    if (++n % chunk === 0) await pause();
  }
}

/** The live entries of a view, top layer first, each key once. */
export function readView(layers: readonly Layer[]): [KeyId, unknown][] {
  const out: [KeyId, unknown][] = [];
  forEachInView(layers, (k, v) => {
    out.push([k, v]);
  });
  return out;
}

/** Calls `each` for every live entry of the view (top layer first, each key once). */
export function forEachInView(layers: readonly Layer[], each: (key: KeyId, value: unknown) => void): void {
  if (layers.length === 1) {
    for (const [k, v] of layers[0]!.map) if (v !== TOMBSTONE) each(k, v);
    return;
  }
  const seen = new Set<KeyId>();
  for (let i = layers.length - 1; i >= 0; i--) {
    const isBase = i === 0;
    for (const [k, v] of layers[i]!.map) {
      if (seen.has(k)) continue;
      if (!isBase) seen.add(k);
      if (v !== TOMBSTONE) each(k, v);
    }
  }
}

/**
 * Async form of `forEachInView`: yields to the event loop via `pause()` every `chunk` entries, so
 * processing goes on meanwhile. Safe against merges and writes between the pauses (class comment).
 */
export async function forEachInViewAsync(
  layers: readonly Layer[],
  chunk: number,
  pause: () => Promise<void>,
  each: (key: KeyId, value: unknown) => void,
): Promise<void> {
  const seen = new Set<KeyId>();
  let n = 0;
  for (let i = layers.length - 1; i >= 0; i--) {
    const isBase = i === 0;
    for (const [k, v] of layers[i]!.map) {
      if (seen.has(k)) continue;
      if (!isBase) seen.add(k);
      if (v !== TOMBSTONE) each(k, v);
      if (++n % chunk === 0) await pause();
    }
  }
}
