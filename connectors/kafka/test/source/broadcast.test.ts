import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type BroadcastContext,
  type Collector,
  type KeyedBroadcastContext,
  type KeyedBroadcastProcessFunction,
  StreamJob,
} from '../../../../framework/index.ts';
import { KafkaSink, KafkaSource, runKafkaJob } from '../../index.ts';
import type { Admin } from '../../internal/kafkajs.ts';
import { checkpointStorage, type In } from '../jobs/count-job.ts';
import { kcatAll, produceInput, sendWhenReady } from '../support/eos-helpers.ts';
import { brokersFromEnv, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';

interface Rule {
  readonly version: number;
  readonly factor: number;
}
type Out =
  | { kind: 'ack'; task: number; version: number }
  | { kind: 'value'; n: number; version: number; value: number };

/** Multiplies each event by the factor of the latest rule; acknowledges each rule once per task. */
class ApplyRule implements KeyedBroadcastProcessFunction<string, In, Rule, Out> {
  processElement(e: In, ctx: KeyedBroadcastContext<string>, out: Collector<Out>): void {
    const rule = ctx.broadcastState<string, Rule>('rules').get('current');
    out.collect({ kind: 'value', n: e.n, version: rule?.version ?? 0, value: e.n * (rule?.factor ?? 1) });
  }
  processBroadcastElement(r: Rule, ctx: BroadcastContext, out: Collector<Out>): void {
    ctx.broadcastState<string, Rule>('rules').put('current', r);
    out.collect({ kind: 'ack', task: ctx.info.partition, version: r.version });
  }
}

describe('broadcast Kafka source', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('broadcast-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'broadcast-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test('every task reads every partition of a broadcast topic once; its positions and broadcast state survive a restart', async () => {
    const n = names('broadcast');
    const [input, rules, output] = [n.topic('in'), n.topic('rules'), n.topic('out')];
    const jobId = n.group('job');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 4 },
        { topic: rules, numPartitions: 2 },
        { topic: output, numPartitions: 4 },
      ],
      waitForLeaders: true,
    });
    const producer = kafkaClient('broadcast-rules').producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const publish = (r: Rule, partition: number) =>
      sendWhenReady(() =>
        producer.send({ topic: rules, messages: [{ partition, value: JSON.stringify(r) }] }),
      );
    const start = () => {
      const job = new StreamJob(jobId);
      const ruleStream = job.source(new KafkaSource<Rule>({ topic: rules })).broadcast('rules');
      job
        .source(new KafkaSource<In>({ topic: input }))
        .keyBy((e) => e.k)
        .connect(ruleStream)
        .process(new ApplyRule(), { uid: 'apply' })
        .sinkTo(
          new KafkaSink<Out>({ topic: output, encode: (v) => ({ key: null, value: JSON.stringify(v) }) }),
        );
      return runKafkaJob(job, {
        connection: { brokers: brokersFromEnv() },
        storage: checkpointStorage(join(dir, n.stem)),
        checkpoints: { intervalMs: 100 },
      });
    };
    const until = async (what: string, ok: (out: Out[]) => boolean): Promise<Out[]> => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const out = await kcatAll<Out>(output);
        if (ok(out)) return out;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${out.length} outputs`);
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    const acks = (out: Out[], version: number) =>
      out.filter((o) => o.kind === 'ack' && o.version === version).map((o) => (o as { task: number }).task);
    const values = (out: Out[]) => out.filter((o) => o.kind === 'value');

    try {
      let job = await start();
      await publish({ version: 1, factor: 2 }, 0);
      await until('rule 1 at every task', (o) => acks(o, 1).length >= 4);
      await produceInput(input, 400, 13, 0);
      await until('400 values', (o) => values(o).length >= 400);
      // A rule on the other partition of the broadcast topic reaches every task too.
      await publish({ version: 2, factor: 3 }, 1);
      await until('rule 2 at every task', (o) => acks(o, 2).length >= 4);
      await produceInput(input, 400, 13, 400);
      await until('800 values', (o) => values(o).length >= 800);
      await job.stop();

      // Restart: the broadcast positions and state come from the checkpoint, not from a re-read.
      job = await start();
      await produceInput(input, 400, 13, 800);
      await publish({ version: 3, factor: 5 }, 0);
      await until('rule 3 at every task', (o) => acks(o, 3).length >= 4);
      const out = await until('1200 values', (o) => values(o).length >= 1200);
      await job.stop();

      assert.deepEqual(acks(out, 1).sort(), [0, 1, 2, 3], 'rule 1: one acknowledgement per task, no re-read');
      assert.deepEqual(acks(out, 2).sort(), [0, 1, 2, 3], 'rule 2: one acknowledgement per task, no re-read');
      assert.deepEqual(acks(out, 3).sort(), [0, 1, 2, 3]);
      const byN = new Map<number, Out & { kind: 'value' }>();
      for (const v of values(out) as (Out & { kind: 'value' })[]) {
        assert.ok(!byN.has(v.n), `event ${v.n} has two outputs`);
        byN.set(v.n, v);
      }
      assert.equal(byN.size, 1200);
      for (let i = 0; i < 400; i++) assert.equal(byN.get(i)!.version, 1, `event ${i}`);
      for (let i = 400; i < 800; i++) assert.equal(byN.get(i)!.version, 2, `event ${i}`);
      // Produced before rule 3: the restored rule 2 applies (or rule 3 if it overtook them).
      for (let i = 800; i < 1200; i++) {
        const v = byN.get(i)!;
        assert.ok(v.version >= 2, `event ${i} after the restart saw rule ${v.version}: broadcast state lost`);
        assert.equal(v.value, i * (v.version === 2 ? 3 : 5));
      }
    } finally {
      await producer.disconnect();
    }
  });
});
