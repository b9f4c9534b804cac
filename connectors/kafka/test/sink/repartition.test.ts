import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { StreamJob } from '../../../../framework/index.ts';
import { plannedFaults } from '../../../../framework/testing/index.ts';
import { KafkaSink, KafkaSource, runKafkaJob } from '../../index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { CountAndSum, checkpointStorage, type In, type Out } from '../jobs/count-job.ts';
import { produceInput, readCommitted } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

describe('repartition', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('repartition-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'repartition-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test('keyBy on another key goes through a repartition topic, exactly once across both stages and failures', async () => {
    const n = names('repartition');
    const input = n.topic('in');
    const output = n.topic('out');
    const jobId = n.group('job');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 3 },
        { topic: output, numPartitions: 3 },
      ],
      waitForLeaders: true,
    });
    const TOTAL = 6000;
    await produceInput(input, TOTAL, 41); // partitioned by k
    const job = new StreamJob(jobId);
    job
      .source(new KafkaSource<In>({ topic: input }))
      .map((e) => ({ k: `g${e.n % 7}`, n: e.n }))
      .keyBy((e) => e.k, { repartition: true })
      .process(new CountAndSum(), { uid: 'per-group' })
      .sinkTo(new KafkaSink<Out>({ topic: output, encode: (v) => ({ key: v.k, value: JSON.stringify(v) }) }));
    const faults = plannedFaults({
      seed: 9,
      probability: { 'checkpoint.after-commit': 0.2, 'snapshot.capture': 0.05 },
      max: 6,
    });
    const running = await runKafkaJob(job, {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, n.stem)),
      checkpoints: { intervalMs: 50 },
      faults: faults.injector,
      restart: { kind: 'fixed-delay', attempts: 100, delayMs: 20 },
    });
    try {
      const out = await readCommitted<Out>(output, TOTAL, 90_000);
      // One output per input, and per group the counts are exactly 1..c and the last sum is the
      // sum of the group's inputs (arrival order across upstream tasks is not fixed).
      assert.equal(new Set(out.map((o) => o.n)).size, TOTAL, 'an input has no output, or two');
      assert.equal(out.length, TOTAL);
      for (let g = 0; g < 7; g++) {
        const rows = out.filter((o) => o.k === `g${g}`);
        const counts = rows.map((o) => o.count).sort((a, b) => a - b);
        assert.deepEqual(
          counts,
          Array.from({ length: rows.length }, (_, i) => i + 1),
          `group g${g}: counts`,
        );
        const expectedSum = rows.reduce((s, o) => s + o.n, 0);
        assert.equal(Math.max(...rows.map((o) => o.sum)), expectedSum, `group g${g}: final sum`);
      }
      const topics = await admin.listTopics();
      assert.ok(topics.includes(`${jobId}.per-group.repartition`), 'the repartition topic was not created');
      assert.ok(faults.total() > 0, 'no failure was injected');
    } finally {
      await running.stop();
    }
  });
});
