/**
 * `npm run nexmark` / `npm run clickstream`: run one of the event-time examples end to end. Starts a
 * Kafka broker through the harness unless KAFKA_BROKERS names one, creates fresh topics, produces the
 * generated input (with end markers that move event time past the last window), runs the exactly-once
 * job on LevelDB state until its committed output is complete, prints a sample and checks every
 * output against a batch recomputation of the same input. Exits 0 when they agree.
 *
 *   node scripts/examples.ts nexmark       NEXMARK_EVENTS (default 100000)
 *   node scripts/examples.ts clickstream   CLICK_USERS (default 500), CLICKS_PER_USER (default 40)
 */
import { join, resolve } from 'node:path';
import { createKafka, runKafkaJob } from '../connectors/kafka/index.ts';
import { formatHarnessError } from '../connectors/kafka/local/errors.ts';
import { localKafka } from '../connectors/kafka/local/local.ts';
import { clicks } from '../examples/clickstream/generator.ts';
import { clickstreamJob } from '../examples/clickstream/job.ts';
import type { Session } from '../examples/clickstream/model.ts';
import { sessions } from '../examples/clickstream/reference.ts';
import { nexmarkEvents } from '../examples/nexmark/generator.ts';
import { nexmarkJob, nexmarkTopics } from '../examples/nexmark/job.ts';
import type { HotItem } from '../examples/nexmark/model.ts';
import { auctionCounts, hotItems, newUsers, uniquePersons } from '../examples/nexmark/reference.ts';
import { FilesystemCheckpointStorage, levelBackend, type StreamJob } from '../framework/index.ts';

const which = process.argv[2];
const say = (line: string) => process.stdout.write(`${which}: ${line}\n`);
const PARTITIONS = 4;

type Kafka = ReturnType<typeof createKafka>;
interface Input {
  readonly topic: string;
  readonly messages: { key: string; value: string }[];
  readonly endMarker: object;
}
/** An example: its topics, input, job, and the check of its committed output (true when complete and equal). */
interface Example {
  readonly outputs: string[];
  readonly inputs: Input[];
  readonly job: StreamJob;
  check(outputs: Map<string, unknown[]>, final: boolean): boolean;
}

const lines = (xs: readonly unknown[]) => xs.map((x) => JSON.stringify(x)).sort();
const equal = (a: readonly unknown[], b: readonly unknown[]) => {
  const [x, y] = [lines(a), lines(b)];
  return x.length === y.length && x.every((l, i) => l === y[i]);
};

function nexmark(run: string): Example {
  const t = nexmarkTopics(`nexmark.${run}`);
  const e = nexmarkEvents({ events: Number(process.env.NEXMARK_EVENTS ?? 100_000) });
  say(`${e.persons.length} persons (with duplicates), ${e.auctions.length} auctions, ${e.bids.length} bids`);
  const expected = {
    [t.uniquePersons]: uniquePersons(e.persons),
    [t.q8]: newUsers(e.persons, e.auctions),
    [t.q5Counts]: auctionCounts(e.bids),
  };
  const hot = hotItems(e.bids);
  const end = e.end + 60_000;
  return {
    outputs: [t.uniquePersons, t.q8, t.q5Counts, t.q5Hot],
    inputs: [
      {
        topic: t.persons,
        messages: e.persons.map((p) => ({ key: String(p.id), value: JSON.stringify(p) })),
        endMarker: { id: -1, dateTime: end },
      },
      {
        topic: t.auctions,
        messages: e.auctions.map((a) => ({ key: String(a.seller), value: JSON.stringify(a) })),
        endMarker: { id: -1, seller: -1, dateTime: end },
      },
      {
        topic: t.bids,
        messages: e.bids.map((b) => ({ key: String(b.auction), value: JSON.stringify(b) })),
        endMarker: { auction: -1, dateTime: end },
      },
    ],
    job: nexmarkJob(`nexmark-${run}`, t),
    check(out, final) {
      const finalHot = new Map((out.get(t.q5Hot) as HotItem[]).map((h) => [h.end, h]));
      const results = [
        ...Object.entries(expected).map(([topic, want]) => ({
          topic,
          ok: equal(out.get(topic)!, want),
          got: out.get(topic)!.length,
          want: want.length,
        })),
        { topic: t.q5Hot, ok: equal([...finalHot.values()], hot), got: finalHot.size, want: hot.length },
      ];
      if (final) {
        const top = [...finalHot.values()].sort((a, b) => b.count - a.count).slice(0, 3);
        say(
          `q5 hottest windows: ${top.map((h) => `auction ${h.auction} with ${h.count} bids in the 10 s before ${new Date(h.end).toISOString()}`).join('; ')}`,
        );
        for (const r of results)
          say(
            `${r.ok ? 'verified' : 'NOT verified'}: ${r.topic}: ${r.got} committed, batch recomputation ${r.want}`,
          );
      }
      return results.every((r) => r.ok);
    },
  };
}

