import type { DataStream, KeyedStream } from '../datastream/index.ts';
import type {
  EvaluationRecord,
  LearnerOutput,
  OnlineLearner,
  Prediction,
  PublishedModel,
  RejectedRecord,
  ScoringRecord,
} from './learner.ts';
import type { TrainingExample } from './model.ts';

/** The outputs of an online learner, split by type. */
export interface LearningStreams<SC, PRED> {
  /** Everything the learner emits, in order. */
  readonly all: DataStream<LearnerOutput<SC, PRED>>;
  readonly predictions: DataStream<Prediction<SC, PRED>>;
  /** Publications of changed models: sink them to a compacted topic keyed by `model`. */
  readonly models: DataStream<PublishedModel>;
  readonly evaluations: DataStream<EvaluationRecord>;
  readonly rejected: DataStream<RejectedRecord>;
}

/**
 * Wires a learner into a job: `train` (input 1) and `score` (input 2) must be keyed by the same
 * string model key, and so partitioned alike (co-partitioned topics keyed by the model key, or
 * `keyBy(..., { repartition: true })`).
 *
 *   const { predictions, models } = onlineLearning(
 *     points.keyBy((p) => p.model), queries.keyBy((q) => q.model),
 *     new OnlineLearner({ model: logisticRegression({ dimensions: 3 }) }), { uid: 'lr' });
 */
export function onlineLearning<TR extends TrainingExample, SC extends ScoringRecord, P, PRED>(
  train: KeyedStream<TR, string>,
  score: KeyedStream<SC, string>,
  learner: OnlineLearner<TR, SC, P, PRED>,
  options: { readonly uid: string },
): LearningStreams<SC, PRED> {
  const all = train.connect(score).process(learner, { uid: options.uid });
  const only = <T extends LearnerOutput<SC, PRED>>(type: T['type']): DataStream<T> =>
    all.flatMap((o) => (o.type === type ? [o as T] : []));
  return {
    all,
    predictions: only<Prediction<SC, PRED>>('prediction'),
    models: only<PublishedModel>('model'),
    evaluations: only<EvaluationRecord>('evaluation'),
    rejected: only<RejectedRecord>('rejected'),
  };
}
