import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError } from '../api/errors.ts';
import { logisticRegression, logLoss, sigmoid } from './logistic.ts';
import { constantRate, inverseScaling, learningRate, stepDecay } from './schedule.ts';
import { distance, gaussian, logisticPoint, seededRandom } from './synthetic.ts';

describe('learning-rate schedules', () => {
  test('constant, inverse scaling and step decay against their formulas', () => {
    assert.equal(learningRate(constantRate(0.3), 1), 0.3);
    assert.equal(learningRate(constantRate(0.3), 1000), 0.3);
    assert.equal(learningRate(inverseScaling(0.5, 0.5), 1), 0.5);
    assert.equal(learningRate(inverseScaling(0.5, 0.5), 4), 0.25);
    assert.equal(learningRate(inverseScaling(1, 1), 8), 0.125);
    const s = stepDecay(0.8, 0.5, 10);
    assert.equal(learningRate(s, 1), 0.8);
    assert.equal(learningRate(s, 10), 0.8);
    assert.equal(learningRate(s, 11), 0.4);
    assert.equal(learningRate(s, 21), 0.2);
  });

  test('invalid schedules are refused naming the field', () => {
    for (const [schedule, field] of [
      [constantRate(0), 'eta0'],
      [inverseScaling(0.1, -1), 'power'],
      [stepDecay(0.1, 1.5, 10), 'gamma'],
      [stepDecay(0.1, 0.5, 0), 'every'],
    ] as const) {
      assert.throws(
        () => logisticRegression({ dimensions: 2, schedule }),
        (e) => isStreamError(e, 'CONFIG_INVALID') && e.message.includes(`schedule.${field}`),
      );
    }
  });
});

describe('logistic regression', () => {
  test('one SGD step equals the hand-computed update', () => {
    const m = logisticRegression({ dimensions: 2, schedule: constantRate(0.5) });
    // w = 0, b = 0: p = 0.5, g = p - y = -0.5; w <- 0 - 0.5 * (-0.5 * x) = 0.25 x; b <- 0.25.
    const p1 = m.train(m.init(), { features: [1, 2], label: 1 });
    assert.deepEqual(p1, { step: 1, weights: [0.25, 0.5], bias: 0.25 });
    // z = 0.25 + 0.25 * 2 - 0.5 * 1 = 0.25; label 0: g = sigmoid(0.25).
    const g = 1 / (1 + Math.exp(-0.25));
    const p2 = m.train(p1, { features: [2, -1], label: 0 });
    assert.equal(p2.step, 2);
    assert.equal(p2.weights[0], 0.25 - 0.5 * (g * 2));
    assert.equal(p2.weights[1], 0.5 - 0.5 * (g * -1));
    assert.equal(p2.bias, 0.25 - 0.5 * g);
  });

  test('L2 shrinks the weights (not the bias) and the schedule sets the step size', () => {
    const m = logisticRegression({ dimensions: 1, schedule: inverseScaling(1, 1), l2: 0.1 });
    const p1 = { step: 3, weights: [2], bias: 1 };
    // t = 4: eta = 1/4; z = 1 + 2 * 3 = 7; g = sigmoid(7) - 1.
    const g = 1 / (1 + Math.exp(-7)) - 1;
    const p2 = m.train(p1, { features: [3], label: 1 });
    assert.equal(p2.weights[0], 2 - 0.25 * (g * 3 + 0.1 * 2));
    assert.equal(p2.bias, 1 - 0.25 * g);
    assert.deepEqual(p1, { step: 3, weights: [2], bias: 1 }, 'train must not change its argument');
  });

  test('prequential evaluation: log loss and correctness before training', () => {
    const m = logisticRegression({ dimensions: 1 });
    const e = m.evaluate({ step: 0, weights: [1], bias: 0 }, { features: [2], label: 0 })!;
    assert.ok(Math.abs(e.loss - -Math.log(1 - sigmoid(2))) < 1e-12);
    assert.equal(e.correct, false);
    // Stable for large margins, where log(1 - sigmoid(z)) would be -Infinity.
    assert.ok(Math.abs(logLoss(800, 0) - 800) < 1e-9);
    assert.ok(logLoss(-800, 0) >= 0 && logLoss(-800, 0) < 1e-300);
  });

  test('converges to the known weights of the generating model', () => {
    const truth = { weights: [1.5, -2, 0.5], bias: -0.5 };
    const random = seededRandom(7);
    const normal = gaussian(random);
    const m = logisticRegression({ dimensions: 3, schedule: inverseScaling(0.5, 0.5), l2: 0 });
    let p = m.init();
    const errors: number[] = [];
    for (let i = 1; i <= 100_000; i++) {
      p = m.train(p, logisticPoint(random, normal, truth));
      if (i === 1000 || i === 100_000)
        errors.push(distance([...p.weights, p.bias], [...truth.weights, truth.bias]));
    }
    assert.ok(errors[1]! < errors[0]!, `error after 1k ${errors[0]} not above after 100k ${errors[1]}`);
    assert.ok(errors[1]! < 0.1, `distance to the true weights after 100k examples: ${errors[1]}`);
  });

  test('never stores -0 (msgpack would restore it as 0)', () => {
    const m = logisticRegression({ dimensions: 1, schedule: constantRate(1) });
    // w = -0, x = 0: w - eta * (g * x + l2 * w) = -0 - 0 is -0 in IEEE arithmetic.
    const p = m.train({ step: 0, weights: [-0], bias: -0 }, { features: [0], label: 0 });
    for (const v of [...p.weights]) assert.ok(!Object.is(v, -0));
  });

  test('bad records are refused with what is wrong', () => {
    const m = logisticRegression({ dimensions: 2 });
    const msg = (f: () => void) => {
      try {
        f();
      } catch (e) {
        assert.ok(isStreamError(e, 'USER_FUNCTION_FAILED'));
        return e.message;
      }
      assert.fail('no error');
    };
    assert.match(
      msg(() => m.check({ features: [1], label: 1 }, 'train')),
      /1 features, the model has 2/,
    );
    assert.match(
      msg(() => m.check({ features: [1, Number.NaN], label: 1 }, 'train')),
      /feature 1 .* NaN/,
    );
    assert.match(
      msg(() => m.check({ features: [1, 2], label: 2 }, 'train')),
      /label must be 0 or 1, got 2/,
    );
    assert.match(
      msg(() => m.check({ features: 'x' as never }, 'score')),
      /must be an array of 2 numbers/,
    );
    m.check({ features: [1, 2] }, 'score');
    assert.throws(() => logisticRegression({ dimensions: 0 }), /dimensions must be an integer >= 1/);
  });
});