function clickstream(run: string): Example {
  const topics = { clicks: `clickstream.${run}.clicks`, sessions: `clickstream.${run}.sessions` };
  const all = clicks({
    users: Number(process.env.CLICK_USERS ?? 500),
    perUser: Number(process.env.CLICKS_PER_USER ?? 40),
  });
  const expected = sessions(all);
  say(`${all.length} clicks, out of order by up to 1.5 s`);
  return {
    outputs: [topics.sessions],
    inputs: [
      {
        topic: topics.clicks,
        messages: all.map((c) => ({ key: c.user, value: JSON.stringify(c) })),
        endMarker: { user: '', page: '', ts: Math.max(...all.map((c) => c.ts)) + 60_000 },
      },
    ],
    job: clickstreamJob(`clickstream-${run}`, topics),
    check(out, final) {
      const got = out.get(topics.sessions) as Session[];
      const ok = equal(got, expected);
      if (final) {
        const longest = [...got].sort((a, b) => b.clicks - a.clicks)[0];
        if (longest)
          say(
            `longest session: ${longest.user}, ${longest.clicks} clicks over ${((longest.end - longest.start) / 1000).toFixed(1)} s, landing on ${longest.landing}, pages ${longest.pages.join(' ')}`,
          );
        say(
          `${ok ? 'verified' : 'NOT verified'}: ${got.length} sessions committed, batch sessionisation ${expected.length}`,
        );
      }
      return ok;
    },
  };
}

/** The committed records of `topics` (read_committed), kept up to date in the background. */
async function follow(kafka: Kafka, topics: readonly string[]) {
  const out = new Map<string, unknown[]>(topics.map((t) => [t, []]));
  const consumer = kafka.consumer({ groupId: `${which}-check-${Date.now()}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [...topics], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      out.get(topic)!.push(JSON.parse(message.value!.toString()));
    },
  });
  return { out, stop: () => consumer.disconnect() };
}

async function main(): Promise<void> {
  if (which !== 'nexmark' && which !== 'clickstream') {
    throw new Error('usage: node scripts/examples.ts nexmark | clickstream');
  }
  const cluster = await localKafka(say);
  const brokers = cluster.brokers;
  const connection = { brokers: [brokers] };
  const run = Date.now().toString(36);
  const example = which === 'nexmark' ? nexmark(run) : clickstream(run);
  const kafka = createKafka(connection, `-${which}`);
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  try {
    await admin.connect();
    await admin.createTopics({
      // Generated event times are old: no time-based retention (see docs/kafka.md).
      topics: [...example.inputs.map((i) => i.topic), ...example.outputs].map((topic) => ({
        topic,
        numPartitions: PARTITIONS,
        configEntries: [{ name: 'retention.ms', value: '-1' }],
      })),
      waitForLeaders: true,
    });
    await producer.connect();
    for (const i of example.inputs) {
      for (let k = 0; k < i.messages.length; k += 5000)
        await producer.send({ topic: i.topic, messages: i.messages.slice(k, k + 5000) });
      await producer.send({
        topic: i.topic,
        messages: [...Array(PARTITIONS).keys()].map((partition) => ({
          partition,
          value: JSON.stringify(i.endMarker),
        })),
      });
    }
    const dir = resolve('.demo', `${which}-${run}`);
    say(`input produced; running the job (LevelDB state and checkpoints under ${dir}) ...`);
    const started = performance.now();
    const job = await runKafkaJob(example.job, {
      connection,
      storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
      backend: levelBackend(join(dir, 'state')),
      checkpoints: { intervalMs: 1000 },
    });
    const reader = await follow(kafka, example.outputs);
    const deadline = Date.now() + 180_000;
    while (!example.check(reader.out, false) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 500));
    say(`output complete after ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const ok = example.check(reader.out, true);
    await reader.stop();
    await job.stop();
    if (!ok) process.exitCode = 1;
  } finally {
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
    await cluster.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${formatHarnessError(error).replace(/^kafka harness: unexpected error: /, `${which} failed: `)}\n`,
  );
  process.exitCode = 1;
});
