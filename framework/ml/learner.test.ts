import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  createPrometheusMetrics,
  HeapKeyedStateBackend,
  isStreamError,
  type KeyedProcessFunction,
  type KeyedStateBackend,
  LevelKeyedStateBackend,
  MemoryCheckpointStorage,
  runJob,
  StreamJob,
} from '../index.ts';
import { CollectingSink, KeyedOperatorHarness, plannedFaults, TestSource } from '../testing/index.ts';
import { streamingKMeans } from './kmeans.ts';
import { END_OF_INPUT, type LearnerOutput, OnlineLearner, type PublishedModel } from './learner.ts';
import { logisticRegression } from './logistic.ts';
import type { OnlineModel } from './model.ts';
import { constantRate, inverseScaling } from './schedule.ts';
import { onlineLearning } from './streams.ts';
import { clusterPoint, gaussian, logisticPoint, seededRandom } from './synthetic.ts';

interface Point {
  readonly model: string;
  readonly features: number[];
  readonly label?: number;
}
interface Ask {
  readonly model: string;
  readonly id: number;
  readonly features: number[];
}
type In = { train: Point } | { score: Ask };
type Out = LearnerOutput<Ask, unknown>;

/** The two-input learner as a one-input function, for the one-input KeyedOperatorHarness. */
function oneInput(
  learner: OnlineLearner<Point, Ask, unknown, unknown>,
): KeyedProcessFunction<string, In, Out> {
  return {
    processElement: (v, ctx, out) =>
      'train' in v ? learner.processElement1(v.train, ctx, out) : learner.processElement2(v.score, ctx, out),
    onTimer: (t, ctx, out) => learner.onTimer(t, ctx, out),
  };
}
const keyOf = (v: In) => ('train' in v ? v.train.model : v.score.model);

async function harness(
  learner: OnlineLearner<Point, Ask, unknown, unknown>,
  options: Parameters<typeof KeyedOperatorHarness.create>[2] = {},
) {
  return KeyedOperatorHarness.create<string, In, Out>(oneInput(learner), keyOf, options);
}

/** Every number of a value as its IEEE-754 bits, so deepEqual compares bitwise (-0, NaN payloads). */
function bits(v: unknown): unknown {
  if (typeof v === 'number') return Buffer.from(new Float64Array([v]).buffer).toString('hex');
  if (Array.isArray(v)) return v.map(bits);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, bits(x)]));
  return v;
}

const models = (): Record<string, () => OnlineModel<unknown, unknown>> => ({
  logistic: () =>
    logisticRegression({ dimensions: 3, schedule: inverseScaling(0.5, 0.5), l2: 1e-4 }) as OnlineModel<
      unknown,
      unknown
    >,
  kmeans: () =>
    streamingKMeans({ k: 3, dimensions: 3, batchSize: 7, decayFactor: 0.95 }) as OnlineModel<
      unknown,
      unknown
    >,
});

