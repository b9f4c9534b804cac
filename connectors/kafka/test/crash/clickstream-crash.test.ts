import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { clicks as generateClicks } from '../../../../examples/clickstream/generator.ts';
import type { Click, Session } from '../../../../examples/clickstream/model.ts';
import { sessions } from '../../../../examples/clickstream/reference.ts';
import type { Admin, Producer } from '../../internal/kafkajs.ts';
import { killRepeatedly, startJobProcess } from '../support/crash-helpers.ts';
import { sendWhenReady } from '../support/eos-helpers.ts';
import { KEEP_OLD_TIMESTAMPS, kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import {
  assertSequences,
  type Committed,
  checkSequences,
  describeSequences,
  kcatRecords,
} from '../support/sequence-check.ts';

const USERS = 200;
const PER_USER = Number(process.env.CLICKS_PER_USER ?? 60);
const KILLS = Number(process.env.CRASH_KILLS ?? 20);
const RUNNER = fileURLToPath(new URL('../jobs/run-example.ts', import.meta.url));
const PARTITIONS = 4;

/**
 * Issue 7 (a) for session windows (merging windows: the trickiest window state): the sessionised
 * clickstream job, SIGKILLed 20 times while clicks arrive out of order, commits exactly the sessions
 * a batch sessionisation of the same clicks gives, each user's in the order they closed; read back
 * with kcat.
 */
describe('sessionised clickstream under SIGKILL', () => {
  let admin: Admin;
  let producer: Producer;
  let dir: string;
  before(async () => {
    admin = kafkaClient('clicks-admin').admin();
    producer = kafkaClient('clicks-input').producer({ idempotent: true, maxInFlightRequests: 1 });
    await Promise.all([admin.connect(), producer.connect()]);
    dir = await mkdtemp(join(tmpdir(), 'clickstream-'));
  });
  after(async () => {
    await Promise.all([admin.disconnect(), producer.disconnect()]);
    await rm(dir, { recursive: true, force: true });
  });

  test(`level backend: ${USERS * PER_USER} clicks, ${KILLS} SIGKILLs: committed sessions equal the batch sessionisation`, async () => {
    const n = names('clickstream');
    const topics = { clicks: `${n.stem}.clicks`, sessions: `${n.stem}.sessions` };
    await admin.createTopics({
      topics: Object.values(topics).map((topic) => ({
        topic,
        numPartitions: PARTITIONS,
        configEntries: KEEP_OLD_TIMESTAMPS,
      })),
      waitForLeaders: true,
    });
    const env = {
      EXAMPLE: 'clickstream',
      JOB_ID: n.group('job'),
      PREFIX: n.stem,
      STATE_DIR: dir,
      BACKEND: 'level',
      CHECKPOINT_MS: '100',
    };
    const all = generateClicks({ users: USERS, perUser: PER_USER });
    const send = (cs: readonly Click[]) =>
      sendWhenReady(() =>
        producer.send({
          topic: topics.clicks,
          messages: cs.map((c) => ({ key: c.user, value: JSON.stringify(c) })),
        }),
      );
    const chunk = Math.ceil(all.length / (KILLS + 1));
    let produced = 0;
    const kills = await killRepeatedly({
      kills: KILLS,
      env,
      runner: RUNNER,
      seed: 4242,
      before: async () => {
        await send(all.slice(produced, produced + chunk));
        produced = Math.min(all.length, produced + chunk);
      },
    });
    await send(all.slice(produced));
    const end = Math.max(...all.map((c) => c.ts)) + 60_000;
    await producer.send({
      topic: topics.clicks,
      messages: [...Array(PARTITIONS).keys()].map((partition) => ({
        partition,
        value: JSON.stringify({ user: '', page: '', ts: end }),
      })),
    });
    const expected = sessions(all);
    const last = startJobProcess(env, RUNNER);
    try {
      await last.waitFor(/^ready/, 60_000);
      const deadline = Date.now() + 120_000;
      let records: Committed<Session>[] = [];
      while (Date.now() < deadline) {
        records = await kcatRecords<Session>(topics.sessions);
        if (records.length >= expected.length) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      const out = records.map((r) => r.value);
      const lines = (xs: readonly Session[]) => xs.map((x) => JSON.stringify(x)).sort();
      assert.deepEqual(lines(out), lines(expected));
      // Per user, in offset order: the sessions in the order they closed (by start; they do not overlap).
      const perUser = new Map<string, Session[]>();
      for (const x of [...expected].sort((a, b) => a.start - b.start)) {
        perUser.set(x.user, [...(perUser.get(x.user) ?? []), x]);
      }
      const order = checkSequences(records, {
        what: 'sessions: per user, in the order they closed',
        key: (x) => x.user,
        expected: perUser,
      });
      console.log(`clickstream crash test: ${describeSequences(order)}`);
      assertSequences(order);
      const merged = expected.filter((s) => s.clicks > 1).length;
      console.log(
        `clickstream crash test: ${all.length} clicks of ${USERS} users, ${kills.length} SIGKILLs at ${kills.join(',')} ms after restore; ${out.length} sessions committed (${merged} of several clicks), equal to the batch sessionisation`,
      );
    } finally {
      last.child.kill('SIGTERM');
      assert.equal(
        await last.exited,
        0,
        `the last run did not stop cleanly:\n${last.lines.slice(-20).join('\n')}`,
      );
    }
  });
});
