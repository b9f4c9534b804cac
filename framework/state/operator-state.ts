import { StreamError } from '../api/errors.ts';
import type { Serializer } from '../api/serializer.ts';
import type { ListState, MapState, OperatorStateStore } from '../api/state.ts';
import { checkSerializerCompatible, defaultSerializer } from './serializers.ts';
import { mapKeyOf, userKeyOf } from './value-codec.ts';

/**
 * Operator (non-keyed) state: per-task list state redistributed by `split` or `union` when the
 * parallelism changes, and broadcast state (a map every task holds the same copy of).
 *
 * Operator state is small by design: `snapshot()` serializes it synchronously at the barrier, so no
 * copy-on-write is needed. A restored state is kept as bytes until the operator asks for it by name;
 * that checks its mode and serializer and decodes it. States restored but never asked for are handed
 * on unchanged to the next snapshots.
 */

export type OperatorStateMode = 'split' | 'union' | 'broadcast';

export const OPERATOR_SNAPSHOT_FORMAT_VERSION = 1;

/** The snapshot of one task's operator state; elements are serializer bytes, so it redistributes without decoding. */
export interface OperatorStateSnapshot {
  readonly formatVersion: 1;
  readonly states: readonly OperatorStateSnapshotEntry[];
}

export interface OperatorStateSnapshotEntry {
  readonly name: string;
  readonly mode: OperatorStateMode;
  readonly serializerId: string;
  readonly serializerVersion: number;
  /** One element each for list state; one `[key, value]` entry each for broadcast state. */
  readonly elements: readonly Uint8Array[];
}

interface ListEntry {
  readonly kind: 'list';
  readonly mode: 'split' | 'union';
  readonly serializer: Serializer<unknown>;
  items: unknown[];
  readonly handle: ListState<unknown>;
}

interface BroadcastEntry {
  readonly kind: 'broadcast';
  readonly mode: 'broadcast';
  readonly serializer: Serializer<[unknown, unknown]>;
  readonly map: Map<unknown, unknown>;
  readonly handle: MapState<unknown, unknown>;
}

type Entry = ListEntry | BroadcastEntry;

export class OperatorStateStoreImpl implements OperatorStateStore {
  readonly #states = new Map<string, Entry>();
  #restored = new Map<string, OperatorStateSnapshotEntry>();

  getListState<T>(name: string, serializer?: Serializer<T>): ListState<T> {
    return this.#list(name, 'split', serializer) as ListState<T>;
  }

  getUnionListState<T>(name: string, serializer?: Serializer<T>): ListState<T> {
    return this.#list(name, 'union', serializer) as ListState<T>;
  }

  getBroadcastState<K, V>(name: string, serializer?: Serializer<[K, V]>): MapState<K, V> {
    const s = (serializer ?? defaultSerializer()) as Serializer<[unknown, unknown]>;
    const existing = this.#states.get(name);
    if (existing !== undefined) {
      checkSame(name, existing, 'broadcast', s);
      return existing.handle as MapState<K, V>;
    }
    const map = new Map<unknown, unknown>();
    for (const bytes of this.#take(name, 'broadcast', s)) {
      const [k, v] = decodeBroadcastEntry(name, s, bytes);
      map.set(mapKeyOf(k, name), v);
    }
    const handle = broadcastHandle(name, map);
    this.#states.set(name, { kind: 'broadcast', mode: 'broadcast', serializer: s, map, handle });
    return handle as MapState<K, V>;
  }

