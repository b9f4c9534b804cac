/**
 * A brute-force model of the window semantics, for tests: every window is a list of its records,
 * found by scanning every candidate start; firings are recorded with the records the window holds.
 * It shares no code with the operators.
 *
 * Time: `advance(t)` is the watermark (event time) or the clock (processing time). Records of a
 * processing-time run carry the clock as their time, are never late and never fire at once.
 */
export type RefAssigner =
  | { readonly kind: 'fixed'; readonly size: number; readonly slide: number; readonly offset: number }
  | { readonly kind: 'session'; readonly gap: number };

export interface RefConfig {
  readonly assigner: RefAssigner;
  readonly lateness: number;
  /** `undefined`: the time trigger; a number: fire every n records. */
  readonly count?: number;
  readonly processing?: boolean;
}

export interface RefFiring<V> {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  readonly elements: V[];
}

interface RefWindow<V> {
  key: string;
  start: number;
  end: number;
  elements: V[];
  count: number;
  timerDone: boolean;
}

export class ReferenceWindows<V> {
  readonly fired: RefFiring<V>[] = [];
  readonly late: V[] = [];
  readonly #c: RefConfig;
  #windows: RefWindow<V>[] = [];
  #time = Number.NEGATIVE_INFINITY;

  constructor(config: RefConfig) {
    this.#c = config;
  }

  record(key: string, t: number, value: V): void {
    const c = this.#c;
    const now = c.processing ? Number.NEGATIVE_INFINITY : this.#time;
    const touched: RefWindow<V>[] = [];
    if (c.assigner.kind === 'fixed') {
      const { size, slide, offset } = c.assigner;
      const starts: number[] = [];
      for (let s = t - size + 1; s <= t; s++)
        if ((((s - offset) % slide) + slide) % slide === 0) starts.push(s);
      const alive = starts.filter((s) => s + size - 1 + c.lateness > now);
      if (alive.length === 0) {
        this.late.push(value);
        return;
      }
      for (const s of alive) {
        let w = this.#windows.find((x) => x.key === key && x.start === s);
        if (!w) {
          w = { key, start: s, end: s + size, elements: [], count: 0, timerDone: s + size - 1 <= now };
          this.#windows.push(w);
        }
        w.elements.push(value);
        touched.push(w);
      }
    } else {
      const gap = c.assigner.gap;
      const merging = this.#windows.filter((w) => w.key === key && w.start <= t + gap && w.end >= t);
      if (merging.length === 0 && t + gap - 1 + c.lateness <= now) {
        this.late.push(value);
        return;
      }
      merging.sort((a, b) => a.start - b.start);
      const w: RefWindow<V> = {
        key,
        start: Math.min(t, ...merging.map((m) => m.start)),
        end: Math.max(t + gap, ...merging.map((m) => m.end)),
        elements: [...merging.flatMap((m) => m.elements), value],
        count: merging.reduce((n, m) => n + m.count, 0),
        timerDone: false,
      };
      w.timerDone = w.end - 1 <= now;
      this.#windows = this.#windows.filter((x) => !merging.includes(x));
      this.#windows.push(w);
      touched.push(w);
    }
    for (const w of touched) {
      if (c.count !== undefined) {
        if (++w.count >= c.count) {
          w.count = 0;
          this.#fire(w);
        }
      } else if (!c.processing && w.end - 1 <= now) {
        this.#fire(w);
      }
    }
  }

  advance(time: number): void {
    if (time <= this.#time) return;
    this.#time = time;
    for (const w of this.#windows) {
      if (this.#c.count === undefined && !w.timerDone && w.end - 1 <= time) {
        w.timerDone = true;
        this.#fire(w);
      }
    }
    this.#windows = this.#windows.filter((w) => w.end - 1 + this.#c.lateness > time);
  }

  /** Windows still held (state that should be bounded). */
  get open(): number {
    return this.#windows.length;
  }

  #fire(w: RefWindow<V>): void {
    this.fired.push({ key: w.key, start: w.start, end: w.end, elements: [...w.elements] });
  }
}