/** Labelled points for models m0..m(n-1): logistic data for 'logistic', clusters for 'kmeans'. */
function points(kind: string, count: number, keys: number, seed: number): Point[] {
  const random = seededRandom(seed);
  const normal = gaussian(random);
  const truth = { weights: [1, -2, 0.5], bias: 0.3 };
  const centers = [
    [0, 0, 0],
    [5, 5, 0],
    [0, 5, 5],
  ];
  return Array.from({ length: count }, (_, i) => ({
    model: `m${i % keys}`,
    ...(kind === 'logistic'
      ? logisticPoint(random, normal, truth)
      : clusterPoint(random, normal, centers, 1)),
  }));
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function backendOf(kind: 'heap' | 'level'): Promise<KeyedStateBackend> {
  if (kind === 'heap') return new HeapKeyedStateBackend();
  const dir = await mkdtemp(join(tmpdir(), 'ml-level-'));
  dirs.push(dir);
  return LevelKeyedStateBackend.open({ directory: dir });
}

describe('OnlineLearner', () => {
  test('test-then-train: each training record is scored by the model before it learns from it', async () => {
    const learner = new OnlineLearner<Point, Ask, unknown, unknown>({
      model: logisticRegression({ dimensions: 1, schedule: constantRate(1) }) as OnlineModel<
        unknown,
        unknown
      >,
      evaluateEvery: 1,
      fadingFactor: 1,
    });
    const h = await harness(learner);
    h.processElement({ train: { model: 'a', features: [2], label: 1 } });
    h.processElement({ train: { model: 'a', features: [2], label: 1 } });
    const [e1, e2] = h.output.map((o) => o.value);
    // First: w = 0, p = 0.5, loss log 2. Then w = 1, b = 0.5 (g = -0.5): z = 2.5.
    assert.ok(e1?.type === 'evaluation' && e2?.type === 'evaluation');
    assert.equal(e1.prequential.loss, Math.log(2));
    assert.equal(e1.prequential.accuracy, 1, 'p = 0.5 predicts 1');
    const loss2 = Math.log1p(Math.exp(-2.5));
    assert.ok(Math.abs(e2.prequential.loss! - (Math.log(2) + loss2) / 2) < 1e-15);
    assert.equal(e2.trained, 2);
  });

  test('scoring uses the current model and does not change it; models are keyed', async () => {
    const learner = new OnlineLearner<Point, Ask, unknown, unknown>({
      model: logisticRegression({ dimensions: 1, schedule: constantRate(1) }) as OnlineModel<
        unknown,
        unknown
      >,
    });
    const h = await harness(learner);
    h.processElement({ score: { model: 'a', id: 1, features: [1] } });
    h.processElement({ train: { model: 'a', features: [1], label: 1 } });
    h.processElement({ score: { model: 'a', id: 2, features: [1] } });
    h.processElement({ score: { model: 'a', id: 3, features: [1] } });
    h.processElement({ score: { model: 'b', id: 4, features: [1] } });
    const preds = h.output.map((o) => o.value).filter((o) => o.type === 'prediction');
    assert.deepEqual(
      preds.map((p) => [p.query.id, p.trained, (p.prediction as { probability: number }).probability]),
      [
        [1, 0, 0.5],
        [2, 1, 1 / (1 + Math.exp(-1))],
        [3, 1, 1 / (1 + Math.exp(-1))],
        [4, 0, 0.5],
      ],
    );
  });

  test('a changed model is published once per publish interval, and at the end of a bounded input', async () => {
    const learner = new OnlineLearner<Point, Ask, unknown, unknown>({
      model: models().kmeans!(),
      publishIntervalMs: 100,
    });
    const h = await harness(learner);
    const data = points('kmeans', 20, 2, 3);
    for (const p of data.slice(0, 10)) h.processElement({ train: p });
    const published = () =>
      h.output.map((o) => o.value).filter((o): o is PublishedModel => o.type === 'model');
    h.setProcessingTime(99);
    assert.equal(published().length, 0);
    h.setProcessingTime(100);
    assert.deepEqual(
      published()
        .map((m) => [m.model, m.trained, m.kind])
        .sort(),
      [
        ['m0', 5, 'k-means'],
        ['m1', 5, 'k-means'],
      ],
    );
    h.setProcessingTime(1000);
    assert.equal(published().length, 2, 'an unchanged model is not published again');
    for (const p of data.slice(10, 13)) h.processElement({ train: p });
    h.advanceWatermark(END_OF_INPUT);
    assert.deepEqual(
      published()
        .slice(2)
        .map((m) => [m.model, m.trained])
        .sort(),
      [
        ['m0', 7],
        ['m1', 6],
      ],
    );
    h.setProcessingTime(5000);
    assert.equal(published().length, 4, 'the pending timer of a published model publishes nothing');
  });

  for (const kind of ['logistic', 'kmeans']) {
    for (const [from, to] of [
      ['heap', 'heap'],
      ['level', 'level'],
      ['heap', 'level'],
    ] as const) {
      test(`${kind}: snapshot -> restore (${from} -> ${to}) ends bitwise equal to an uninterrupted run`, async () => {
        const data = points(kind, 3000, 4, 5);
        const make = () =>
          new OnlineLearner<Point, Ask, unknown, unknown>({
            model: models()[kind]!(),
            publishIntervalMs: 10,
          });
        const run = async (cuts: number[]) => {
          let h = await harness(make(), { backend: await backendOf(from) });
          let at = 0;
          for (const cut of [...cuts, data.length]) {
            for (; at < cut; at++) h.processElement({ train: data[at]! });
            if (cut === data.length) break;
            const snap = await h.snapshot();
            // Work after the snapshot is lost, as in a crash: it is replayed from the cut.
            for (const p of data.slice(cut, cut + 50)) h.processElement({ train: p });
            await h.close();
            h = await harness(make(), { backend: await backendOf(to), restore: snap });
          }
          h.advanceWatermark(END_OF_INPUT);
          const snap = await h.snapshot();
          const finals = new Map<string, PublishedModel>();
          for (const o of h.output) if (o.value.type === 'model') finals.set(o.value.model, o.value);
          await h.close();
          return { snap, finals };
        };
        const plain = await run([]);
        const restored = await run([1, 777, 1501, 2999]);
        assert.equal(plain.finals.size, 4);
        for (const [model, m] of plain.finals) {
          assert.equal(m.trained, 750);
          assert.deepEqual(bits(restored.finals.get(model)?.params), bits(m.params), `model ${model}`);
          assert.deepEqual(bits(restored.finals.get(model)?.prequential), bits(m.prequential));
        }
        // The stored state itself, bytes included (the publication timer's time aside).
        const state = (s: typeof plain.snap) =>
          s.keyed.states.map((st) => [st.meta.name, st.entries.length, st.entries.map(([k]) => k).sort()]);
        assert.deepEqual(state(restored.snap), state(plain.snap));
      });
    }
  }

  test('prequential gauges go to the framework metrics', async () => {
    const metrics = createPrometheusMetrics({ defaultMetrics: false });
    const learner = new OnlineLearner<Point, Ask, unknown, unknown>({
      model: models().logistic!(),
      publishIntervalMs: 0,
      metrics,
    });
    const h = await harness(learner);
    for (const p of points('logistic', 200, 1, 9)) h.processElement({ train: p });
    h.setProcessingTime(1);
    const text = await metrics.render();
    const published = h.output.map((o) => o.value).find((o) => o.type === 'model')!;
    const labels = '{job_id="harness",operator="harness",model="m0"}';
    assert.ok(published.type === 'model');
    assert.match(text, new RegExp(`kstate_ml_trained_examples${literal(labels)} 200\\n`));
    assert.ok(text.includes(`kstate_ml_prequential_loss${labels} ${published.prequential.loss}\n`), text);
    assert.ok(text.includes(`kstate_ml_prequential_accuracy${labels} ${published.prequential.accuracy}\n`));
  });

  test("bad records fail the task naming the model, or with onInvalid 'skip' are emitted as rejected", async () => {
    const model = models().logistic!;
    const failing = await harness(new OnlineLearner<Point, Ask, unknown, unknown>({ model: model() }));
    assert.throws(
      () => failing.processElement({ train: { model: 'm7', features: [1, 2], label: 1 } }),
      (e) =>
        isStreamError(e, 'USER_FUNCTION_FAILED') &&
        /model 'm7' \(logistic-regression\) refused a training record: .*2 features, the model has 3 dimensions/.test(
          e.message,
        ),
    );
    const skipping = await harness(
      new OnlineLearner<Point, Ask, unknown, unknown>({ model: model(), onInvalid: 'skip' }),
    );
    skipping.processElement({ score: { model: 'm1', id: 1, features: [1, 2, Number.POSITIVE_INFINITY] } });
    skipping.processElement({ train: { model: 'm1', features: [1, 2, 3], label: 0.5 } });
    assert.deepEqual(
      skipping.output.map((o) => o.value.type === 'rejected' && [o.value.input, o.value.reason]),
      [
        [
          'score',
          "model 'm1' (logistic-regression) refused a scoring record: logistic-regression: feature 2 of a score record is Infinity; features must be finite numbers",
        ],
        [
          'train',
          "model 'm1' (logistic-regression) refused a training record: logistic-regression: a training record's label must be 0 or 1, got 0.5",
        ],
      ],
    );
    assert.throws(
      () => new OnlineLearner({ model: model(), fadingFactor: 0 }),
      /fadingFactor must be in \(0, 1\]/,
    );
  });
});

function literal(s: string): string {
  return s.replace(/[{}"]/g, (c) => `\\${c}`);
}

describe('online learning in a job', () => {
  test('two learners over co-partitioned inputs, with injected failures: final models bitwise equal to a sequential fold, every query answered once', async () => {
    const PARTITIONS = 3;
    const lr = points('logistic', 6000, 6, 21).map((p) => ({ ...p, model: `lr-${p.model}` }));
    const km = points('kmeans', 6000, 6, 22).map((p) => ({ ...p, model: `km-${p.model}` }));
    const train = interleave(lr, km).map((value, i) => ({ value, timestamp: i }));
    const asks = train
      .filter((_, i) => i % 10 === 0)
      .map((r, id) => ({
        value: { model: r.value.model, id, features: r.value.features },
        timestamp: r.timestamp,
      }));
    const plan = plannedFaults({
      seed: 99,
      probability: {
        user: 0.002,
        'snapshot.capture': 0.05,
        'snapshot.write': 0.05,
        'checkpoint.after-commit': 0.05,
      },
      max: 30,
    });
    const job = new StreamJob('ml-job');
    const trainStream = job.source(TestSource.byKey('train', train, (p) => p.model, PARTITIONS)).map((p) => {
      plan.maybe('train');
      return p;
    });
    const askStream = job.source(TestSource.byKey('asks', asks, (a) => a.model, PARTITIONS));
    const modelSink = new CollectingSink<PublishedModel>('models');
    const predictionSink = new CollectingSink<number>('predictions');
    const [lrOut, kmOut] = (
      [
        ['lr-', models().logistic!()],
        ['km-', models().kmeans!()],
      ] as const
    ).map(([prefix, model]) =>
      onlineLearning(
        trainStream.filter((p) => p.model.startsWith(prefix)).keyBy((p) => p.model),
        askStream.filter((a) => a.model.startsWith(prefix)).keyBy((a) => a.model),
        new OnlineLearner<Point, Ask, unknown, unknown>({ model, publishIntervalMs: 5 }),
        { uid: `learner-${prefix}` },
      ),
    );
    lrOut!.models.union(kmOut!.models).sinkTo(modelSink);
    lrOut!.predictions
      .union(kmOut!.predictions)
      .map((p) => p.query.id)
      .sinkTo(predictionSink);
    let failures = 0;
    await runJob(job.build(), {
      storage: new MemoryCheckpointStorage(),
      faults: plan.injector,
      pollBatch: 50,
      checkpoints: { intervalMs: 5 },
      restart: { kind: 'fixed-delay', attempts: 1000, delayMs: 0 },
      listener: { taskFailed: () => failures++ },
    }).done;
    assert.ok(plan.total() >= 10, `only ${plan.total()} faults injected`);
    assert.ok(failures >= 10, `only ${failures} task failures`);
    console.log(`ml job test: ${plan.total()} faults injected, ${failures} task failures`);
    // The reference: each model folded over its own records in order, without any job.
    const reference = new Map<string, unknown>();
    for (const [prefix, data] of [
      ['lr-', lr],
      ['km-', km],
    ] as const) {
      const model = prefix === 'lr-' ? models().logistic!() : models().kmeans!();
      const params = new Map<string, unknown>();
      for (const p of data) params.set(p.model, model.train(params.get(p.model) ?? model.init(), p));
      for (const [k, v] of params) reference.set(k, model.publish(v));
    }
    const finals = new Map<string, PublishedModel>();
    for (const m of modelSink.output.committed) finals.set(m.model, m);
    assert.equal(finals.size, 12);
    for (const [model, params] of reference) {
      assert.deepEqual(bits(finals.get(model)?.params), bits(params), `model ${model}`);
    }
    const answered = [...predictionSink.output.committed].sort((a, b) => a - b);
    assert.deepEqual(
      answered,
      asks.map((a) => a.value.id).sort((a, b) => a - b),
      'each query answered exactly once',
    );
  });
});

function interleave<T>(a: T[], b: T[]): T[] {
  const out: T[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) out.push(a[i]!);
    if (i < b.length) out.push(b[i]!);
  }
  return out;
}
