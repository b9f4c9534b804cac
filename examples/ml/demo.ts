/**
 * `node examples/ml/demo.ts`: online learning over Kafka, end to end. Starts a broker through the
 * harness unless KAFKA_BROKERS names one, creates the topics (the model topic compacted), feeds a
 * labelled stream whose true models are known, runs the example job (LevelDB state, filesystem
 * checkpoints under .demo/), and prints how far each published model is from its true model while
 * it learns, reading the compacted model topic as any consumer would (read_committed). Exits 1 when
 * a model does not get close to the truth.
 *
 *   ML_RECORDS   training records (default 200000), half logistic, half k-means
 *   ML_MODELS    models of each kind (default 4)
 *   ML_RATE      training records per second (default 20000)
 *   ML_METRICS_PORT  port of /metrics (default 0: a free port)
 */
import { join, resolve } from 'node:path';
import { createKafka, runKafkaJob } from '../../connectors/kafka/index.ts';
import { startBroker } from '../../connectors/kafka/local/broker.ts';
import {
  createPrometheusMetrics,
  FilesystemCheckpointStorage,
  levelBackend,
  type PublishedModel,
  startServiceHttp,
} from '../../framework/index.ts';
import { distanceToTruth, produceRange } from './generator.ts';
import { mlJob } from './job.ts';

const RECORDS = Number(process.env.ML_RECORDS ?? 200_000);
const MODELS = Number(process.env.ML_MODELS ?? 4);
const RATE = Number(process.env.ML_RATE ?? 20_000);
const SEED = 8;
/** A model passes when its published parameters are this close to the true ones. */
const LR_TOLERANCE = 0.5;
const KM_TOLERANCE = 0.3;

const say = (line: string) => process.stdout.write(`ml: ${line}\n`);

async function main(): Promise<void> {
  let brokers = process.env.KAFKA_BROKERS?.trim();
  let stopBroker = async () => {};
  if (!brokers) {
    say('starting a Kafka broker (the first run fetches it from Maven Central) ...');
    const broker = await startBroker();
    brokers = broker.brokers;
    stopBroker = broker.stop;
    say(`Kafka ${broker.version} answers on ${brokers}`);
  }
  const connection = { brokers: brokers.split(',') };
  const run = Date.now().toString(36);
  const topics = {
    train: `ml.train.${run}`,
    score: `ml.score.${run}`,
    predictions: `ml.predictions.${run}`,
    models: `ml.models.${run}`,
  };
  const dir = resolve('.demo', `ml-${run}`);
  const kafka = createKafka(connection, '-ml-demo');
  const admin = kafka.admin();
  const metrics = createPrometheusMetrics({ defaultMetrics: false });
  const http = await startServiceHttp({
    port: Number(process.env.ML_METRICS_PORT ?? 0),
    metrics,
    ready: () => ({ ready: true }),
  });
  try {
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: topics.train, numPartitions: 4 },
        { topic: topics.score, numPartitions: 4 },
        { topic: topics.predictions, numPartitions: 4 },
        {
          topic: topics.models,
          numPartitions: 4,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        },
      ],
      waitForLeaders: true,
    });
    say(`topics ${topics.train}, ${topics.score} -> ${topics.predictions}, ${topics.models} (compacted)`);
    say(`metrics on ${http.url}/metrics; state and checkpoints in ${dir}`);
    const job = await runKafkaJob(mlJob({ jobId: `ml-demo-${run}`, ...topics, metrics }), {
      connection,
      storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
      backend: levelBackend(join(dir, 'state')),
      checkpoints: { intervalMs: 1000 },
      restart: { kind: 'exponential-backoff', initialDelayMs: 200, maxDelayMs: 10_000, multiplier: 2 },
    });
    // The compacted topic as any reader sees it: committed records only, the newest per model.
    const latest = new Map<string, PublishedModel>();
    const consumer = kafka.consumer({ groupId: `ml-demo-reader-${run}`, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topics: [topics.models], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const m = JSON.parse(message.value!.toString()) as PublishedModel;
        latest.set(m.model, m);
      },
    });
    const started = Date.now();
    const feeding = (async () => {
      const chunk = Math.max(1, Math.round(RATE / 4));
      for (let from = 0; from < RECORDS; from += chunk) {
        const to = Math.min(RECORDS, from + chunk);
        await produceRange({ connection, ...topics, seed: SEED, models: MODELS, from, to });
        await new Promise((r) => setTimeout(r, Math.max(0, started + (to / RATE) * 1000 - Date.now())));
      }
    })();
    const trained = () => [...latest.values()].reduce((s, m) => s + m.trained, 0);
    const report = () =>
      [...latest.values()]
        .sort((a, b) => a.model.localeCompare(b.model, 'en', { numeric: true }))
        .map((m) => {
          const q = m.prequential;
          const acc = q.accuracy === null ? '' : `, accuracy ${q.accuracy.toFixed(3)}`;
          return `  ${m.model.padEnd(5)} ${String(m.trained).padStart(6)} examples, distance to the true model ${distanceToTruth(m).toFixed(4)}, prequential loss ${q.loss?.toFixed(4) ?? '-'}${acc}`;
        })
        .join('\n');
    const deadline = Date.now() + 300_000;
    while (trained() < RECORDS && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2000));
      say(`published models (${trained()} of ${RECORDS} examples learned):\n${report()}`);
    }
    await feeding;
    await consumer.disconnect();
    await job.stop();
    const gauges = (await metrics.render())
      .split('\n')
      .filter((l) => l.startsWith('kstate_ml_') && /model="(lr|km)-0"/.test(l));
    say(`metrics of lr-0 and km-0:\n  ${gauges.join('\n  ')}`);
    const far = [...latest.values()].filter(
      (m) => distanceToTruth(m) > (m.kind === 'k-means' ? KM_TOLERANCE : LR_TOLERANCE),
    );
    if (trained() !== RECORDS || latest.size !== 2 * MODELS || far.length > 0) {
      say(
        `NOT converged: ${latest.size} models, ${trained()} of ${RECORDS} examples; far: ${far.map((m) => m.model).join(', ')} (fewer than ~25,000 examples per logistic model may not be enough: raise ML_RECORDS)`,
      );
      process.exitCode = 1;
    } else {
      say(
        `done: all ${latest.size} models learned from ${RECORDS} examples; logistic models within ${LR_TOLERANCE}, k-means centers within ${KM_TOLERANCE} of the truth`,
      );
    }
  } finally {
    await admin.disconnect().catch(() => {});
    await http.close();
    await stopBroker();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`ml demo failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
