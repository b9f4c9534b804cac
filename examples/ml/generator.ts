/**
 * The example's data: a labelled stream whose true models are known.
 *
 * - Models `lr-0` .. `lr-<n-1>`: logistic regression over 4 features, x ~ N(0, I), label 1 with
 *   probability sigmoid(bias + w.x); each model has its own true weights (`logisticTruth`).
 * - Models `km-0` .. `km-<n-1>`: 2-d points around 3 true centers (`kmeansTruth`), noise sigma 1.
 *
 * Record i of the stream is a pure function of (seed, i), so a checker can regenerate any part of it.
 * Every 10th training record is also asked as a query on the scoring topic.
 */
import { createKafka, type KafkaConnection } from '../../connectors/kafka/index.ts';
import {
  centerError,
  clusterPoint,
  distance,
  gaussian,
  logisticPoint,
  type PublishedModel,
  seededRandom,
} from '../../framework/index.ts';

export interface TrainRecord {
  readonly model: string;
  readonly features: number[];
  readonly label: number;
}

export interface QueryRecord {
  readonly model: string;
  readonly id: number;
  readonly features: number[];
}

export const LR_DIMENSIONS = 4;
export const KM_DIMENSIONS = 2;
export const KM_K = 3;
export const QUERY_EVERY = 10;

/** The true weights and bias of model `lr-<i>`. */
export function logisticTruth(i: number): { weights: number[]; bias: number } {
  const r = seededRandom(1000 + i);
  return {
    weights: Array.from({ length: LR_DIMENSIONS }, () => Math.round((r() * 6 - 3) * 10) / 10),
    bias: 0.5 - i * 0.25,
  };
}

/** The true centers of model `km-<i>`: 3 points on a circle of radius 6, turned by 0.3 i radians. */
export function kmeansTruth(i: number): number[][] {
  return Array.from({ length: KM_K }, (_, j) => {
    const a = (2 * Math.PI * j) / KM_K + 0.3 * i;
    return [Math.round(6 * Math.cos(a) * 1e6) / 1e6, Math.round(6 * Math.sin(a) * 1e6) / 1e6];
  });
}

/** Where every k-means model starts: the same directions, radius 1 (far from the truth). */
export const KM_INITIAL_CENTERS = Array.from({ length: KM_K }, (_, j) => {
  const a = (2 * Math.PI * j) / KM_K;
  return [Math.cos(a), Math.sin(a)];
});

/** Distance of a published model to its true model. */
export function distanceToTruth(m: PublishedModel): number {
  const i = Number(m.model.split('-')[1]);
  if (m.kind === 'logistic-regression') {
    const p = m.params as { weights: number[]; bias: number };
    const t = logisticTruth(i);
    return distance([...p.weights, p.bias], [...t.weights, t.bias]);
  }
  return centerError((m.params as { centers: number[][] }).centers, kmeansTruth(i));
}

/** Training record i of the stream: models alternate lr-0, km-0, lr-1, km-1, ... */
export function trainRecord(seed: number, models: number, i: number): TrainRecord {
  const random = seededRandom(seed * 1_000_003 + i);
  const normal = gaussian(random);
  const m = Math.floor(i / 2) % models;
  if (i % 2 === 0) return { model: `lr-${m}`, ...logisticPoint(random, normal, logisticTruth(m)) };
  return { model: `km-${m}`, ...clusterPoint(random, normal, kmeansTruth(m), 1) };
}

/** The query asked after training record i (every QUERY_EVERY-th record), or undefined. */
export function queryRecord(seed: number, models: number, i: number): QueryRecord | undefined {
  if (i % QUERY_EVERY !== 0) return undefined;
  const r = trainRecord(seed, models, i);
  return { model: r.model, id: i, features: r.features };
}

/** Produces training records [from, to) and their queries, keyed by model (so partitioned by it). */
export async function produceRange(o: {
  connection: KafkaConnection;
  train: string;
  score: string;
  seed: number;
  models: number;
  from: number;
  to: number;
}): Promise<void> {
  const producer = createKafka(o.connection, '-ml-generator').producer({
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    for (let i = o.from; i < o.to; i += 2000) {
      const train: { key: string; value: string }[] = [];
      const score: { key: string; value: string }[] = [];
      for (let j = i; j < Math.min(o.to, i + 2000); j++) {
        const r = trainRecord(o.seed, o.models, j);
        train.push({ key: r.model, value: JSON.stringify(r) });
        const q = queryRecord(o.seed, o.models, j);
        if (q) score.push({ key: q.model, value: JSON.stringify(q) });
      }
      await whenTopicsKnown(() =>
        producer.sendBatch({
          topicMessages: [
            { topic: o.train, messages: train },
            { topic: o.score, messages: score },
          ],
        }),
      );
    }
  } finally {
    await producer.disconnect();
  }
}

/** Retries a send while topics created a moment ago are not yet known to every part of the broker. */
async function whenTopicsKnown(send: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await send();
      return;
    } catch (e) {
      if ((e as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION' || attempt >= 40) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
