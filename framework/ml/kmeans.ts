import { StreamError } from '../api/errors.ts';
import { canonical, checkFeatures, describe, type OnlineModel, type TrainingExample } from './model.ts';

export interface StreamingKMeansOptions {
  readonly k: number;
  readonly dimensions: number;
  /** Points per update (a mini-batch, counted in points, so replays form the same batches). Default 1. */
  readonly batchSize?: number;
  /**
   * Forgetting, as Spark's StreamingKMeans: before each update every cluster's weight is multiplied
   * by `decayFactor` (timeUnit `batches`) or `decayFactor ^ points in the batch` (`points`).
   * 1 (default) remembers everything; 0 keeps only the newest batch.
   */
  readonly decayFactor?: number;
  /** Default `batches`. */
  readonly timeUnit?: 'batches' | 'points';
  /**
   * Starting centers (k arrays of `dimensions` numbers), each with weight `initialWeight`
   * (default 0: the first batch a center receives replaces it). Without them, the first k distinct
   * training points become the centers, with weight 1 each.
   */
  readonly initialCenters?: readonly (readonly number[])[];
  readonly initialWeight?: number;
}

/** State of a streaming k-means model: plain numbers, stored as they are in keyed state. */
export interface KMeansParams {
  /** Training points seen (including the ones that seeded centers and the buffered batch). */
  readonly points: number;
  /** Up to k centers; predictions start once there are k. */
  readonly centers: readonly (readonly number[])[];
  /** The (decayed) number of points behind each center. */
  readonly weights: readonly number[];
  /** Points of the current mini-batch, not yet applied. */
  readonly batch: readonly (readonly number[])[];
}

export interface KMeansPrediction {
  /** Index of the nearest center (ties go to the lower index). */
  readonly cluster: number;
  readonly squaredDistance: number;
}

/**
 * Streaming k-means with mini-batches and a decay factor, the update rule of Spark MLlib's
 * `StreamingKMeansModel.update` (and Flink ML's online k-means), applied per mini-batch of
 * `batchSize` points in arrival order:
 *
 *     a = decayFactor (batches) or decayFactor^m (points);   n_c <- a * n_c   for every c
 *     for each center c that got m_c > 0 points with sum s_c (nearest center, current centers):
 *       n' = n_c + m_c;   lambda = m_c / max(n', 1e-16);   n_c <- n'
 *       c <- (1 - lambda) * c + (lambda / m_c) * s_c
 *     a dying cluster (weight < 1e-8 * the largest) takes half of the largest one's weight and
 *     center, both moved apart by 1e-14 * max(|x|, 1) per coordinate.
 *
 * The prequential loss of a point is its squared distance to the nearest center before it is
 * trained on (once there are k centers).
 */
export function streamingKMeans(o: StreamingKMeansOptions): OnlineModel<KMeansParams, KMeansPrediction> {
  const where = 'streamingKMeans';
  const bad = (field: string, want: string, got: unknown): never => {
    throw new StreamError('CONFIG_INVALID', `${where}: ${field} must be ${want}, got ${describe(got)}`);
  };
  const { k, dimensions: d } = o;
  if (!(Number.isInteger(k) && k >= 1)) bad('k', 'an integer >= 1', k);
  if (!(Number.isInteger(d) && d >= 1)) bad('dimensions', 'an integer >= 1', d);
  const batchSize = o.batchSize ?? 1;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) bad('batchSize', 'an integer >= 1', batchSize);
  const decay = o.decayFactor ?? 1;
  if (!(Number.isFinite(decay) && decay >= 0 && decay <= 1)) bad('decayFactor', 'in [0, 1]', decay);
  const timeUnit = o.timeUnit ?? 'batches';
  if (timeUnit !== 'batches' && timeUnit !== 'points') bad('timeUnit', "'batches' or 'points'", timeUnit);
  const initialWeight = o.initialWeight ?? 0;
  if (!(Number.isFinite(initialWeight) && initialWeight >= 0)) {
    bad('initialWeight', 'a finite number >= 0', initialWeight);
  }
  const initial = o.initialCenters;
  if (initial !== undefined) {
    if (!Array.isArray(initial) || initial.length !== k) bad('initialCenters', `${k} centers`, initial);
    for (const c of initial) {
      if (
        !Array.isArray(c) ||
        c.length !== d ||
        !c.every((x) => typeof x === 'number' && Number.isFinite(x))
      ) {
        bad('each of initialCenters', `${d} finite numbers`, c);
      }
    }
  }
  const kind = 'k-means';
  return {
    kind,
    classifier: false,
    init: () => ({
      points: 0,
      centers: initial ? initial.map((c) => c.map(canonical)) : [],
      weights: initial ? new Array<number>(k).fill(initialWeight) : [],
      batch: [],
    }),
    check: (e, role) => checkFeatures(kind, d, e.features, role),
    predict(p, x) {
      if (p.centers.length < k) return undefined;
      const [cluster, squaredDistance] = nearest(p.centers, x);
      return { cluster, squaredDistance };
    },
    evaluate(p, e) {
      if (p.centers.length < k) return undefined;
      return { loss: nearest(p.centers, e.features)[1] };
    },
    train(p, e: TrainingExample) {
      const x = e.features.map(canonical);
      const points = p.points + 1;
      if (p.centers.length < k) {
        // Seeding: the first k distinct points become the centers.
        if (p.centers.some((c) => c.every((v, i) => v === x[i]))) return { ...p, points };
        return { ...p, points, centers: [...p.centers, x], weights: [...p.weights, 1] };
      }
      const batch = [...p.batch, x];
      if (batch.length < batchSize) return { ...p, points, batch };
      return { points, ...update(p.centers, p.weights, batch, decay, timeUnit), batch: [] };
    },
    examples: (p) => p.points,
    publish: (p) => ({ centers: p.centers, weights: p.weights, points: p.points }),
  };
}