  /** Synchronous: serializes every state now. */
  snapshot(): OperatorStateSnapshot {
    const states: OperatorStateSnapshotEntry[] = [];
    for (const [name, e] of this.#states) {
      const elements: Uint8Array[] = [];
      if (e.kind === 'list') {
        for (const item of e.items) elements.push(e.serializer.serialize(item));
      } else {
        for (const [mk, v] of e.map) elements.push(e.serializer.serialize([userKeyOf(mk), v]));
      }
      states.push({
        name,
        mode: e.mode,
        serializerId: e.serializer.id,
        serializerVersion: e.serializer.version,
        elements,
      });
    }
    for (const restored of this.#restored.values()) states.push(restored);
    return { formatVersion: OPERATOR_SNAPSHOT_FORMAT_VERSION, states };
  }

  /**
   * Replaces all operator state by the snapshot's. States already asked for are checked and decoded
   * now; the others when they are asked for. A refused snapshot leaves the state untouched.
   */
  restore(snapshot: OperatorStateSnapshot): void {
    checkOperatorSnapshotFormat(snapshot);
    const byName = new Map<string, OperatorStateSnapshotEntry>();
    for (const s of snapshot.states) {
      if (byName.has(s.name)) {
        throw new StreamError('CHECKPOINT_CORRUPT', `operator state snapshot holds state '${s.name}' twice`);
      }
      byName.set(s.name, s);
    }
    const decoded = new Map<string, unknown[]>();
    for (const [name, e] of this.#states) {
      const s = byName.get(name);
      if (s === undefined) continue;
      checkRestorable(name, s, e.mode, e.serializer);
      decoded.set(
        name,
        s.elements.map((b) =>
          e.kind === 'list' ? e.serializer.deserialize(b) : decodeBroadcastEntry(name, e.serializer, b),
        ),
      );
      byName.delete(name);
    }
    for (const [name, e] of this.#states) {
      const items = decoded.get(name) ?? [];
      if (e.kind === 'list') {
        e.items = items;
      } else {
        e.map.clear();
        for (const entry of items as [unknown, unknown][]) e.map.set(mapKeyOf(entry[0], name), entry[1]);
      }
    }
    this.#restored = byName;
  }

  #list(
    name: string,
    mode: 'split' | 'union',
    serializer: Serializer<unknown> | undefined,
  ): ListState<unknown> {
    const s = serializer ?? defaultSerializer();
    const existing = this.#states.get(name);
    if (existing !== undefined) {
      checkSame(name, existing, mode, s);
      return existing.handle as ListState<unknown>;
    }
    const items = this.#take(name, mode, s).map((b) => s.deserialize(b));
    const entry: ListEntry = {
      kind: 'list',
      mode,
      serializer: s,
      items,
      handle: {
        get: () => entry.items.slice(),
        add: (v) => {
          entry.items.push(v);
        },
        addAll: (vs) => {
          for (const v of vs) entry.items.push(v);
        },
        update: (vs) => {
          entry.items = vs.slice();
        },
        clear: () => {
          entry.items = [];
        },
      },
    };
    this.#states.set(name, entry);
    return entry.handle;
  }

  /** The restored elements of `name`, checked against how it is asked for now. */
  #take(name: string, mode: OperatorStateMode, serializer: Serializer<unknown>): readonly Uint8Array[] {
    const restored = this.#restored.get(name);
    if (restored === undefined) return [];
    checkRestorable(name, restored, mode, serializer);
    this.#restored.delete(name);
    return restored.elements;
  }
}

function decodeBroadcastEntry(
  name: string,
  s: Serializer<[unknown, unknown]>,
  bytes: Uint8Array,
): [unknown, unknown] {
  const entry: unknown = s.deserialize(bytes);
  if (!Array.isArray(entry) || entry.length !== 2) {
    throw new StreamError(
      'CHECKPOINT_CORRUPT',
      `broadcast state '${name}' holds an element that is not a [key, value] entry`,
    );
  }
  return [entry[0], entry[1]];
}

function broadcastHandle(name: string, map: Map<unknown, unknown>): MapState<unknown, unknown> {
  const entries = (): [unknown, unknown][] => [...map].map(([mk, v]) => [userKeyOf(mk), v]);
  return {
    get: (k) => map.get(mapKeyOf(k, name)),
    put: (k, v) => {
      map.set(mapKeyOf(k, name), v);
    },
    putAll: (items) => {
      for (const [k, v] of items) map.set(mapKeyOf(k, name), v);
    },
    remove: (k) => {
      map.delete(mapKeyOf(k, name));
    },
    contains: (k) => map.has(mapKeyOf(k, name)),
    entries,
    keys: () => [...map.keys()].map(userKeyOf),
    values: () => [...map.values()],
    isEmpty: () => map.size === 0,
    clear: () => map.clear(),
  };
}

function checkSame(
  name: string,
  existing: Entry,
  mode: OperatorStateMode,
  serializer: Serializer<unknown>,
): void {
  if (existing.mode !== mode) {
    throw new StreamError(
      'STATE_DESCRIPTOR_CONFLICT',
      `operator state '${name}' was registered as ${describeMode(existing.mode)} and now as ${describeMode(mode)}`,
    );
  }
  if (existing.serializer.id !== serializer.id || existing.serializer.version !== serializer.version) {
    throw new StreamError(
      'STATE_DESCRIPTOR_CONFLICT',
      `operator state '${name}' was registered with serializer '${existing.serializer.id}' ` +
        `v${existing.serializer.version} and now with '${serializer.id}' v${serializer.version}`,
    );
  }
}

