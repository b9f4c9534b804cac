import type { FaultInjector, FaultPoint } from '../runtime/faults.ts';

/** The error a FaultPlan throws; tests tell injected failures from real ones by it. */
export class InjectedFault extends Error {
  readonly point: string;
  constructor(point: string, detail: string) {
    super(`injected fault at ${point} (${detail})`);
    this.name = 'InjectedFault';
    this.point = point;
  }
}

export interface FaultPlan {
  /** Pass as `faults` in the job options. */
  readonly injector: FaultInjector;
  /** Call inside user functions: throws an InjectedFault with the plan's probability. */
  maybe(label: string): void;
  /** Faults injected so far, per point or label. */
  readonly injected: Map<string, number>;
  total(): number;
  /** Stop injecting (for the last stretch of a run). */
  disarm(): void;
}

/**
 * Deterministic random faults (a seeded PRNG): each named point fails with its probability until
 * `max` faults in total were injected.
 */
export function plannedFaults(options: {
  seed: number;
  probability: Partial<Record<FaultPoint | 'user', number>>;
  max: number;
}): FaultPlan {
  let state = options.seed >>> 0 || 1;
  const random = () => {
    // xorshift32
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  const injected = new Map<string, number>();
  let armed = true;
  const total = () => [...injected.values()].reduce((a, b) => a + b, 0);
  const hit = (point: string, p: number | undefined, detail: string) => {
    if (!armed || p === undefined || total() >= options.max) return;
    if (random() < p) {
      injected.set(point, (injected.get(point) ?? 0) + 1);
      throw new InjectedFault(point, detail);
    }
  };
  return {
    injector: (point, info) =>
      hit(point, options.probability[point], `${info.taskId} checkpoint ${info.checkpointId}`),
    maybe: (label) => hit('user', options.probability.user, label),
    injected,
    total,
    disarm: () => {
      armed = false;
    },
  };
}