/** [index of the nearest center, squared distance]; ties go to the lower index. */
export function nearest(centers: readonly (readonly number[])[], x: readonly number[]): [number, number] {
  let best = 0;
  let bestD = Number.POSITIVE_INFINITY;
  for (let c = 0; c < centers.length; c++) {
    const center = centers[c]!;
    let dist = 0;
    for (let i = 0; i < center.length; i++) {
      const diff = center[i]! - x[i]!;
      dist += diff * diff;
    }
    if (dist < bestD) {
      bestD = dist;
      best = c;
    }
  }
  return [best, bestD];
}

/** One mini-batch update (see streamingKMeans); returns new arrays. */
export function update(
  centers: readonly (readonly number[])[],
  weights: readonly number[],
  batch: readonly (readonly number[])[],
  decay: number,
  timeUnit: 'batches' | 'points',
): { centers: number[][]; weights: number[] } {
  const k = centers.length;
  const d = centers[0]!.length;
  const sums = Array.from({ length: k }, () => new Array<number>(d).fill(0));
  const counts = new Array<number>(k).fill(0);
  for (const x of batch) {
    const [c] = nearest(centers, x);
    const s = sums[c]!;
    for (let i = 0; i < d; i++) s[i] = s[i]! + x[i]!;
    counts[c] = counts[c]! + 1;
  }
  const discount = timeUnit === 'batches' ? decay : decay ** batch.length;
  const w = weights.map((v) => canonical(v * discount));
  const next = centers.map((c) => [...c]);
  for (let c = 0; c < k; c++) {
    const m = counts[c]!;
    if (m === 0) continue;
    const updated = w[c]! + m;
    const lambda = m / Math.max(updated, 1e-16);
    w[c] = updated;
    const center = next[c]!;
    const s = sums[c]!;
    for (let i = 0; i < d; i++) center[i] = canonical((1 - lambda) * center[i]! + (lambda / m) * s[i]!);
  }
  // A dying cluster takes over half of the largest one (Spark's rule).
  let largest = 0;
  let smallest = 0;
  for (let c = 1; c < k; c++) {
    if (w[c]! > w[largest]!) largest = c;
    if (w[c]! < w[smallest]!) smallest = c;
  }
  if (k > 1 && w[smallest]! < 1e-8 * w[largest]!) {
    const weight = (w[largest]! + w[smallest]!) / 2;
    w[largest] = weight;
    w[smallest] = weight;
    const big = next[largest]!;
    const small = next[smallest]!;
    for (let i = 0; i < d; i++) {
      const x = big[i]!;
      const p = 1e-14 * Math.max(Math.abs(x), 1);
      big[i] = canonical(x + p);
      small[i] = canonical(x - p);
    }
  }
  return { centers: next, weights: w };
}
