import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isStreamError } from '../../../../framework/index.ts';
import { runKafkaJob } from '../../index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { startBroker } from '../../local/broker.ts';
import { checkpointStorage, countJob, type Out } from '../jobs/count-job.ts';
import { produceInput, readCommitted, verifyCounts } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient, withTimeout } from '../support/kafka.ts';
import { names } from '../support/names.ts';

describe('bad configuration and an unreachable broker', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('startup-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'startup-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  /** The count job's input and output topics, two partitions each. */
  async function inputAndOutput(n: ReturnType<typeof names>): Promise<{ input: string; output: string }> {
    const input = n.topic('in');
    const output = n.topic('out');
    await admin.createTopics({
      topics: [input, output].map((topic) => ({ topic, numPartitions: 2 })),
      waitForLeaders: true,
    });
    return { input, output };
  }

  const invalid = (pattern: RegExp) => (e: unknown) => {
    assert.ok(isStreamError(e, 'CONFIG_INVALID'), String(e));
    assert.match(e.message, pattern);
    return true;
  };

  test('a topic that does not exist is one clear error at start', async () => {
    const n = names('missing topic');
    await assert.rejects(
      runKafkaJob(countJob({ jobId: n.group('job'), input: n.topic('nope'), output: n.topic('out') }), {
        connection: { brokers: brokersFromEnv() },
        storage: checkpointStorage(join(dir, 'missing')),
      }),
      invalid(/topic\(s\) .*nope.* do not exist: create them first/),
    );
  });

  test('a transaction timeout shorter than a checkpoint can take is refused at start', async () => {
    const n = names('short txn');
    const job = countJob({ jobId: n.group('job'), input: n.topic('in'), output: n.topic('out') });
    await assert.rejects(
      runKafkaJob(job, {
        connection: { brokers: brokersFromEnv() },
        storage: checkpointStorage(join(dir, 'short')),
        checkpoints: { intervalMs: 1000, timeoutMs: 200_000 },
      }),
      invalid(
        /transactionTimeoutMs 120000 must exceed checkpoints.intervalMs \+ checkpoints.timeoutMs = 201000/,
      ),
    );
  });

  test('a session timeout the brokers refuse fails the job with one clear error, not an idle job', async () => {
    // The brokers refuse a join whose session timeout exceeds group.max.session.timeout.ms (30 min by
    // default): kafkajs then stops its consumer for good, and before the fix the job sat idle with no
    // error and no task.
    const n = names('session timeout');
    const { input, output } = await inputAndOutput(n);
    const running = await runKafkaJob(countJob({ jobId: n.group('job'), input, output }), {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, 'session')),
      consumer: { sessionTimeoutMs: 31 * 60_000 },
    });
    try {
      await assert.rejects(
        withTimeout(running.done, 60_000, () => 'the job did not fail'),
        invalid(/consumer of group .* stopped: .*session timeout .* group\.max\.session\.timeout\.ms/),
      );
    } finally {
      await running.stop();
    }
  });

  for (const change of ['deleted', 'given a partition'] as const) {
    test(`a source topic ${change} while the job runs fails it with one clear error, not an idle job`, async () => {
      // Before the topic check, the job ran on, ready, its tasks idle (a deleted topic) or never
      // reading the new partition.
      const n = names(`topic ${change}`);
      const { input, output } = await inputAndOutput(n);
      await produceInput(input, 200, 17);
      const running = await runKafkaJob(countJob({ jobId: n.group('job'), input, output }), {
        connection: { brokers: brokersFromEnv() },
        storage: checkpointStorage(join(dir, n.stem)),
        checkpoints: { intervalMs: 100 },
        topicCheckMs: 500,
      });
      try {
        verifyCounts(await readCommitted<Out>(output, 200, 60_000), 200);
        if (change === 'deleted') await admin.deleteTopics({ topics: [input] });
        else await admin.createPartitions({ topicPartitions: [{ topic: input, count: 3 }] });
        await assert.rejects(
          withTimeout(running.done, 60_000, () => `the job did not fail after its input topic was ${change}`),
          invalid(
            change === 'deleted'
              ? /source topic '.*' was deleted while job '.*' ran: .*create it again \(2 partitions\)/
              : /source topic '.*' has 3 partitions now; job '.*' started with 2 .*kstate savepoint rescale/,
          ),
        );
      } finally {
        await running.stop();
      }
    });
  }

  test('a broker that does not answer is one clear error at start', async () => {
    const n = names('no broker');
    await assert.rejects(
      runKafkaJob(countJob({ jobId: n.group('job'), input: n.topic('in'), output: n.topic('out') }), {
        connection: { brokers: ['127.0.0.1:1'], connectionTimeoutMs: 300 },
        storage: checkpointStorage(join(dir, 'nobroker')),
      }),
      (e: unknown) => {
        assert.match(
          String((e as Error).message),
          /connecting to Kafka at 127\.0\.0\.1:1 \(is the broker running and reachable\?\)/,
        );
        return true;
      },
    );
  });

  test('a broker that goes away for a while: the job keeps retrying and resumes without loss', async () => {
    // A broker of this test's own, so that freezing it disturbs no other test.
    const broker = await startBroker();
    try {
      const connection = { brokers: [broker.brokers] };
      const own = kafkaClient('outage-admin', { brokers: [broker.brokers] }).admin();
      await own.connect();
      const n = names('outage');
      const input = n.topic('in');
      const output = n.topic('out');
      await own.createTopics({
        topics: [
          { topic: input, numPartitions: 2 },
          { topic: output, numPartitions: 2 },
        ],
        waitForLeaders: true,
      });
      await own.disconnect();
      const env = process.env.KAFKA_BROKERS;
      process.env.KAFKA_BROKERS = broker.brokers; // the helpers read it
      try {
        await produceInput(input, 3000, 17);
        const running = await runKafkaJob(countJob({ jobId: n.group('job'), input, output }), {
          connection,
          storage: checkpointStorage(join(dir, 'outage')),
          checkpoints: { intervalMs: 100 },
          restart: { kind: 'exponential-backoff', initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2 },
          consumer: { sessionTimeoutMs: 6000 },
        });
        try {
          await readCommitted<Out>(output, 3000, 60_000);
          // The broker stops answering (frozen) for 4 s, while more input is waiting.
          process.kill(broker.pid, 'SIGSTOP');
          await new Promise((r) => setTimeout(r, 4000));
          process.kill(broker.pid, 'SIGCONT');
          await produceInput(input, 3000, 17, 3000);
          verifyCounts(await readCommitted<Out>(output, 6000, 120_000), 6000);
        } finally {
          await running.stop();
        }
      } finally {
        process.env.KAFKA_BROKERS = env;
      }
    } finally {
      await broker.stop();
    }
  });
});
