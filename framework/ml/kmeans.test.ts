import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError } from '../api/errors.ts';
import { streamingKMeans, update } from './kmeans.ts';
import { centerError, clusterPoint, gaussian, seededRandom } from './synthetic.ts';

describe('streaming k-means', () => {
  test('one mini-batch update equals the hand-computed Spark rule', () => {
    // Centers (0,0) weight 2 and (10,0) weight 1; batch (1,1), (3,1), (9,2); decay 0.5 per batch.
    const r = update(
      [
        [0, 0],
        [10, 0],
      ],
      [2, 1],
      [
        [1, 1],
        [3, 1],
        [9, 2],
      ],
      0.5,
      'batches',
    );
    // Center 0: n = 2 * 0.5 + 2 = 3, lambda = 2 / 3: (0, 0) * (1 - lambda) + sum (4, 2) * lambda / 2.
    // Center 1: n = 1 * 0.5 + 1 = 1.5, lambda = 1 / 1.5: (10, 0) * (1 - lambda) + (9, 2) * lambda.
    const l0 = 2 / 3;
    const l1 = 1 / 1.5;
    assert.deepEqual(r.weights, [3, 1.5]);
    assert.deepEqual(r.centers[0], [(1 - l0) * 0 + (l0 / 2) * 4, (1 - l0) * 0 + (l0 / 2) * 2]);
    assert.deepEqual(r.centers[1], [(1 - l1) * 10 + l1 * 9, (1 - l1) * 0 + l1 * 2]);
    assert.ok(
      Math.abs(r.centers[0]![0]! - 4 / 3) < 1e-15,
      'center 0 is pulled 2/3 of the way to the mean (2, 1)',
    );
  });

  test("decay per point: weights are multiplied by decay ^ batch size ('points')", () => {
    const r = update([[0], [10]], [4, 4], [[1], [2]], 0.5, 'points');
    // Both points go to center 0: n0 = 4 * 0.25 + 2 = 3; center 1 only decays: 4 * 0.25 = 1.
    assert.deepEqual(r.weights, [3, 1]);
    assert.deepEqual(r.centers[1], [10]);
    assert.deepEqual(r.centers[0], [(1 - 2 / 3) * 0 + (2 / 3 / 2) * 3]);
  });

  test('a dying cluster takes over half of the largest one', () => {
    const r = update([[0], [5]], [1e9, 1e-3], [[0.5]], 1, 'batches');
    // Weights after the update: 1e9 + 1 and 1e-3 < 1e-8 * (1e9 + 1): split the largest cluster.
    assert.equal(r.weights[0], r.weights[1]);
    assert.equal(r.weights[0], (1e9 + 1 + 1e-3) / 2);
    assert.ok(r.centers[0]![0]! > r.centers[1]![0]!);
    assert.ok(Math.abs(r.centers[0]![0]! - r.centers[1]![0]!) < 1e-13);
  });

  test('seeds with the first k distinct points, buffers mini-batches, then updates', () => {
    const m = streamingKMeans({ k: 2, dimensions: 1, batchSize: 2 });
    let p = m.init();
    assert.equal(m.predict(p, [0]), undefined, 'no prediction before k centers');
    for (const x of [[1], [1], [5]]) p = m.train(p, { features: x });
    assert.deepEqual(p.centers, [[1], [5]]);
    assert.deepEqual(p.weights, [1, 1]);
    p = m.train(p, { features: [2] });
    assert.deepEqual(p.batch, [[2]], 'buffered until the batch is full');
    assert.deepEqual(p.centers, [[1], [5]]);
    p = m.train(p, { features: [6] });
    assert.deepEqual(p.batch, []);
    assert.deepEqual(p.centers, [[1.5], [5.5]]);
    assert.deepEqual(p.weights, [2, 2]);
    assert.equal(m.examples(p), 5);
    assert.deepEqual(m.predict(p, [5]), { cluster: 1, squaredDistance: 0.25 });
    assert.deepEqual(m.evaluate(p, { features: [1] }), { loss: 0.25 });
  });

  test('converges to the known centers', () => {
    const truth = [
      [0, 0],
      [6, 6],
      [-6, 6],
    ];
    const random = seededRandom(11);
    const normal = gaussian(random);
    const m = streamingKMeans({
      k: 3,
      dimensions: 2,
      batchSize: 10,
      decayFactor: 0.9,
      initialCenters: [
        [1, -1],
        [3, 3],
        [-3, 3],
      ],
    });
    let p = m.init();
    const before = centerError(p.centers, truth);
    for (let i = 0; i < 20_000; i++)
      p = m.train(p, { features: clusterPoint(random, normal, truth, 1).features });
    const after = centerError(p.centers, truth);
    assert.ok(after < before, `error ${after} not below the initial ${before}`);
    // With decay 0.9 per batch of 10, each center averages ~33 recent points: about 1/sqrt(33) off.
    assert.ok(after < 0.6, `largest distance to a true center: ${after}`);
  });

  test('invalid options are refused naming the field', () => {
    for (const [o, field] of [
      [{ k: 0, dimensions: 1 }, 'k'],
      [{ k: 1, dimensions: 1, batchSize: 0 }, 'batchSize'],
      [{ k: 1, dimensions: 1, decayFactor: 2 }, 'decayFactor'],
      [{ k: 2, dimensions: 1, initialCenters: [[0]] }, 'initialCenters'],
      [{ k: 1, dimensions: 2, initialCenters: [[0]] }, 'each of initialCenters'],
    ] as const) {
      assert.throws(
        () => streamingKMeans(o),
        (e) => isStreamError(e, 'CONFIG_INVALID') && e.message.includes(`${field} must be`),
        field,
      );
    }
  });
});
