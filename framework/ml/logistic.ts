import { StreamError } from '../api/errors.ts';
import { canonical, checkFeatures, describe, type ModelEvaluation, type OnlineModel } from './model.ts';
import { inverseScaling, type LearningRateSchedule, learningRate, validateSchedule } from './schedule.ts';

export interface LogisticRegressionOptions {
  /** Number of features. */
  readonly dimensions: number;
  /** Default `inverseScaling(0.5, 0.5)`: 0.5 / sqrt(t). */
  readonly schedule?: LearningRateSchedule;
  /** L2 regularisation strength (lambda), applied to the weights, not the bias. Default 0. */
  readonly l2?: number;
  /** Probability from which the predicted label is 1. Default 0.5. */
  readonly threshold?: number;
}

/** State of a logistic regression: plain numbers, stored as they are in keyed state. */
export interface LogisticParams {
  /** Updates made so far (the schedule's t of the next update is step + 1). */
  readonly step: number;
  readonly weights: readonly number[];
  readonly bias: number;
}

export interface LogisticPrediction {
  /** P(label = 1 | features). */
  readonly probability: number;
  readonly label: 0 | 1;
}

/**
 * Binary logistic regression trained by stochastic gradient descent, one example at a time:
 *
 *     z = bias + sum_i w_i x_i          p = sigmoid(z)          g = p - y      (y in {0, 1})
 *     eta = learningRate(schedule, step + 1)
 *     w_i <- w_i - eta * (g * x_i + l2 * w_i)
 *     bias <- bias - eta * g
 *
 * i.e. a gradient step on the log loss `-(y log p + (1 - y) log(1 - p)) + l2/2 |w|^2`. The
 * prequential loss is the log loss of the example before the step (computed from z without
 * overflow), `correct` compares the thresholded prediction with the label.
 */
export function logisticRegression(
  o: LogisticRegressionOptions,
): OnlineModel<LogisticParams, LogisticPrediction> {
  const where = 'logisticRegression';
  const d = o.dimensions;
  if (!(Number.isInteger(d) && d >= 1)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}: dimensions must be an integer >= 1, got ${describe(d)}`,
    );
  }
  const schedule = o.schedule ?? inverseScaling(0.5, 0.5);
  validateSchedule(schedule, where);
  const l2 = o.l2 ?? 0;
  if (!(Number.isFinite(l2) && l2 >= 0)) {
    throw new StreamError('CONFIG_INVALID', `${where}: l2 must be a finite number >= 0, got ${describe(l2)}`);
  }
  const threshold = o.threshold ?? 0.5;
  if (!(threshold > 0 && threshold < 1)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}: threshold must be in (0, 1), got ${describe(threshold)}`,
    );
  }
  const kind = 'logistic-regression';
  return {
    kind,
    classifier: true,
    init: () => ({ step: 0, weights: new Array<number>(d).fill(0), bias: 0 }),
    check(e, role) {
      checkFeatures(kind, d, e.features, role);
      if (role === 'train' && e.label !== 0 && e.label !== 1) {
        throw new StreamError(
          'USER_FUNCTION_FAILED',
          `${kind}: a training record's label must be 0 or 1, got ${describe(e.label)}`,
        );
      }
    },
    predict(p, x) {
      const probability = sigmoid(margin(p, x));
      return { probability, label: probability >= threshold ? 1 : 0 };
    },
    evaluate(p, e): ModelEvaluation {
      const z = margin(p, e.features);
      return { loss: logLoss(z, e.label!), correct: (sigmoid(z) >= threshold ? 1 : 0) === e.label };
    },
    train(p, e) {
      const x = e.features;
      const t = p.step + 1;
      const eta = learningRate(schedule, t);
      const g = sigmoid(margin(p, x)) - e.label!;
      const weights = new Array<number>(d);
      for (let i = 0; i < d; i++) {
        const w = p.weights[i]!;
        weights[i] = canonical(w - eta * (g * x[i]! + l2 * w));
      }
      return { step: t, weights, bias: canonical(p.bias - eta * g) };
    },
    examples: (p) => p.step,
    publish: (p) => ({ weights: p.weights, bias: p.bias, step: p.step }),
  };
}

/** bias + sum_i w_i x_i, summed in index order. */
export function margin(p: LogisticParams, x: readonly number[]): number {
  let z = p.bias;
  for (let i = 0; i < p.weights.length; i++) z += p.weights[i]! * x[i]!;
  return z;
}

/** 1 / (1 + e^-z), without overflow for large |z|. */
export function sigmoid(z: number): number {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}

/** Log loss of label y in {0, 1} at margin z: log(1 + e^z) - y z, computed stably. */
export function logLoss(z: number, y: number): number {
  return Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z))) - y * z;
}
