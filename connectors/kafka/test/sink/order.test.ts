/**
 * Issue 12 (c): per-key output order within and across checkpoint intervals at a high rate. kcat
 * writes about 50,000 records per second into one input partition while the count job runs with a
 * checkpoint every 100 ms, so each interval holds thousands of records (many sends of the sink) and
 * intervals follow each other closely. Read back with kcat in read_committed mode: per key, offsets
 * and counts rise together (the counts in offset order are exactly 1..n, the sums recomputed along
 * them, the inputs in their input order), and every input has exactly one effect.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runKafkaJob } from '../../index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { checkpointStorage, countJob, type Out } from '../jobs/count-job.ts';
import { countSequences, kcatProducer, verifyCounts } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { assertSequences, describeSequences, readCommittedRecords } from '../support/sequence-check.ts';

const TOTAL = Number(process.env.ORDER_RECORDS ?? 300_000);
const RATE = 50_000;
const KEYS = 500;

/**
 * Writes `total` records `{k, n}` into partition 0 of `topic` with kcat, about `rate` per second (a
 * slice every 100 ms); resolves with the achieved rate once kcat delivered them all.
 */
async function produceAtRate(topic: string, total: number, rate: number): Promise<number> {
  const kcat = kcatProducer(topic, ['-p', '0', '-X', 'linger.ms=5']);
  const t0 = performance.now();
  const slice = Math.round(rate / 10);
  for (let n = 0, tick = 1; n < total; tick++) {
    const lines: string[] = [];
    for (const end = Math.min(total, n + slice); n < end; n++) {
      const k = `k${n % KEYS}`;
      lines.push(`${k}\t${JSON.stringify({ k, n })}\n`);
    }
    await kcat.write(lines.join(''));
    // Pacing of the load (not synchronisation): the next slice at its time.
    const wait = t0 + tick * 100 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await kcat.end();
  return Math.round(total / ((performance.now() - t0) / 1000));
}

describe('per-key order at a high rate', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('order-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'order-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test(`${TOTAL} records at about ${RATE}/s into one partition, checkpoints every 100 ms: per key, offsets and counts rise together`, async () => {
    const n = names('order');
    const input = n.topic('in');
    const output = n.topic('out');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 1 },
        { topic: output, numPartitions: 4 },
      ],
      waitForLeaders: true,
    });
    let checkpoints = 0;
    const job = await runKafkaJob(countJob({ jobId: n.group('job'), input, output }), {
      connection: { brokers: brokersFromEnv() },
      storage: checkpointStorage(join(dir, n.stem)),
      checkpoints: { intervalMs: 100 },
      listener: {
        checkpointCompleted: () => {
          checkpoints++;
        },
      },
    });
    try {
      const rate = await produceAtRate(input, TOTAL, RATE);
      const t0 = performance.now();
      const out = await readCommittedRecords<Out>(output, TOTAL, 180_000);
      const order = countSequences(out);
      console.log(
        `order test: ${TOTAL} records over ${KEYS} keys written at ${rate}/s into one partition; ${checkpoints} checkpoints (every 100 ms) by the time ${out.length} outputs were committed (${Math.round(performance.now() - t0)} ms after the input was written); ${describeSequences(order)}`,
      );
      verifyCounts(
        out.map((r) => r.value),
        TOTAL,
      );
      assertSequences(order);
      assert.ok(
        checkpoints >= 3,
        `only ${checkpoints} checkpoints: the interval boundaries were not exercised`,
      );
    } finally {
      await job.stop();
    }
  });
});
