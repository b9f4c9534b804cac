import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Admin } from '../../internal/kafkajs.ts';
import type { Out } from '../jobs/count-job.ts';
import { openTransactions, startJobProcess } from '../support/crash-helpers.ts';
import { countSequences, produceInput, verifyCountsInOrder } from '../support/eos-helpers.ts';
import { kafkaClient } from '../support/kafka.ts';
import { names } from '../support/names.ts';
import { describeSequences, readCommittedRecords } from '../support/sequence-check.ts';

const TOTAL = Number(process.env.CRASH_RECORDS ?? 100_000);
const KILLS = Number(process.env.CRASH_KILLS ?? 20);

describe('exactly-once under SIGKILL', () => {
  let admin: Admin;
  let dir: string;
  before(async () => {
    admin = kafkaClient('crash-admin').admin();
    await admin.connect();
    dir = await mkdtemp(join(tmpdir(), 'crash-'));
  });
  after(async () => {
    await admin.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  test(`(a) ${TOTAL} records, the job killed with SIGKILL ${KILLS} times at random moments: every effect committed exactly once`, async () => {
    const n = names('crash');
    const input = n.topic('in');
    const output = n.topic('out');
    const jobId = n.group('job');
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 4 },
        { topic: output, numPartitions: 4 },
      ],
      waitForLeaders: true,
    });
    const env = { JOB_ID: jobId, INPUT: input, OUTPUT: output, STATE_DIR: dir, CHECKPOINT_MS: '100' };
    // Input arrives while the job is being killed: one chunk before each kill.
    const chunk = Math.ceil(TOTAL / (KILLS + 1));
    let produced = 0;
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const kills: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      const size = Math.min(chunk, TOTAL - produced);
      if (size > 0) {
        await produceInput(input, size, 97, produced);
        produced += size;
      }
      const p = startJobProcess(env);
      await p.waitFor(/^restored /, 30_000);
      // Kill at a random moment: during restore, processing or a checkpoint.
      const delay = Math.floor(random() * 1500);
      await new Promise((r) => setTimeout(r, delay));
      p.child.kill('SIGKILL');
      await p.exited;
      kills.push(delay);
    }
    if (produced < TOTAL) {
      await produceInput(input, TOTAL - produced, 97, produced);
      produced = TOTAL;
    }
    // A last run, undisturbed, until every input has its committed output.
    const last = startJobProcess(env);
    try {
      await last.waitFor(/^ready/, 30_000);
      const out = await readCommittedRecords<Out>(output, TOTAL, 180_000);
      verifyCountsInOrder(out, TOTAL);
      console.log(`crash test: ${describeSequences(countSequences(out))}`);
    } finally {
      last.child.kill('SIGTERM');
      assert.equal(
        await last.exited,
        0,
        `the last run did not stop cleanly:\n${last.lines.slice(-20).join('\n')}`,
      );
    }
    // No transaction of the job is left open (checked by the broker's Java admin client).
    const { ids, open } = await openTransactions(`${jobId}.`);
    assert.deepEqual(open, [], `transactions left open: ${JSON.stringify(open)}`);
    assert.ok(ids > 0, 'the broker lists no transaction of the job at all');
    console.log(
      `crash test: ${TOTAL} records, ${kills.length} SIGKILLs at ${kills.join(',')} ms after restore; ${ids} transactional ids, all closed`,
    );
  });
});
