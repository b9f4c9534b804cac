import { isStreamError, StreamError } from '../api/errors.ts';
import type { Collector, KeyedContext, KeyedCoProcessFunction, OnTimerContext } from '../api/functions.ts';
import type { ValueStateDescriptor } from '../api/state.ts';
import { describe, type OnlineModel, type TrainingExample } from './model.ts';
import {
  addEvaluation,
  EMPTY_PREQUENTIAL,
  type PrequentialState,
  type PrequentialSummary,
  summarize,
} from './prequential.ts';

/** A record of the scoring input: anything with a feature vector (the whole record is echoed back). */
export interface ScoringRecord {
  readonly features: readonly number[];
}

/** The answer to one query, with the model as it was when the query arrived. */
export interface Prediction<SC, PRED> {
  readonly type: 'prediction';
  readonly operator: string;
  readonly model: string;
  readonly query: SC;
  /** Null while the model cannot predict (k-means before it has k centers). */
  readonly prediction: PRED | null;
  /** Examples the model had been trained on. */
  readonly trained: number;
}

/** A model's parameters as published (to a compacted topic keyed by `model`). */
export interface PublishedModel {
  readonly type: 'model';
  readonly operator: string;
  readonly model: string;
  readonly kind: string;
  readonly trained: number;
  /** `OnlineModel.publish(params)`: plain numbers and arrays of numbers. */
  readonly params: unknown;
  readonly prequential: PrequentialSummary;
}

/** The prequential estimates of a model, emitted every `evaluateEvery` training examples. */
export interface EvaluationRecord {
  readonly type: 'evaluation';
  readonly operator: string;
  readonly model: string;
  readonly trained: number;
  readonly prequential: PrequentialSummary;
}

/** A record the model refused, with `onInvalid: 'skip'`. */
export interface RejectedRecord {
  readonly type: 'rejected';
  readonly operator: string;
  readonly model: string;
  readonly input: 'train' | 'score';
  readonly reason: string;
  readonly record: unknown;
}

export type LearnerOutput<SC, PRED> =
  | Prediction<SC, PRED>
  | PublishedModel
  | EvaluationRecord
  | RejectedRecord;

/**
 * Where the learner's gauges go: the framework's `Metrics` (`createPrometheusMetrics()`) fits, as
 * does anything with the same `gauge` method (this library imports only the public API).
 */
export interface GaugeRegistry {
  gauge(spec: { readonly name: string; readonly help: string; readonly labels: readonly string[] }): {
    set(labels: Readonly<Record<string, string | number>>, value: number): void;
  };
}

export interface OnlineLearnerOptions<P, PRED> {
  readonly model: OnlineModel<P, PRED>;
  /**
   * A changed model is published at most this long after its first change since the last
   * publication (a processing-time timer), into the output of the task's current checkpoint
   * interval. Default 1000; 0 publishes at the next turn of the task loop.
   */
  readonly publishIntervalMs?: number;
  /** Fading factor alpha in (0, 1] of the prequential estimates (1: plain mean). Default 0.999. */
  readonly fadingFactor?: number;
  /** Emit an `evaluation` record every n training examples of a model; 0 (default) never. */
  readonly evaluateEvery?: number;
  /**
   * A record the model refuses (wrong number of features, non-finite values, a bad label):
   * `fail` (default) fails the task with USER_FUNCTION_FAILED naming the model; `skip` drops it and
   * emits a `rejected` record.
   */
  readonly onInvalid?: 'fail' | 'skip';
  /** Prequential gauges (see docs/ml.md); set whenever a model is published. */
  readonly metrics?: GaugeRegistry;
}

/** What the learner keeps per model key, in one value state (`ml.model`). */
export interface ModelState<P> {
  readonly params: P;
  readonly prequential: PrequentialState;
  /** Processing time of the pending publication, null when the model is published as it is. */
  readonly publishAt: number | null;
}

/** The learner's state descriptor: one value per model key. */
export const MODEL_STATE_NAME = 'ml.model';

