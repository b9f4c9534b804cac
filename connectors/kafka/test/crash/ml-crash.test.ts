/**
 * Done-when (a) of the online-learning work: models trained while their job process is SIGKILLed
 * and restarted 20 times end with parameters bitwise equal to a run without failures, read back
 * from the compacted model topic by kcat in read_committed mode.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { produceRange, queryRecord, trainRecord } from '../../../../examples/ml/generator.ts';
import { exampleModels } from '../../../../examples/ml/job.ts';
import type { PublishedModel } from '../../../../framework/index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { type JobProcess, openTransactions, startJobProcess } from '../support/crash-helpers.ts';
import { kcatAll } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { assertSequences, checkOrdered, describeSequences, kcatRecords } from '../support/sequence-check.ts';

const TOTAL = Number(process.env.ML_CRASH_RECORDS ?? 40_000);
const KILLS = Number(process.env.ML_CRASH_KILLS ?? 20);
const MODELS = 4;
const SEED = 3;

/** Every number as its IEEE-754 bits, so deepEqual compares bitwise. */
function bits(v: unknown): unknown {
  if (typeof v === 'number') return Buffer.from(new Float64Array([v]).buffer).toString('hex');
  if (Array.isArray(v)) return v.map(bits);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, bits(x)]));
  return v;
}

/** The run without failures, in process: each model folded over its own records, in order. */
function reference(): Map<string, { trained: number; params: unknown }> {
  const { lr, km } = exampleModels();
  const params = new Map<string, unknown>();
  for (let i = 0; i < TOTAL; i++) {
    const r = trainRecord(SEED, MODELS, i);
    const model = r.model.startsWith('lr-') ? lr : km;
    params.set(r.model, model.train(params.get(r.model) ?? model.init(), r));
  }
  return new Map(
    [...params].map(([k, p]) => {
      const model = k.startsWith('lr-') ? lr : km;
      return [k, { trained: model.examples(p), params: model.publish(p) }];
    }),
  );
}

