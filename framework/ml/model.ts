import { StreamError } from '../api/errors.ts';

/** One training example: a feature vector and, for supervised models, a label. */
export interface TrainingExample {
  readonly features: readonly number[];
  /** Required by supervised models (logistic regression: 0 or 1); ignored by k-means. */
  readonly label?: number;
}

/** How well the current parameters did on one example, measured before training on it. */
export interface ModelEvaluation {
  readonly loss: number;
  /** Classification models: whether the predicted class was the label. */
  readonly correct?: boolean;
}

/**
 * A model trained record by record. Implementations are pure functions over plain parameters
 * (numbers and arrays of numbers), so the parameters can live in managed keyed state and be
 * checkpointed, restored and published as they are.
 *
 * Contract:
 * - `train` and `init` return new objects and never change their arguments (state values are
 *   immutable: a checkpoint may still be serializing the previous parameters).
 * - Every number in the parameters is finite or the result of the same arithmetic, and never -0:
 *   parameters go through `canonical` (the state serializer writes -0 as 0, so a restored model
 *   would otherwise differ bitwise from one that never failed).
 * - Deterministic: the same examples in the same order give bitwise the same parameters.
 * - `check` throws a StreamError saying what is wrong with an example or query (wrong number of
 *   features, non-finite values, a missing or invalid label) before anything else sees it.
 */
export interface OnlineModel<P, PRED> {
  /** E.g. `logistic-regression`, `k-means`; part of every published model. */
  readonly kind: string;
  /** Whether `evaluate` says if the prediction was correct (prequential accuracy is reported then). */
  readonly classifier: boolean;
  /** The parameters of a model that has seen no example. */
  init(): P;
  /** Throws a StreamError (USER_FUNCTION_FAILED) naming the problem. */
  check(example: TrainingExample, role: 'train' | 'score'): void;
  /** The prediction for `features`, or undefined while the model cannot predict yet. */
  predict(params: P, features: readonly number[]): PRED | undefined;
  /** The loss on `example` before training on it (prequential), or undefined when not defined yet. */
  evaluate(params: P, example: TrainingExample): ModelEvaluation | undefined;
  /** The parameters after one more example. */
  train(params: P, example: TrainingExample): P;
  /** Examples trained on so far (counted by the model itself). */
  examples(params: P): number;
  /** What is published: the part of the parameters a reader needs to predict. */
  publish(params: P): unknown;
}

/** `x` with -0 turned into 0 (every other value unchanged, NaN stays NaN). */
export function canonical(x: number): number {
  return x + 0;
}

/**
 * Checks the feature vector of an example or query: `dimensions` finite numbers.
 * Throws USER_FUNCTION_FAILED naming the model kind and the problem.
 */
export function checkFeatures(kind: string, dimensions: number, features: unknown, role: string): void {
  if (!Array.isArray(features)) {
    throw new StreamError(
      'USER_FUNCTION_FAILED',
      `${kind}: a ${role} record's features must be an array of ${dimensions} numbers, got ${describe(features)}`,
    );
  }
  if (features.length !== dimensions) {
    throw new StreamError(
      'USER_FUNCTION_FAILED',
      `${kind}: a ${role} record has ${features.length} features, the model has ${dimensions} dimensions`,
    );
  }
  for (let i = 0; i < features.length; i++) {
    const v = features[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new StreamError(
        'USER_FUNCTION_FAILED',
        `${kind}: feature ${i} of a ${role} record is ${describe(v)}; features must be finite numbers`,
      );
    }
  }
}

export function describe(v: unknown): string {
  if (typeof v === 'number') return String(v);
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
