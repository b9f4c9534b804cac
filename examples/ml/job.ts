/**
 * The online-learning example job: two kinds of model trained from one labelled stream, scored from
 * a second one, published to a compacted topic.
 *
 *   train (key: model id, value: { model, features, label })   score (key: model id, value: { model, id, features })
 *      |                                                          |
 *      +-- lr-* --> OnlineLearner(logistic regression) <-- lr-* --+
 *      +-- km-* --> OnlineLearner(streaming k-means)   <-- km-* --+
 *                          |                   |
 *                     predictions          models (compacted, key: model id; the newest parameters)
 *
 * Both input topics are keyed by the model id, so they are co-partitioned and every model lives in
 * exactly one task. All outputs go through exactly-once Kafka sinks: a published model becomes
 * visible when the checkpoint whose state covers it has committed.
 */
import { KafkaSink, KafkaSource } from '../../connectors/kafka/index.ts';
import {
  type GaugeRegistry,
  inverseScaling,
  logisticRegression,
  OnlineLearner,
  type OnlineModel,
  onlineLearning,
  type Prediction,
  type PublishedModel,
  StreamJob,
  streamingKMeans,
} from '../../framework/index.ts';
import {
  KM_DIMENSIONS,
  KM_INITIAL_CENTERS,
  KM_K,
  LR_DIMENSIONS,
  type QueryRecord,
  type TrainRecord,
} from './generator.ts';

export interface MlTopics {
  readonly train: string;
  readonly score: string;
  readonly predictions: string;
  /** Create it with cleanup.policy=compact. */
  readonly models: string;
}

/** The two models of the example, as the job and any checker build them. */
export function exampleModels(): { lr: OnlineModel<unknown, unknown>; km: OnlineModel<unknown, unknown> } {
  return {
    lr: logisticRegression({
      dimensions: LR_DIMENSIONS,
      schedule: inverseScaling(0.5, 0.5),
      l2: 1e-5,
    }) as OnlineModel<unknown, unknown>,
    km: streamingKMeans({
      k: KM_K,
      dimensions: KM_DIMENSIONS,
      batchSize: 10,
      decayFactor: 0.99,
      initialCenters: KM_INITIAL_CENTERS,
    }) as OnlineModel<unknown, unknown>,
  };
}

export function mlJob(
  o: MlTopics & { jobId: string; publishIntervalMs?: number; metrics?: GaugeRegistry },
): StreamJob {
  const job = new StreamJob(o.jobId);
  const train = job.source(new KafkaSource<TrainRecord>({ topic: o.train }));
  const score = job.source(new KafkaSource<QueryRecord>({ topic: o.score }));
  const models = exampleModels();
  const learners = (['lr', 'km'] as const).map((kind) =>
    onlineLearning(
      train.filter((r) => r.model.startsWith(`${kind}-`)).keyBy((r) => r.model),
      score.filter((q) => q.model.startsWith(`${kind}-`)).keyBy((q) => q.model),
      new OnlineLearner<TrainRecord, QueryRecord, unknown, unknown>({
        model: models[kind],
        publishIntervalMs: o.publishIntervalMs ?? 500,
        evaluateEvery: 0,
        ...(o.metrics ? { metrics: o.metrics } : {}),
      }),
      { uid: `learner-${kind}` },
    ),
  );
  const [lr, km] = learners as [(typeof learners)[0], (typeof learners)[0]];
  lr.models.union(km.models).sinkTo(
    new KafkaSink<PublishedModel>({
      topic: o.models,
      encode: (m) => ({ key: m.model, value: JSON.stringify(m) }),
    }),
  );
  lr.predictions.union(km.predictions).sinkTo(
    new KafkaSink<Prediction<QueryRecord, unknown>>({
      topic: o.predictions,
      encode: (p) => ({
        key: p.model,
        value: JSON.stringify({
          model: p.model,
          id: p.query.id,
          trained: p.trained,
          prediction: p.prediction,
        }),
      }),
    }),
  );
  return job;
}
