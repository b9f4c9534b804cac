import type { ModelEvaluation } from './model.ts';

/**
 * Prequential (test-then-train) statistics of one model: every training example is first scored
 * with the current parameters, then trained on. With a fading factor alpha (Gama, Sebastiao and
 * Rodrigues, "On evaluating stream learning algorithms", 2013) the estimates weigh the example
 * i steps back by alpha^i:
 *
 *     S <- loss + alpha * S;   C <- [correct] + alpha * C;   N <- 1 + alpha * N
 *     loss = S / N;   accuracy = C / N
 *
 * alpha = 1 gives the plain mean over all examples evaluated. Plain numbers, kept in keyed state.
 */
export interface PrequentialState {
  /** Examples evaluated (a model that cannot predict yet does not evaluate). */
  readonly evaluated: number;
  readonly lossSum: number;
  readonly correctSum: number;
  readonly weight: number;
}

export interface PrequentialSummary {
  readonly evaluated: number;
  /** Faded mean loss; null before the first evaluation. */
  readonly loss: number | null;
  /** Faded accuracy, for classifiers; null otherwise. */
  readonly accuracy: number | null;
}

export const EMPTY_PREQUENTIAL: PrequentialState = { evaluated: 0, lossSum: 0, correctSum: 0, weight: 0 };

export function addEvaluation(s: PrequentialState, e: ModelEvaluation, alpha: number): PrequentialState {
  return {
    evaluated: s.evaluated + 1,
    lossSum: e.loss + alpha * s.lossSum,
    correctSum: (e.correct ? 1 : 0) + alpha * s.correctSum,
    weight: 1 + alpha * s.weight,
  };
}

export function summarize(s: PrequentialState, classifier: boolean): PrequentialSummary {
  if (s.evaluated === 0) return { evaluated: 0, loss: null, accuracy: null };
  return {
    evaluated: s.evaluated,
    loss: s.lossSum / s.weight,
    accuracy: classifier ? s.correctSum / s.weight : null,
  };
}
