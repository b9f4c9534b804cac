/**
 * The sink's send queue against a model: random writes (topics, intervals, record sizes) and sends
 * acknowledged in turn. Every send respects the limits and holds one interval; all records go out
 * once, in write order per topic; `acknowledged(i)` resolves exactly when every record of intervals
 * up to i was acknowledged.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Message } from '../../internal/kafkajs.ts';
import { SendQueue, type TopicMessages } from './send-queue.ts';

interface Sent {
  readonly interval: number;
  readonly records: TopicMessages;
  readonly count: number;
  ack(): void;
}

const write = fc.record({
  topic: fc.constantFrom('a', 'b'),
  /** Intervals only grow: the step to the next one. */
  step: fc.constantFrom(0, 0, 0, 0, 1),
  size: fc.integer({ min: 0, max: 300 }),
});

test('send queue: limits, one interval per send, write order per topic, acknowledged(i) exactly when due', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(write, { minLength: 1, maxLength: 400 }),
      fc.integer({ min: 1, max: 50 }),
      fc.integer({ min: 100, max: 2000 }),
      async (writes, maxBatchRecords, maxBatchBytes) => {
        const sent: Sent[] = [];
        const q = new SendQueue({
          maxBatchRecords,
          maxBatchBytes,
          maxBufferedRecords: 1_000_000,
          send: (interval, records, count) =>
            new Promise<void>((resolve) => sent.push({ interval, records, count, ack: resolve })),
          schedule: (run) => run(),
        });
        let interval = 0;
        const written: { topic: string; n: number; interval: number; size: number }[] = [];
        for (let n = 0; n < writes.length; n++) {
          const w = writes[n]!;
          interval += w.step;
          written.push({ topic: w.topic, n, interval, size: w.size });
          q.push(interval, w.topic, {
            key: null,
            value: `${n}`.padEnd(Math.max(w.size, `${n}`.length), '.'),
          });
        }
        const last = interval;
        const done = new Map<number, boolean>();
        for (let i = 0; i <= last; i++) void q.acknowledged(i).then(() => done.set(i, true));
        const acked: Message[][] = [];
        const ackedRecords = new Set<number>();
        for (let k = 0; k < sent.length; k++) {
          const s = sent[k]!;
          // One send at a time: the next starts only after this one's acknowledgement.
          assert.equal(sent.length, k + 1, 'a second send while one was in flight');
          const messages = s.records.flatMap((r) => r.messages);
          assert.equal(messages.length, s.count);
          assert.ok(s.count >= 1 && s.count <= maxBatchRecords, `send of ${s.count} records`);
          const bytes = messages.reduce((b, m) => b + Buffer.byteLength(m.value as string), 0);
          assert.ok(s.count === 1 || bytes <= maxBatchBytes, `send of ${bytes} bytes`);
          for (const r of s.records)
            for (const m of r.messages) {
              const n = Number.parseInt(m.value as string, 10);
              assert.equal(written[n]!.interval, s.interval, 'a record of another interval in the send');
              assert.equal(written[n]!.topic, r.topic);
            }
          acked.push(messages);
          s.ack();
          await new Promise<void>((r) => setImmediate(r));
          for (const m of messages) ackedRecords.add(Number.parseInt(m.value as string, 10));
          // Asked before, and asked now (with the next send in flight): resolved exactly when due.
          const probes = new Map<number, boolean>();
          for (let i = 0; i <= last; i++) void q.acknowledged(i).then(() => probes.set(i, true));
          await new Promise<void>((r) => setImmediate(r));
          for (let i = 0; i <= last; i++) {
            const due = written.every((w) => w.interval > i || ackedRecords.has(w.n));
            assert.equal(done.get(i) ?? false, due, `acknowledged(${i}) after send ${k}`);
            assert.equal(probes.get(i) ?? false, due, `acknowledged(${i}) asked after send ${k}`);
          }
        }
        // Every record once, in write order per topic.
        for (const topic of ['a', 'b']) {
          const order = sent.flatMap((s) =>
            s.records
              .filter((r) => r.topic === topic)
              .flatMap((r) => r.messages.map((m) => Number.parseInt(m.value as string, 10))),
          );
          assert.deepEqual(
            order,
            written.filter((w) => w.topic === topic).map((w) => w.n),
          );
        }
        assert.equal(q.pending, 0);
      },
    ),
    { numRuns: 200 },
  );
});