/** The newest committed model per key (kcat, read_committed), once all TOTAL examples are in. */
async function finalModels(topic: string, ms: number): Promise<Map<string, PublishedModel>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const latest = new Map<string, PublishedModel>();
    for (const m of await kcatAll<PublishedModel>(topic)) latest.set(m.model, m);
    const trained = [...latest.values()].reduce((s, m) => s + m.trained, 0);
    if (trained >= TOTAL) return latest;
    if (Date.now() > deadline) {
      throw new Error(`${topic}: the published models cover ${trained} of ${TOTAL} examples after ${ms} ms`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

const ML_RUNNER = fileURLToPath(new URL('../jobs/ml-run.ts', import.meta.url));
const startMlProcess = (env: Record<string, string>) => startJobProcess(env, ML_RUNNER);

describe('online learning under SIGKILL', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('ml-crash-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'ml-crash-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test(`(a) ${TOTAL} training records, the job SIGKILLed ${KILLS} times: the published models are bitwise those of a run without failures`, async () => {
    const started = Date.now();
    const n = names('ml-crash');
    const topics = { train: n.topic('train'), score: n.topic('score') };
    const crashed = { predictions: n.topic('predictions'), models: n.topic('models') };
    const calm = { predictions: n.topic('predictions-calm'), models: n.topic('models-calm') };
    await admin.createTopics({
      topics: [
        ...[topics.train, topics.score, crashed.predictions, calm.predictions].map((topic) => ({
          topic,
          numPartitions: 4,
        })),
        ...[crashed.models, calm.models].map((topic) => ({
          topic,
          numPartitions: 4,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        })),
      ],
      waitForLeaders: true,
    });
    const connection = { brokers: brokersFromEnv() };
    const produce = (from: number, to: number) =>
      produceRange({ connection, ...topics, seed: SEED, models: MODELS, from, to });
    const env = (jobId: string, out: typeof crashed, state: string) => ({
      JOB_ID: jobId,
      TRAIN: topics.train,
      SCORE: topics.score,
      PREDICTIONS: out.predictions,
      MODELS: out.models,
      STATE_DIR: join(dir, state),
      CHECKPOINT_MS: '100',
      PUBLISH_MS: '50',
    });
    const crashJob = n.group('job');
    // Input arrives while the job is being killed: one chunk before each run.
    const chunk = Math.ceil(TOTAL / (KILLS + 1));
    let produced = 0;
    let seed = 4242;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const kills: number[] = [];
    let checkpoints = 0;
    for (let k = 0; k < KILLS; k++) {
      const to = Math.min(TOTAL, produced + chunk);
      await produce(produced, to);
      produced = to;
      const p = startMlProcess(env(crashJob, crashed, 'crashed'));
      await p.waitFor(/^restored /, 30_000);
      // Kill at a random moment: during restore, training, publication or a checkpoint.
      const delay = Math.floor(random() * 1200);
      await new Promise((r) => setTimeout(r, delay));
      p.child.kill('SIGKILL');
      await p.exited;
      kills.push(delay);
      checkpoints += p.lines.filter((l) => l.startsWith('checkpoint ')).length;
    }
    if (produced < TOTAL) await produce(produced, TOTAL);
    // The crashed job's last run, undisturbed, and a run of the same job that never fails.
    const last = startMlProcess(env(crashJob, crashed, 'crashed'));
    const calmRun = startMlProcess(env(n.group('calm'), calm, 'calm'));
    const stop = async (p: JobProcess, what: string) => {
      p.child.kill('SIGTERM');
      assert.equal(await p.exited, 0, `${what} did not stop cleanly:\n${p.lines.slice(-20).join('\n')}`);
    };
    let afterCrashes: Map<string, PublishedModel>;
    let withoutFailures: Map<string, PublishedModel>;
    try {
      [afterCrashes, withoutFailures] = await Promise.all([
        finalModels(crashed.models, 60_000),
        finalModels(calm.models, 60_000),
      ]);
    } finally {
      await Promise.all([stop(last, 'the last run'), stop(calmRun, 'the run without failures')]);
    }
    const expected = reference();
    assert.equal(expected.size, 2 * MODELS);
    assert.deepEqual([...afterCrashes.keys()].sort(), [...expected.keys()].sort());
    for (const [model, ref] of expected) {
      for (const [what, got] of [
        ['after crashes', afterCrashes.get(model)!],
        ['without failures', withoutFailures.get(model)!],
      ] as const) {
        assert.equal(got.trained, ref.trained, `${model} ${what}: examples trained`);
        assert.deepEqual(bits(got.params), bits(ref.params), `${model} ${what}: parameters differ bitwise`);
      }
      assert.deepEqual(
        bits(afterCrashes.get(model)!.prequential),
        bits(withoutFailures.get(model)!.prequential),
      );
    }
    // Every query of the crashed job answered exactly once.
    const predictionRecords = await kcatRecords<{ model: string; id: number; trained: number }>(
      crashed.predictions,
    );
    const ids = predictionRecords.map((p) => p.value.id).sort((a, b) => a - b);
    const queries: number[] = [];
    for (let i = 0; i < TOTAL; i++) if (queryRecord(SEED, MODELS, i)) queries.push(i);
    assert.deepEqual(ids, queries, 'each query has exactly one committed prediction');
    // The model topic is compacted, and no transaction of the crashed job is left open.
    const configs = await admin.describeConfigs({
      resources: [{ type: 2, name: crashed.models, configNames: ['cleanup.policy'] }],
      includeSynonyms: false,
    });
    assert.equal(configs.resources[0]?.configEntries[0]?.configValue, 'compact');
    const { open } = await openTransactions(`${crashJob}.`);
    assert.deepEqual(open, [], `transactions left open: ${JSON.stringify(open)}`);
    // Per model, in offset order (what a reader of the newest model sees): each publication has
    // trained on more examples than the one before; each model's predictions answer its queries in
    // the order asked, by a model that never trained on fewer examples than for the previous answer.
    const publications = await kcatRecords<PublishedModel>(crashed.models);
    const published = publications.length;
    const modelOrder = checkOrdered(publications, {
      what: 'published models: per model, trained examples rise',
      key: (m) => m.model,
      inOrder: (a, b) => b.trained > a.trained,
    });
    const predictionOrder = checkOrdered(predictionRecords, {
      what: 'predictions: per model, queries in order, trained examples never fall',
      key: (p) => p.model,
      inOrder: (a, b) => b.id > a.id && b.trained >= a.trained,
    });
    console.log(`ml crash test: ${describeSequences(modelOrder)}; ${describeSequences(predictionOrder)}`);
    assertSequences(modelOrder);
    assertSequences(predictionOrder);
    console.log(
      `ml crash test: ${TOTAL} training records and ${queries.length} queries for ${expected.size} models; ${kills.length} SIGKILLs at ${kills.join(',')} ms after restore; ${checkpoints} checkpoints completed by the killed runs; ${published} model publications committed; final parameters bitwise equal to the run without failures and to a sequential fold; ${Math.round((Date.now() - started) / 1000)} s`,
    );
  });
});
