import type { Clock } from '../api/clock.ts';

/** A processing-time clock that moves only when the test says so. */
export class ManualClock implements Clock {
  #now: number;
  #timers: { at: number; fn: () => void; live: boolean }[] = [];

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  schedule(at: number, fn: () => void): () => void {
    const t = { at, fn, live: true };
    if (at <= this.#now) {
      queueMicrotask(() => t.live && fn());
      return () => {
        t.live = false;
      };
    }
    this.#timers.push(t);
    return () => {
      t.live = false;
    };
  }

  /** Move time forward by `ms`, running every timer that falls due, in time order. */
  advance(ms: number): void {
    this.set(this.#now + ms);
  }

  set(time: number): void {
    if (time < this.#now) throw new Error(`ManualClock cannot go back from ${this.#now} to ${time}`);
    this.#now = time;
    const due = this.#timers.filter((t) => t.at <= time).sort((a, b) => a.at - b.at);
    this.#timers = this.#timers.filter((t) => t.at > time);
    for (const t of due) if (t.live) t.fn();
  }
}
