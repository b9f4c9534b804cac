import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { levelBackend, StreamJob } from '../../../../framework/index.ts';
import { type KafkaRunningJob, KafkaSink, KafkaSource, runKafkaJob, tableSource } from '../../index.ts';
import type { Admin, Producer } from '../../internal/kafkajs.ts';
import { checkpointStorage } from '../jobs/count-job.ts';
import { kcatAll, sendWhenReady } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

interface Order {
  readonly customer: string;
  readonly n: number;
}
interface Customer {
  readonly tier: string;
}
interface Enriched {
  readonly n: number;
  readonly customer: string;
  readonly tier: string | null;
}

/**
 * The lookup join against a compacted topic read as a table (a KTable): the table's latest value
 * per key lives in keyed state; tombstones delete; after a restart the table comes from the
 * checkpoint (its topic is not re-read). Orders are produced only once the job has read the table
 * updates before them (its lag on the table topic is 0), so the expected tier of each order is known.
 */
describe('table join on a compacted topic', () => {
  let admin: Admin;
  let producer: Producer;
  let dir: string;
  before(async () => {
    admin = kafkaClient('table-admin').admin();
    producer = kafkaClient('table-input').producer({ idempotent: true, maxInFlightRequests: 1 });
    await Promise.all([admin.connect(), producer.connect()]);
    dir = await mkdtemp(join(tmpdir(), 'table-join-'));
  });
  after(async () => {
    await Promise.all([admin.disconnect(), producer.disconnect()]);
    await rm(dir, { recursive: true, force: true });
  });

  test('orders enriched with the customer table: updates, tombstones and a restart', async () => {
    const n = names('table-join');
    const [orders, customers, output] = [n.topic('orders'), n.topic('customers'), n.topic('enriched')];
    await admin.createTopics({
      topics: [
        { topic: orders, numPartitions: 3 },
        {
          topic: customers,
          numPartitions: 3,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        },
        { topic: output, numPartitions: 3 },
      ],
      waitForLeaders: true,
    });
    const [config] = (
      await admin.describeConfigs({
        resources: [{ type: 2, name: customers, configNames: ['cleanup.policy'] }],
        includeSynonyms: false,
      })
    ).resources;
    assert.equal(config?.configEntries[0]?.configValue, 'compact');

    const start = () => {
      const job = new StreamJob(n.group('job'));
      const table = job.source(tableSource<Customer>({ topic: customers })).keyBy((u) => u.key);
      job
        .source(new KafkaSource<Order>({ topic: orders }))
        .keyBy((o) => o.customer)
        .tableJoin(
          table,
          {
            kind: 'left',
            join: (o, c, key): Enriched => ({ n: o.n, customer: key, tier: c?.tier ?? null }),
          },
          { uid: 'enrich' },
        )
        .sinkTo(
          new KafkaSink<Enriched>({
            topic: output,
            encode: (e) => ({ key: e.customer, value: JSON.stringify(e) }),
          }),
        );
      return runKafkaJob(job, {
        connection: { brokers: brokersFromEnv() },
        storage: checkpointStorage(join(dir, 'shared')),
        backend: levelBackend(join(dir, 'state')),
        checkpoints: { intervalMs: 100 },
      });
    };
    const customersOf = (i: number) => `c${i}`;
    const tiers = new Map<string, string>();
    const setTiers = async (entries: [string, string | null][]) => {
      await sendWhenReady(() =>
        producer.send({
          topic: customers,
          messages: entries.map(([k, tier]) => ({
            key: k,
            value: tier === null ? null : JSON.stringify({ tier }),
          })),
        }),
      );
      for (const [k, tier] of entries) {
        if (tier === null) tiers.delete(k);
        else tiers.set(k, tier);
      }
    };
    /** Wait until the job has read every partition of `topic` to its end. */
    const caughtUp = async (job: KafkaRunningJob, topic: string) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const lag = (await job.lag()).filter((l) => l.topic === topic);
        if (lag.length === 3 && lag.every((l) => l.lag === 0)) {
          // Read to the end means handed to the task's input queue: give the task a moment to process it.
          await new Promise((r) => setTimeout(r, 300));
          return;
        }
        if (Date.now() > deadline)
          throw new Error(`the job did not catch up on ${topic}: ${JSON.stringify(lag)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const expected: Enriched[] = [];
    let next = 0;
    const order = async (count: number) => {
      const batch: Order[] = [];
      for (let i = 0; i < count; i++) batch.push({ customer: customersOf(next % 30), n: next++ });
      await sendWhenReady(() =>
        producer.send({
          topic: orders,
          messages: batch.map((o) => ({ key: o.customer, value: JSON.stringify(o) })),
        }),
      );
      for (const o of batch)
        expected.push({ n: o.n, customer: o.customer, tier: tiers.get(o.customer) ?? null });
    };

    let job = await start();
    await setTiers(Array.from({ length: 20 }, (_, i) => [customersOf(i), i % 2 ? 'gold' : 'silver']));
    await caughtUp(job, customers);
    await order(300); // customers 20..29 have no row: a left join gives tier null
    await caughtUp(job, orders);
    await setTiers([
      [customersOf(1), 'platinum'],
      [customersOf(2), null], // tombstone
      [customersOf(25), 'bronze'],
    ]);
    await caughtUp(job, customers);
    await order(300);
    await caughtUp(job, orders);
    await job.stop();

    // Restart: the table is restored from the checkpoint; a new update and orders follow.
    job = await start();
    await setTiers([[customersOf(3), 'gold']]);
    await caughtUp(job, customers);
    await order(300);
    const deadline = Date.now() + 30_000;
    let out: Enriched[] = [];
    while (Date.now() < deadline) {
      out = await kcatAll<Enriched>(output);
      if (out.length >= expected.length) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    await job.stop();
    const lines = (xs: readonly Enriched[]) => xs.map((x) => JSON.stringify(x)).sort();
    assert.deepEqual(lines(out), lines(expected));
    const byTier = (tier: string | null) => out.filter((o) => o.tier === tier).length;
    assert.ok(byTier('platinum') > 0 && byTier(null) > 0 && byTier('bronze') > 0);
    assert.ok(
      out.some((o) => o.customer === customersOf(2) && o.n >= 300 && o.tier === null),
      'the tombstone of c2 did not delete its row',
    );
  });
});
