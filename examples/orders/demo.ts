/**
 * The main demo job as a service (`npm run demo` in a clone, `kstate demo` from the installed package).
 * Starts a Kafka broker through the local harness (connectors/kafka/local: fetched from Maven Central
 * with mvn, run with java) unless KAFKA_BROKERS names one, feeds `demo.orders` from a data generator,
 * and runs the exactly-once orders job (LevelDB state, filesystem checkpoints under ./.demo/) until
 * Ctrl-C or DEMO_SECONDS. On stop it lets the job drain and checks every customer's committed total
 * against the generator's own tally.
 *
 *   DEMO_SECONDS   stop by itself after this long (default: run until Ctrl-C)
 *   DEMO_RATE      orders per second (default 2000)
 */
import { join, resolve } from 'node:path';
import { createKafka, runKafkaJob } from '../../connectors/kafka/index.ts';
import { formatHarnessError } from '../../connectors/kafka/local/errors.ts';
import { localKafka } from '../../connectors/kafka/local/local.ts';
import { FilesystemCheckpointStorage, levelBackend } from '../../framework/index.ts';
import { generateOrders } from './generator.ts';
import { type CustomerTotal, ordersJob } from './job.ts';

const say = (line: string) => process.stdout.write(`demo: ${line}\n`);

/**
 * Runs the demo until SIGINT/SIGTERM or `DEMO_SECONDS`; resolves with the exit code (0: every order
 * verified exactly once in the committed totals).
 */
export async function runDemo(): Promise<number> {
  const cluster = await localKafka(say);
  const brokers = cluster.brokers;
  const connection = { brokers: [brokers] };
  const run = `${Date.now().toString(36)}`;
  const input = `demo.orders.${run}`;
  const output = `demo.customer-totals.${run}`;
  const jobId = `orders-demo-${run}`;
  const dir = resolve('.demo', run);
  const kafka = createKafka(connection, '-demo');
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.createTopics({
      topics: [input, output].map((topic) => ({ topic, numPartitions: 4 })),
      waitForLeaders: true,
    });
    say(`topics ${input} -> ${output} (4 partitions); state and checkpoints in ${dir}`);
    const generator = generateOrders({
      connection,
      topic: input,
      customers: 500,
      perSecond: Number(process.env.DEMO_RATE ?? 2000),
    });
    let checkpoints = 0;
    const job = await runKafkaJob(ordersJob({ jobId, input, output }), {
      connection,
      storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
      backend: levelBackend(join(dir, 'state')),
      checkpoints: { intervalMs: 1000 },
      restart: { kind: 'exponential-backoff', initialDelayMs: 200, maxDelayMs: 10_000, multiplier: 2 },
      listener: {
        checkpointCompleted: () => checkpoints++,
        taskFailed: (f) => say(`task ${f.taskId} failed (${String(f.error)}); restarting: ${f.restarting}`),
      },
    });
    say('job running: Ctrl-C stops it');
    const stopped = new Promise<void>((r) => {
      process.once('SIGINT', r);
      process.once('SIGTERM', r);
      if (process.env.DEMO_SECONDS) setTimeout(r, Number(process.env.DEMO_SECONDS) * 1000).unref();
    });
    const progress = setInterval(() => {
      const tasks = job.tasks();
      say(
        `orders generated ${generator.sent()}, processed ${tasks.reduce((s, t) => s + t.recordsIn, 0)} by ${tasks.length} tasks, checkpoints committed ${checkpoints}`,
      );
    }, 5000);
    await stopped;
    clearInterval(progress);
    const sent = await generator.stop();
    say(`generator stopped after ${sent} orders; letting the job drain ...`);
    const totals = await drainedTotals(kafka, output, sent, 60_000);
    await job.stop();
    say(
      totals.orders === sent
        ? `verified: ${totals.customers} customers, ${totals.orders} orders; each order counted exactly once in the committed totals`
        : `NOT verified: committed totals count ${totals.orders} orders, the generator sent ${sent}`,
    );
    return totals.orders === sent ? 0 : 1;
  } finally {
    await admin.disconnect().catch(() => {});
    await cluster.stop();
  }
}

/** Read the committed output until the latest totals of all customers add up to `expected` orders. */
async function drainedTotals(
  kafka: ReturnType<typeof createKafka>,
  topic: string,
  expected: number,
  ms: number,
) {
  const latest = new Map<string, CustomerTotal>();
  const consumer = kafka.consumer({ groupId: `demo-check-${Date.now()}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const sum = () => [...latest.values()].reduce((s, t) => s + t.orders, 0);
  await consumer.run({
    eachMessage: async ({ message }) => {
      const t = JSON.parse(message.value!.toString()) as CustomerTotal;
      const prev = latest.get(t.customer);
      if (!prev || prev.orders < t.orders) latest.set(t.customer, t);
    },
  });
  const deadline = Date.now() + ms;
  while (sum() < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  await consumer.disconnect();
  return { customers: latest.size, orders: sum() };
}

/** The demo's one-line failure message (the harness's wording for broker problems). */
export function demoFailure(error: unknown): string {
  return formatHarnessError(error).replace(/^kafka harness: unexpected error: /, 'demo failed: ');
}