/** Event time of the timer that publishes a changed model when a bounded input ends. */
export const END_OF_INPUT = Number.MAX_SAFE_INTEGER;

type Gauges = {
  loss: ReturnType<GaugeRegistry['gauge']>;
  accuracy: ReturnType<GaugeRegistry['gauge']>;
  trained: ReturnType<GaugeRegistry['gauge']>;
};

/**
 * The two-input online learning operator, a keyed co-process function over a string model key.
 *
 * - Input 1 trains: each record (features and, for supervised models, a label) is first scored by
 *   the current parameters (prequential loss and accuracy, test-then-train), then trained on.
 * - Input 2 scores: each record gets a `prediction` from the model's current parameters; the model
 *   is not changed.
 * - A changed model is `published` from a processing-time timer (`publishIntervalMs`) and, for
 *   bounded inputs, from an event-time timer at END_OF_INPUT. Emitted into an exactly-once Kafka
 *   sink, a publication commits with the task's next checkpoint, so a reader never sees parameters
 *   that a completed checkpoint does not cover (docs/ml.md, "Publication").
 *
 * All of a model's data lives in keyed state (parameters, prequential sums, the pending
 * publication), none in this object: one instance serves every task of the operator.
 */
export class OnlineLearner<TR extends TrainingExample, SC extends ScoringRecord, P, PRED>
  implements KeyedCoProcessFunction<string, TR, SC, LearnerOutput<SC, PRED>>
{
  readonly model: OnlineModel<P, PRED>;
  readonly #state: ValueStateDescriptor<ModelState<P>>;
  readonly #publishMs: number;
  readonly #alpha: number;
  readonly #evaluateEvery: number;
  readonly #onInvalid: 'fail' | 'skip';
  readonly #gauges: Gauges | undefined;

  constructor(o: OnlineLearnerOptions<P, PRED>) {
    const bad = (field: string, want: string, got: unknown): never => {
      throw new StreamError(
        'CONFIG_INVALID',
        `OnlineLearner: ${field} must be ${want}, got ${describe(got)}`,
      );
    };
    if (typeof o?.model?.train !== 'function') bad('model', 'an OnlineModel', o?.model);
    this.model = o.model;
    this.#publishMs = o.publishIntervalMs ?? 1000;
    if (!(Number.isFinite(this.#publishMs) && this.#publishMs >= 0)) {
      bad('publishIntervalMs', 'a finite number >= 0', this.#publishMs);
    }
    this.#alpha = o.fadingFactor ?? 0.999;
    if (!(this.#alpha > 0 && this.#alpha <= 1)) bad('fadingFactor', 'in (0, 1]', this.#alpha);
    this.#evaluateEvery = o.evaluateEvery ?? 0;
    if (!(Number.isInteger(this.#evaluateEvery) && this.#evaluateEvery >= 0)) {
      bad('evaluateEvery', 'an integer >= 0', this.#evaluateEvery);
    }
    this.#onInvalid = o.onInvalid ?? 'fail';
    if (this.#onInvalid !== 'fail' && this.#onInvalid !== 'skip')
      bad('onInvalid', "'fail' or 'skip'", o.onInvalid);
    this.#state = { kind: 'value', name: MODEL_STATE_NAME };
    const labels = ['job_id', 'operator', 'model'];
    this.#gauges = o.metrics && {
      loss: o.metrics.gauge({
        name: 'ml_prequential_loss',
        help: 'Prequential (test-then-train) loss of an online model, faded mean over its training examples',
        labels,
      }),
      accuracy: o.metrics.gauge({
        name: 'ml_prequential_accuracy',
        help: 'Prequential (test-then-train) accuracy of an online classifier, faded mean',
        labels,
      }),
      trained: o.metrics.gauge({
        name: 'ml_trained_examples',
        help: 'Training examples an online model has learned from (from its checkpointed state)',
        labels,
      }),
    };
  }

  processElement1(record: TR, ctx: KeyedContext<string>, out: Collector<LearnerOutput<SC, PRED>>): void {
    if (!this.#accept(record, 'train', ctx, out)) return;
    const state = ctx.getState(this.#state);
    const s = state.value() ?? { params: this.model.init(), prequential: EMPTY_PREQUENTIAL, publishAt: null };
    const evaluation = this.model.evaluate(s.params, record);
    const prequential = evaluation ? addEvaluation(s.prequential, evaluation, this.#alpha) : s.prequential;
    const params = this.model.train(s.params, record);
    let publishAt = s.publishAt;
    if (publishAt === null) {
      publishAt = ctx.currentProcessingTime() + this.#publishMs;
      ctx.timerService.registerProcessingTimeTimer(publishAt);
      ctx.timerService.registerEventTimeTimer(END_OF_INPUT);
    }
    state.update({ params, prequential, publishAt });
    const trained = this.model.examples(params);
    if (this.#evaluateEvery > 0 && trained % this.#evaluateEvery === 0) {
      out.collect({
        type: 'evaluation',
        operator: ctx.info.operatorUid,
        model: ctx.key,
        trained,
        prequential: summarize(prequential, this.model.classifier),
      });
    }
  }

  processElement2(query: SC, ctx: KeyedContext<string>, out: Collector<LearnerOutput<SC, PRED>>): void {
    if (!this.#accept(query, 'score', ctx, out)) return;
    const s = ctx.getState(this.#state).value();
    const params = s?.params ?? this.model.init();
    out.collect({
      type: 'prediction',
      operator: ctx.info.operatorUid,
      model: ctx.key,
      query,
      prediction: this.model.predict(params, query.features) ?? null,
      trained: this.model.examples(params),
    });
  }

  onTimer(timestamp: number, ctx: OnTimerContext<string>, out: Collector<LearnerOutput<SC, PRED>>): void {
    const state = ctx.getState(this.#state);
    const s = state.value();
    if (s === undefined || s.publishAt === null) return;
    // A processing-time timer of an earlier publication that was already made by END_OF_INPUT.
    if (ctx.timeDomain === 'processing' && timestamp !== s.publishAt) return;
    state.update({ ...s, publishAt: null });
    const published: PublishedModel = {
      type: 'model',
      operator: ctx.info.operatorUid,
      model: ctx.key,
      kind: this.model.kind,
      trained: this.model.examples(s.params),
      params: this.model.publish(s.params),
      prequential: summarize(s.prequential, this.model.classifier),
    };
    out.collect(published);
    const g = this.#gauges;
    if (g) {
      const labels = { job_id: ctx.info.jobId, operator: published.operator, model: published.model };
      g.trained.set(labels, published.trained);
      if (published.prequential.loss !== null) g.loss.set(labels, published.prequential.loss);
      if (published.prequential.accuracy !== null) g.accuracy.set(labels, published.prequential.accuracy);
    }
  }

  /** Checks a record with the model; false when it was skipped (`onInvalid: 'skip'`). */
  #accept(
    record: TrainingExample,
    input: 'train' | 'score',
    ctx: KeyedContext<string>,
    out: Collector<LearnerOutput<SC, PRED>>,
  ): boolean {
    try {
      if (record === null || typeof record !== 'object') {
        throw new StreamError(
          'USER_FUNCTION_FAILED',
          `a ${input} record must be an object, got ${describe(record)}`,
        );
      }
      this.model.check(record, input === 'train' ? 'train' : 'score');
      return true;
    } catch (e) {
      if (!isStreamError(e)) throw e;
      const reason = `model '${ctx.key}' (${this.model.kind}) refused a ${input === 'train' ? 'training' : 'scoring'} record: ${e.message}`;
      if (this.#onInvalid === 'fail') {
        throw new StreamError('USER_FUNCTION_FAILED', `${reason} (onInvalid: 'skip' drops such records)`, {
          cause: e,
        });
      }
      out.collect({
        type: 'rejected',
        operator: ctx.info.operatorUid,
        model: ctx.key,
        input,
        reason,
        record,
      });
      return false;
    }
  }
}
