import type { KeyId } from '../api/keys.ts';

/**
 * The timers of one keyed operator in one time domain: at most one timer per (timestamp, key),
 * fired in timestamp order. Deletion is lazy (the heap entry is skipped when popped).
 */
export class TimerQueue {
  /** Live timers, `${timestamp}|${keyId}` -> [timestamp, keyId]. */
  readonly #live = new Map<string, readonly [number, KeyId]>();
  /** Binary min-heap of [timestamp, keyId]; may hold deleted entries. */
  #heap: (readonly [number, KeyId])[] = [];

  get size(): number {
    return this.#live.size;
  }

  register(timestamp: number, key: KeyId): void {
    const id = `${timestamp}|${key}`;
    if (this.#live.has(id)) return;
    const entry = [timestamp, key] as const;
    this.#live.set(id, entry);
    this.#push(entry);
  }

  delete(timestamp: number, key: KeyId): void {
    this.#live.delete(`${timestamp}|${key}`);
  }

  /** Earliest live timestamp, or undefined. */
  peek(): number | undefined {
    this.#dropDeleted();
    return this.#heap[0]?.[0];
  }

  /** Remove and return the earliest timer with timestamp <= time, or undefined. */
  pollDue(time: number): readonly [number, KeyId] | undefined {
    this.#dropDeleted();
    const top = this.#heap[0];
    if (!top || top[0] > time) return undefined;
    this.#pop();
    this.#live.delete(`${top[0]}|${top[1]}`);
    return top;
  }

  /** All live timers (for snapshots), in no particular order. */
  toArray(): [number, KeyId][] {
    return [...this.#live.values()].map(([t, k]) => [t, k]);
  }

  restore(timers: readonly (readonly [number, KeyId])[]): void {
    this.#live.clear();
    this.#heap = [];
    for (const [t, k] of timers) this.register(t, k);
  }

  #dropDeleted(): void {
    while (this.#heap.length > 0) {
      const [t, k] = this.#heap[0]!;
      if (this.#live.has(`${t}|${k}`)) return;
      this.#pop();
    }
  }

  #push(entry: readonly [number, KeyId]): void {
    const h = this.#heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[l]!, h[m]!)) m = l;
      if (r < h.length && less(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

/** Timestamp order, then key order, so firing order is deterministic. */
function less(a: readonly [number, KeyId], b: readonly [number, KeyId]): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}
