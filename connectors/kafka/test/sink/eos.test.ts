import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runKafkaJob } from '../../index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { checkpointStorage, countJob, type Out } from '../jobs/count-job.ts';
import { produceInput, readCommitted, verifyCounts } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

describe('exactly-once job on the broker', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('eos-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'eos-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test('a keyed counting job commits every input effect exactly once (checked with kcat)', async () => {
    const n = names('eos basic');
    const input = n.topic('in');
    const output = n.topic('out');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 3 },
        { topic: output, numPartitions: 3 },
      ],
      waitForLeaders: true,
    });
    const sent = await produceInput(input, 3000, 40);
    const job = await runKafkaJob(countJob({ jobId: n.group('job'), input, output }), {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, 'basic')),
      checkpoints: { intervalMs: 200 },
    });
    try {
      const out = await readCommitted<Out>(output, sent, 60_000);
      verifyCounts(out, 3000);
    } finally {
      await job.stop();
    }
  });
});