function checkRestorable(
  name: string,
  restored: OperatorStateSnapshotEntry,
  mode: OperatorStateMode,
  serializer: Pick<Serializer<unknown>, 'id' | 'version'>,
): void {
  if (restored.mode !== mode) {
    throw new StreamError(
      'STATE_DESCRIPTOR_CONFLICT',
      `operator state '${name}' is ${describeMode(restored.mode)} in the snapshot but is now asked for as ${describeMode(mode)}`,
    );
  }
  checkSerializerCompatible(restored, serializer);
}

function describeMode(mode: OperatorStateMode): string {
  return mode === 'broadcast' ? 'broadcast state' : `${mode} list state`;
}

function checkOperatorSnapshotFormat(snapshot: OperatorStateSnapshot): void {
  if (snapshot.formatVersion !== OPERATOR_SNAPSHOT_FORMAT_VERSION) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `operator state snapshot has format version ${String(snapshot.formatVersion)}; this build reads version ${OPERATOR_SNAPSHOT_FORMAT_VERSION}`,
    );
  }
}

/**
 * Redistributes the operator state of `snapshots` (one per old task, index = old task) over
 * `newParallelism` tasks. Pure; works on bytes.
 * - split: the elements of all old tasks, in task order, cut into contiguous ranges whose sizes
 *   differ by at most one (new task i gets elements [⌊i·n/p⌋, ⌊(i+1)·n/p⌋));
 * - union: every new task gets all elements of all old tasks;
 * - broadcast: every new task gets old task 0's map (all tasks hold the same map, by contract).
 * Every new snapshot lists every state, possibly with no elements.
 */
export function redistributeOperatorState(
  snapshots: readonly OperatorStateSnapshot[],
  newParallelism: number,
): OperatorStateSnapshot[] {
  if (!Number.isSafeInteger(newParallelism) || newParallelism < 1) {
    throw new StreamError(
      'CONFIG_INVALID',
      `the new parallelism must be a positive integer, got ${newParallelism}`,
    );
  }
  const merged = new Map<
    string,
    { first: OperatorStateSnapshotEntry; version: number; parts: OperatorStateSnapshotEntry[] }
  >();
  snapshots.forEach((snapshot, task) => {
    checkOperatorSnapshotFormat(snapshot);
    for (const s of snapshot.states) {
      const m = merged.get(s.name);
      if (m === undefined) {
        merged.set(s.name, { first: s, version: s.serializerVersion, parts: [s] });
        continue;
      }
      if (m.first.mode !== s.mode) {
        throw new StreamError(
          'STATE_DESCRIPTOR_CONFLICT',
          `operator state '${s.name}' is ${describeMode(m.first.mode)} in one task and ${describeMode(s.mode)} in task ${task}`,
        );
      }
      if (s.serializerId !== m.first.serializerId) {
        throw new StreamError(
          'SERIALIZER_MISMATCH',
          `operator state '${s.name}' was written with serializer '${m.first.serializerId}' in one task ` +
            `and '${s.serializerId}' in task ${task}`,
        );
      }
      m.version = Math.max(m.version, s.serializerVersion);
      m.parts.push(s);
    }
  });
  const out: OperatorStateSnapshotEntry[][] = Array.from({ length: newParallelism }, () => []);
  for (const [name, { first, version, parts }] of merged) {
    const base = { name, mode: first.mode, serializerId: first.serializerId, serializerVersion: version };
    if (first.mode === 'split') {
      const all = parts.flatMap((p) => p.elements);
      for (let i = 0; i < newParallelism; i++) {
        const from = Math.floor((i * all.length) / newParallelism);
        const to = Math.floor(((i + 1) * all.length) / newParallelism);
        out[i]!.push({ ...base, elements: all.slice(from, to) });
      }
    } else if (first.mode === 'union') {
      const all = parts.flatMap((p) => p.elements);
      for (const task of out) task.push({ ...base, elements: all });
    } else {
      for (const task of out) task.push({ ...base, elements: first.elements });
    }
  }
  return out.map((states) => ({ formatVersion: OPERATOR_SNAPSHOT_FORMAT_VERSION, states }));
}
