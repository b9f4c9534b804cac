import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { isStreamError, outputTag, StreamJob } from '../../../../framework/index.ts';
import { plannedFaults } from '../../../../framework/testing/index.ts';
import {
  DEAD_LETTER_TAG,
  type DeadLetter,
  type DecodeErrorPolicy,
  KafkaSink,
  KafkaSource,
  runKafkaJob,
} from '../../index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { CountAndSum, checkpointStorage, type In, type Out } from '../jobs/count-job.ts';
import { readCommitted, verifyCounts } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

const run = promisify(execFile);

/** (e) Records that fail to deserialize, under each policy of the source. */
describe('poison records', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('poison-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'poison-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  /** 2000 good records (n = 0..1999) and every 100th slot a poison record in between. */
  async function topicWithPoison(label: string) {
    const n = names(label);
    const input = n.topic('in');
    const output = n.topic('out');
    const dlq = n.topic('dlq');
    await admin.createTopics({
      topics: [input, output, dlq].map((topic) => ({ topic, numPartitions: 2 })),
      waitForLeaders: true,
    });
    const producer = kafkaClient('poison-input').producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const messages = [];
    let poison = 0;
    for (let i = 0; i < 2000; i++) {
      const k = `k${i % 13}`;
      messages.push({ key: k, value: JSON.stringify({ k, n: i }) });
      if (i % 100 === 50) {
        messages.push({ key: k, value: `{not json ${i}` });
        poison++;
      }
    }
    await producer.send({ topic: input, messages });
    await producer.disconnect();
    return { jobId: n.group('job'), input, output, dlq, poison };
  }

  function job(t: { jobId: string; input: string; output: string; dlq: string }, policy: DecodeErrorPolicy) {
    const j = new StreamJob(t.jobId);
    const source = new KafkaSource<In>({ topic: t.input, onDecodeError: policy });
    const s = j.source(source);
    s.keyBy((e) => e.k)
      .process(new CountAndSum(), { uid: 'count-and-sum' })
      .sinkTo(
        new KafkaSink<Out>({ topic: t.output, encode: (v) => ({ key: v.k, value: JSON.stringify(v) }) }),
      );
    if (policy === 'dead-letter') {
      s.getSideOutput(outputTag<DeadLetter>(DEAD_LETTER_TAG)).sinkTo(
        new KafkaSink<DeadLetter>({
          topic: t.dlq,
          encode: (d) => ({
            key: d.key,
            value: d.value,
            headers: { 'x-source': `${d.topic}/${d.partition}@${d.offset}`, 'x-error': d.error },
          }),
        }),
      );
    }
    return { graph: j, source };
  }

  test("'fail' (the default) stops the task with the topic, partition and offset of the bad record", async () => {
    const t = await topicWithPoison('poison fail');
    const { graph } = job(t, 'fail');
    const running = await runKafkaJob(graph, {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, 'fail')),
      restart: { kind: 'none' },
    });
    await assert.rejects(running.done, (e: unknown) => {
      const cause = (e as Error).cause;
      assert.ok(isStreamError(cause, 'RECORD_DESERIALIZATION_FAILED'), String(cause));
      assert.match(cause.message, new RegExp(`record ${t.input}/\\d@\\d+ could not be deserialized`));
      return true;
    });
    await running.stop();
  });

  test("'skip' counts the bad records and commits every good one exactly once", async () => {
    const t = await topicWithPoison('poison skip');
    const { graph, source } = job(t, 'skip');
    const running = await runKafkaJob(graph, {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, 'skip')),
    });
    try {
      verifyCounts(await readCommitted<Out>(t.output, 2000, 60_000), 2000);
      assert.equal(source.skipped, t.poison);
    } finally {
      await running.stop();
    }
  });

  test("'dead-letter' writes each bad record to the dead-letter topic exactly once, in the task's transaction, across failures", async () => {
    const t = await topicWithPoison('poison dlq');
    const { graph } = job(t, 'dead-letter');
    // Fail the task a few times after a checkpoint committed, before it is acknowledged.
    const faults = plannedFaults({ seed: 3, probability: { 'checkpoint.after-commit': 0.3 }, max: 3 });
    const running = await runKafkaJob(graph, {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, 'dlq')),
      checkpoints: { intervalMs: 50 },
      faults: faults.injector,
      restart: { kind: 'fixed-delay', attempts: 100, delayMs: 50 },
    });
    try {
      verifyCounts(await readCommitted<Out>(t.output, 2000, 60_000), 2000);
      const dead = await readDeadLetters(t.dlq, t.poison);
      assert.equal(dead.length, t.poison, `dead letters: ${dead.length}, poison records: ${t.poison}`);
      assert.equal(new Set(dead).size, dead.length, 'a bad record was dead-lettered twice');
      assert.ok(dead.every((v) => v.startsWith('{not json ')));
      assert.ok(faults.total() > 0, 'no failure was injected');
    } finally {
      await running.stop();
    }
  });
});

async function readDeadLetters(topic: string, expected: number): Promise<string[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const rows = await kcatRaw(topic);
    if (rows.length >= expected || Date.now() > deadline) return rows;
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Values of the dead-letter topic are the raw bad bytes (not JSON): read them as text, with kcat. */
async function kcatRaw(topic: string): Promise<string[]> {
  const { stdout } = await run('kcat', [
    '-C',
    '-b',
    brokersFromEnv().join(','),
    '-t',
    topic,
    '-X',
    'isolation.level=read_committed',
    '-e',
    '-q',
    '-f',
    '%s\\n',
  ]);
  return stdout.split('\n').filter((l) => l.length > 0);
}
