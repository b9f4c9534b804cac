/**
 * A bound on concurrent work: `run(fn)` starts `fn` when fewer than `max` runs are active, otherwise
 * queues it (first in, first out). The S3 storage sends every request through one, so part uploads,
 * ranged downloads and whole-file requests of all tasks of a process share `concurrency` connections.
 * Runs must not call `run` of the same limit from inside (no nesting: that could deadlock).
 */
export class Limit {
  readonly max: number;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(max: number) {
    this.max = max;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active++;
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next !== undefined)
        next(); // the slot passes on: #active stays
      else this.#active--;
    }
  }
}
