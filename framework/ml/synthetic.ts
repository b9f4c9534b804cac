/**
 * Synthetic data with a known true model, as scikit-learn's make_classification and make_blobs: a
 * seeded PRNG, Gaussian draws, labelled points of a known logistic model or around known k-means
 * centers, and distances to the truth. Deterministic for a given seed (tests, examples, benchmarks).
 */

/** mulberry32: 32-bit state, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal draws (Box-Muller) from a uniform source. */
export function gaussian(random: () => number): () => number {
  return () => {
    const u = 1 - random();
    const v = random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

/** A point x ~ N(0, I) labelled 1 with probability sigmoid(bias + w.x). */
export function logisticPoint(
  random: () => number,
  normal: () => number,
  truth: { readonly weights: readonly number[]; readonly bias: number },
): { features: number[]; label: 0 | 1 } {
  const features = truth.weights.map(() => normal());
  let z = truth.bias;
  for (let i = 0; i < features.length; i++) z += truth.weights[i]! * features[i]!;
  return { features, label: random() < 1 / (1 + Math.exp(-z)) ? 1 : 0 };
}

/** A point around one of `centers` (chosen uniformly), with N(0, sigma^2) noise per coordinate. */
export function clusterPoint(
  random: () => number,
  normal: () => number,
  centers: readonly (readonly number[])[],
  sigma: number,
): { features: number[]; label: number } {
  const label = Math.floor(random() * centers.length);
  return { features: centers[label]!.map((c) => c + sigma * normal()), label };
}

/** Euclidean distance. */
export function distance(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

/**
 * Largest distance from a true center to its nearest learned center (0 when every true center was
 * found exactly): how far k-means is from the known centers, whatever order it found them in.
 */
export function centerError(
  learned: readonly (readonly number[])[],
  truth: readonly (readonly number[])[],
): number {
  let worst = 0;
  for (const t of truth) worst = Math.max(worst, Math.min(...learned.map((c) => distance(c, t))));
  return worst;
}
