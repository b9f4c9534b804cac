import { StreamError } from '../api/errors.ts';

/**
 * Learning-rate schedules for stochastic gradient descent, as plain data (so a model's
 * configuration can be logged and published). `t` is the 1-based number of the update: the first
 * example trains with `learningRate(s, 1)`.
 *
 * - `constant`: eta0.
 * - `inverse-scaling`: eta0 / t^power (scikit-learn's `invscaling`; power 0.5 is the classic
 *   1/sqrt(t), power 1 satisfies Robbins-Monro).
 * - `step-decay`: eta0 * gamma^floor((t - 1) / every): multiplied by gamma after every `every` updates.
 */
export type LearningRateSchedule =
  | { readonly kind: 'constant'; readonly eta0: number }
  | { readonly kind: 'inverse-scaling'; readonly eta0: number; readonly power: number }
  | { readonly kind: 'step-decay'; readonly eta0: number; readonly gamma: number; readonly every: number };

export const constantRate = (eta0: number): LearningRateSchedule => ({ kind: 'constant', eta0 });
export const inverseScaling = (eta0: number, power = 0.5): LearningRateSchedule => ({
  kind: 'inverse-scaling',
  eta0,
  power,
});
export const stepDecay = (eta0: number, gamma: number, every: number): LearningRateSchedule => ({
  kind: 'step-decay',
  eta0,
  gamma,
  every,
});

/** The learning rate of update `t` (1-based). */
export function learningRate(s: LearningRateSchedule, t: number): number {
  switch (s.kind) {
    case 'constant':
      return s.eta0;
    case 'inverse-scaling':
      return s.eta0 / t ** s.power;
    case 'step-decay':
      return s.eta0 * s.gamma ** Math.floor((t - 1) / s.every);
  }
}

/** Throws CONFIG_INVALID naming the field when the schedule cannot be used. */
export function validateSchedule(s: LearningRateSchedule, where: string): void {
  const bad = (field: string, want: string, got: unknown) => {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}: schedule.${field} must be ${want}, got ${JSON.stringify(got)}`,
    );
  };
  if (!positiveFinite(s.eta0)) bad('eta0', 'a positive finite number', s.eta0);
  switch (s.kind) {
    case 'constant':
      return;
    case 'inverse-scaling':
      if (!(Number.isFinite(s.power) && s.power >= 0)) bad('power', 'a finite number >= 0', s.power);
      return;
    case 'step-decay':
      if (!(Number.isFinite(s.gamma) && s.gamma > 0 && s.gamma <= 1)) bad('gamma', 'in (0, 1]', s.gamma);
      if (!(Number.isInteger(s.every) && s.every >= 1)) bad('every', 'an integer >= 1', s.every);
      return;
    default:
      bad('kind', "'constant', 'inverse-scaling' or 'step-decay'", (s as { kind: unknown }).kind);
  }
}

export function positiveFinite(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && x > 0;
}
