import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nexmarkEvents } from '../../../../examples/nexmark/generator.ts';
import { type NexmarkTopics, nexmarkTopics } from '../../../../examples/nexmark/job.ts';
import type { AuctionCount, HotItem, NewUser, Person } from '../../../../examples/nexmark/model.ts';
import { auctionCounts, hotItems, newUsers, uniquePersons } from '../../../../examples/nexmark/reference.ts';
import type { Admin, Producer } from '../../internal/kafkajs.ts';
import { killRepeatedly, startJobProcess } from '../support/crash-helpers.ts';
import { kcatAll, sendWhenReady } from '../support/eos-helpers.ts';
import { KEEP_OLD_TIMESTAMPS, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import {
  assertSequences,
  type Committed,
  checkOrdered,
  checkSequences,
  describeSequences,
  kcatRecords,
} from '../support/sequence-check.ts';

const EVENTS = Number(process.env.NEXMARK_EVENTS ?? 40_000);
const KILLS = Number(process.env.CRASH_KILLS ?? 20);
const RUNNER = fileURLToPath(new URL('../jobs/run-example.ts', import.meta.url));
const PARTITIONS = 4;

/**
 * Issue 7 (a): window (q5 sliding counts, and the hot item per window through a repartition
 * topic), join (q8 windowed join) and dedup outputs of the Nexmark job, committed while the job
 * process is SIGKILLed 20 times, equal a batch recomputation from the same input; read back with kcat.
 * The outputs with a per-key sequence are checked in offset order too: each auction's q5 counts in
 * window order, each window's hot-item updates as improvements. Unique persons (one record per
 * person) and q8 (the join rows of one window, in no defined order) have none.
 */
describe('Nexmark windows, joins and dedup under SIGKILL', () => {
  let admin: Admin;
  let producer: Producer;
  let dir: string;
  before(async () => {
    admin = kafkaClient('nexmark-admin').admin();
    producer = kafkaClient('nexmark-input').producer({ idempotent: true, maxInFlightRequests: 1 });
    await Promise.all([admin.connect(), producer.connect()]);
    dir = await mkdtemp(join(tmpdir(), 'nexmark-'));
  });
  after(async () => {
    await Promise.all([admin.disconnect(), producer.disconnect()]);
    await rm(dir, { recursive: true, force: true });
  });

  const send = (topic: string, values: readonly object[], key: (v: never) => string) =>
    sendWhenReady(async () => {
      for (let i = 0; i < values.length; i += 2000) {
        await producer.send({
          topic,
          messages: values
            .slice(i, i + 2000)
            .map((v) => ({ key: key(v as never), value: JSON.stringify(v) })),
        });
      }
    });

  for (const backend of ['level', 'heap'] as const) {
    test(`${backend} backend: ${EVENTS} events, ${KILLS} SIGKILLs: outputs equal the batch recomputation`, async () => {
      const n = names(`nexmark-${backend}`);
      const t: NexmarkTopics = nexmarkTopics(n.stem);
      await admin.createTopics({
        topics: Object.values(t).map((topic) => ({
          topic,
          numPartitions: PARTITIONS,
          configEntries: KEEP_OLD_TIMESTAMPS,
        })),
        waitForLeaders: true,
      });
      const env = {
        EXAMPLE: 'nexmark',
        JOB_ID: n.group('job'),
        PREFIX: n.stem,
        STATE_DIR: join(dir, backend),
        BACKEND: backend,
        CHECKPOINT_MS: '100',
      };
      const all = { persons: [] as Person[], auctions: [] as object[], bids: [] as object[] };
      let produced = 0;
      const chunk = Math.ceil(EVENTS / (KILLS + 1));
      const produce = async (to: number) => {
        const e = nexmarkEvents({ events: EVENTS }, produced, to);
        await send(t.persons, e.persons, (p: Person) => String(p.id));
        await send(t.auctions, e.auctions, (a: { seller: number }) => String(a.seller));
        await send(t.bids, e.bids, (b: { auction: number }) => String(b.auction));
        all.persons.push(...e.persons);
        all.auctions.push(...e.auctions);
        all.bids.push(...e.bids);
        produced = to;
        return e.end;
      };
      const kills = await killRepeatedly({
        kills: KILLS,
        env,
        runner: RUNNER,
        seed: 777,
        before: async () => {
          await produce(Math.min(EVENTS, produced + chunk));
        },
      });
      const end = await produce(EVENTS);
      // End markers on every partition move event time past the last windows.
      for (const [topic, marker] of [
        [t.persons, { id: -1, dateTime: end + 60_000 }],
        [t.auctions, { id: -1, seller: -1, dateTime: end + 60_000 }],
        [t.bids, { auction: -1, dateTime: end + 60_000 }],
      ] as const) {
        await producer.send({
          topic,
          messages: [...Array(PARTITIONS).keys()].map((partition) => ({
            partition,
            value: JSON.stringify(marker),
          })),
        });
      }

      const expected = {
        unique: uniquePersons(all.persons),
        q8: newUsers(all.persons, all.auctions as never),
        counts: auctionCounts(all.bids as never),
        hot: hotItems(all.bids as never),
      };
      const last = startJobProcess(env, RUNNER);
      try {
        await last.waitFor(/^ready/, 60_000);
        const deadline = Date.now() + 180_000;
        let out: { unique: Person[]; q8: NewUser[]; counts: AuctionCount[]; hot: HotItem[] };
        let records: { counts: Committed<AuctionCount>[]; hot: Committed<HotItem>[] };
        for (;;) {
          records = {
            counts: await kcatRecords<AuctionCount>(t.q5Counts),
            hot: await kcatRecords<HotItem>(t.q5Hot),
          };
          out = {
            unique: await kcatAll<Person>(t.uniquePersons),
            q8: await kcatAll<NewUser>(t.q8),
            counts: records.counts.map((r) => r.value),
            hot: records.hot.map((r) => r.value),
          };
          const finalHot = new Map(out.hot.map((h) => [h.end, h]));
          const done =
            out.unique.length >= expected.unique.length &&
            out.q8.length >= expected.q8.length &&
            out.counts.length >= expected.counts.length &&
            expected.hot.every((h) => finalHot.get(h.end)?.count === h.count);
          if (done || Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 1000));
        }
        const lines = (xs: readonly object[]) => xs.map((x) => JSON.stringify(x)).sort();
        assert.deepEqual(lines(out.unique), lines(expected.unique), 'dedup: unique persons');
        assert.deepEqual(lines(out.q8), lines(expected.q8), 'q8: windowed join');
        assert.deepEqual(lines(out.counts), lines(expected.counts), 'q5: sliding window counts');
        // The hot-item output is an upsert per window (keyed by window end: one partition, in order).
        const finalHot = new Map(out.hot.map((h) => [h.end, h]));
        assert.deepEqual(lines([...finalHot.values()]), lines(expected.hot), 'q5: hot item per window');
        // Per key, in offset order (what a reader of the latest value per key sees). q5 counts: each
        // auction's windows in the order they closed (by end), as the recomputation has them.
        const countsPerAuction = new Map<string, AuctionCount[]>();
        for (const c of [...expected.counts].sort((a, b) => a.end - b.end)) {
          const list = countsPerAuction.get(String(c.auction)) ?? [];
          list.push(c);
          countsPerAuction.set(String(c.auction), list);
        }
        const countOrder = checkSequences(records.counts, {
          what: 'q5 counts: per auction, windows in end order',
          key: (c) => String(c.auction),
          expected: countsPerAuction,
        });
        // q5 hot items: per window, each committed record improves on the one before (more bids, or
        // as many on a lower auction id), so the last one is the window's hot item.
        const hotOrder = checkOrdered(records.hot, {
          what: 'q5 hot items: per window, each update an improvement',
          key: (h) => String(h.end),
          inOrder: (a, b) => b.count > a.count || (b.count === a.count && b.auction < a.auction),
        });
        console.log(
          `nexmark crash test (${backend}): ${describeSequences(countOrder)}; ${describeSequences(hotOrder)}`,
        );
        assertSequences(countOrder);
        assertSequences(hotOrder);
        console.log(
          `nexmark crash test (${backend}): ${EVENTS} events (${all.persons.length} persons incl. duplicates, ${all.auctions.length} auctions, ${all.bids.length} bids), ${kills.length} SIGKILLs at ${kills.join(',')} ms after restore; committed ${out.unique.length} unique persons, ${out.q8.length} q8 rows, ${out.counts.length} q5 counts, ${finalHot.size} hot-item windows: all equal the batch recomputation`,
        );
      } finally {
        last.child.kill('SIGTERM');
        const code = await last.exited;
        assert.equal(code, 0, `the last run did not stop cleanly:\n${last.lines.slice(-20).join('\n')}`);
      }
    });
  }
});
