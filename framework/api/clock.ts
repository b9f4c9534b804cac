/**
 * Processing time, injected so tests can drive it (see testing/clock.ts). `schedule` calls `fn` once
 * the clock reaches `at` (at once when it already has) and returns a cancel function.
 */
export interface Clock {
  now(): number;
  schedule(at: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  schedule(at, fn) {
    const t = setTimeout(fn, Math.max(0, at - Date.now()));
    t.unref?.();
    return () => clearTimeout(t);
  },
};
