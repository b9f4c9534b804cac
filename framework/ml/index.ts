/** Online learning: models trained record by record, their parameters in keyed state. See docs/ml.md. */
export {
  type KMeansParams,
  type KMeansPrediction,
  type StreamingKMeansOptions,
  streamingKMeans,
} from './kmeans.ts';
export {
  END_OF_INPUT,
  type EvaluationRecord,
  type GaugeRegistry,
  type LearnerOutput,
  MODEL_STATE_NAME,
  type ModelState,
  OnlineLearner,
  type OnlineLearnerOptions,
  type Prediction,
  type PublishedModel,
  type RejectedRecord,
  type ScoringRecord,
} from './learner.ts';
export {
  type LogisticParams,
  type LogisticPrediction,
  type LogisticRegressionOptions,
  logisticRegression,
} from './logistic.ts';
export type { ModelEvaluation, OnlineModel, TrainingExample } from './model.ts';
export type { PrequentialState, PrequentialSummary } from './prequential.ts';
export {
  constantRate,
  inverseScaling,
  type LearningRateSchedule,
  learningRate,
  stepDecay,
} from './schedule.ts';
export { type LearningStreams, onlineLearning } from './streams.ts';
export { centerError, clusterPoint, distance, gaussian, logisticPoint, seededRandom } from './synthetic.ts';
