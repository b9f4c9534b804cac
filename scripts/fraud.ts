/**
 * `npm run fraud`: the fraud-detection example end to end (docs/examples.md). Starts a Kafka broker
 * through the harness unless KAFKA_BROKERS names one, runs the fraud job, publishes the JSON
 * patterns to its broadcast topic, streams generated card transactions with planted frauds (phase
 * 1), swaps country-hopping v1 for v2 and publishes a malformed pattern, streams phase 2, then
 * compares the committed alerts with the planted frauds and with a brute-force reference matcher.
 * Exits 0 when all three agree.
 *
 *   FRAUD_SECONDS   how long to stream the transactions (default 20)
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createKafka, runKafkaJob } from '../connectors/kafka/index.ts';
import { formatHarnessError } from '../connectors/kafka/local/errors.ts';
import { localKafka } from '../connectors/kafka/local/local.ts';
import { fraudJob, fraudTopics } from '../examples/fraud/job.ts';
import { type Alert, alertKey, type TimedOutAlert } from '../examples/fraud/model.ts';
import {
  countryHoppingV2,
  initialPatterns,
  malformedCardTesting,
  maxWithin,
} from '../examples/fraud/patterns.ts';
import { alertTxKey, phase, planPhases, plantedAlerts } from '../examples/fraud/plan.ts';
import { type Producer, publishPatterns, sendTicks, sendTransactions } from '../examples/fraud/produce.ts';
import { referenceAlerts } from '../examples/fraud/reference.ts';
import {
  FilesystemCheckpointStorage,
  type PatternRejection,
  type PatternUpdate,
} from '../framework/index.ts';

const say = (line: string) => process.stdout.write(`fraud: ${line}\n`);
const PARTITIONS = 4;
const PHASE_MS = 60 * 60_000;

async function main(): Promise<void> {
  const seconds = Number(process.env.FRAUD_SECONDS ?? 20);
  if (!(seconds > 0))
    throw new Error(`FRAUD_SECONDS must be a positive number, got ${process.env.FRAUD_SECONDS}`);
  const cluster = await localKafka(say);
  const brokers = cluster.brokers;
  const connection = { brokers: brokers.split(',') };
  const run = Date.now().toString(36);
  const t = fraudTopics(`fraud.${run}`);
  const dir = resolve('.demo', `fraud-${run}`);
  mkdirSync(dir, { recursive: true });
  const kafka = createKafka(connection, '-fraud-demo');
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const readers: Reader<unknown>[] = [];
  try {
    await Promise.all([admin.connect(), producer.connect()]);
    await admin.createTopics({
      topics: Object.values(t).map((topic) => ({
        topic,
        numPartitions: topic === t.patterns ? 1 : PARTITIONS,
        // Generated event times are old: no time-based retention (see docs/kafka.md).
        configEntries: [{ name: 'retention.ms', value: '-1' }],
      })),
      waitForLeaders: true,
    });
    const initial = initialPatterns();
    const v2 = countryHoppingV2();
    // Event time: two hours behind the wall clock (the pattern topic's records carry wall-clock
    // timestamps and must not hold the watermark back).
    const start = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3 * 3_600_000;
    const plan = planPhases({
      start,
      phaseMs: PHASE_MS,
      partitions: PARTITIONS,
      perPhase: 30,
      quietMs: maxWithin([...initial, v2]),
      cards: 300,
      gapMs: 100,
    });
    const [phase1, phase2] = [phase(plan, 1), phase(plan, 2)];
    say(
      `topics fraud.${run}.* (transactions: ${PARTITIONS} partitions); ${plan.generated.transactions.length} transactions, ${plan.generated.planted.length} planted scenarios over 2 x 60 min of event time`,
    );

    const alerts = reader<Alert>(kafka, t.alerts);
    const updates = reader<PatternUpdate>(kafka, t.updates);
    const rejections = reader<PatternRejection>(kafka, t.rejections);
    const nearMisses = reader<TimedOutAlert>(kafka, t.nearMisses);
    const late = reader<unknown>(kafka, t.late);
    readers.push(alerts, updates, rejections, nearMisses, late);
    await Promise.all(readers.map((r) => r.ready));

    const job = await runKafkaJob(fraudJob({ jobId: `fraud-demo-${run}`, topics: t, log: () => {} }), {
      connection,
      storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
      checkpoints: { intervalMs: 500 },
      listener: { taskFailed: (f) => say(`task ${f.taskId} failed (${String(f.error)}); restarting`) },
    });
    const p = producer as unknown as Producer;
    try {
      await publishPatterns(p, t.patterns, initial);
      await until('the patterns at every task', () => updates.values.length >= initial.length * PARTITIONS);
      for (const r of initial) say(`pattern ${r.id} v${r.version} active: ${r.pattern.description}`);

      const closed = (n: 0 | 1) =>
        plan.closers[n]!.every((c) =>
          alerts.values.some((a) => a.card === c.card && a.end === c.tx.at(-1)!.ts),
        );
      const stream = async (n: 1 | 2, txs: typeof phase1, releaseUpTo: number) => {
        const began = Date.now();
        const budget = (seconds * 1000) / 2;
        await sendTransactions(p, t.transactions, PARTITIONS, txs, {
          batch: 500,
          pace: async (sent) => {
            const due = began + (budget * sent) / txs.length;
            if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
            if (sent % 10_000 < 500)
              say(
                `phase ${n}: ${sent}/${txs.length} transactions sent, ${alerts.values.length} alerts so far`,
              );
          },
        });
        await sendTicks(p, t.transactions, PARTITIONS, releaseUpTo);
        await until(`the end of phase ${n}`, () => closed((n - 1) as 0 | 1));
        say(`phase ${n} done: ${txs.length} transactions, ${alerts.values.length} alerts committed`);
      };
      await stream(1, phase1, plan.swapAt - 1);

      const rejected = malformedCardTesting();
      await publishPatterns(p, t.patterns, [v2, rejected]);
      await until(
        'the swap',
        () =>
          updates.values.length >= (initial.length + 1) * PARTITIONS &&
          rejections.values.length >= PARTITIONS,
      );
      say(`swap: pattern ${v2.id} v${v2.version} active: ${v2.pattern.description}`);
      say(`swap: ${rejections.values[0]!.message}`);

      await stream(2, phase2, plan.end + 2 * PHASE_MS);
    } finally {
      await job.stop();
    }

    // What must be found: per version, the planted scenarios and the brute-force reference.
    const [cardTesting, hoppingV1, declines] = initial as [typeof v2, typeof v2, typeof v2];
    const all = plan.generated.transactions;
    const reference = [
      ...referenceAlerts(cardTesting, all),
      ...referenceAlerts(hoppingV1, phase1),
      ...referenceAlerts(v2, phase2),
      ...referenceAlerts(declines, all),
    ];
    const planted = plantedAlerts(plan.generated.planted, [
      { pattern: v2.id, version: v2.version, at: plan.swapAt },
    ]);
    const found = alerts.values;
    const txKey = (a: Alert) => alertTxKey({ ...a, ids: Object.values(a.tx).flat() });
    const rows = ['card-testing@1', 'country-hopping@1', 'country-hopping@2', 'decline-retries@1'];
    const of = (keys: string[], v: string) => keys.filter((k) => k.startsWith(`${v} `));
    const foundKeys = found.map(txKey).sort();
    say('');
    say('pattern@version      planted  found  reference  missing  unexpected');
    for (const v of rows) {
      const [pl, fo, re] = [of(planted, v), of(foundKeys, v), of(reference.map(txKey), v)];
      const missing = pl.filter((k) => !fo.includes(k)).length;
      const unexpected = fo.filter((k) => !pl.includes(k)).length;
      say(
        `${v.padEnd(20)} ${String(pl.length).padStart(7)} ${String(fo.length).padStart(6)} ${String(re.length).padStart(10)} ${String(missing).padStart(8)} ${String(unexpected).padStart(11)}`,
      );
    }
    say('');
    for (const v of rows) {
      const a = found.find((x) => `${x.pattern}@${x.version}` === v);
      if (a) say(`e.g. ${alertKey(a)}`);
    }
    const straddling = plan.straddling.map((s) => {
      const hit = found.find((a) => a.card === s.card && a.start === s.tx[0]!.ts);
      return `${s.kind} begun before the swap: ${hit ? `alert ${hit.pattern}@${hit.version}` : 'no alert'}`;
    });
    say(`across the swap: ${straddling.join('; ')}`);
    say(
      `near misses (timed-out partial matches of 2+ transactions): ${nearMisses.values.length}; late transactions: ${late.values.length}; rejections: ${rejections.values.length} (one per task)`,
    );
    const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    const exact = found.map(alertKey).sort();
    const ok =
      same(foundKeys, planted) &&
      same(exact, reference.map(alertKey).sort()) &&
      new Set(exact).size === exact.length &&
      late.values.length === 0;
    say(
      ok
        ? `verified: the ${found.length} committed alerts are exactly the planted frauds and equal the brute-force reference`
        : 'NOT verified: the alerts differ from the planted frauds or from the reference (see the table)',
    );
    if (!ok) process.exitCode = 1;
  } finally {
    await Promise.all(readers.map((r) => r.stop()));
    await Promise.all([admin.disconnect().catch(() => {}), producer.disconnect().catch(() => {})]);
    await cluster.stop();
  }
}

interface Reader<T> {
  readonly values: T[];
  readonly ready: Promise<void>;
  stop(): Promise<void>;
}

/** Every committed record of `topic` (read_committed, from the beginning), collected as it arrives. */
function reader<T>(kafka: ReturnType<typeof createKafka>, topic: string): Reader<T> {
  const values: T[] = [];
  const consumer = kafka.consumer({ groupId: `${topic}.demo-reader`, maxWaitTimeInMs: 100 });
  const ready = (async () => {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        values.push(JSON.parse(message.value!.toString()) as T);
      },
    });
  })();
  return { values, ready, stop: () => consumer.disconnect() };
}

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${formatHarnessError(error).replace(/^kafka harness: unexpected error: /, 'fraud demo failed: ')}\n`,
  );
  process.exitCode = 1;
});
