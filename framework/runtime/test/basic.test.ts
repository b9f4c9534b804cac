import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { runJob } from '../job.ts';
import { buildJob, makeInput } from './jobs.ts';

test('a keyed job with timers and a two-input operator runs to the end and commits all output', async () => {
  const input = makeInput(2000, 20);
  const j = buildJob('basic', input, 3);
  const storage = new MemoryCheckpointStorage();
  const job = runJob(j.graph, { storage, checkpoints: { intervalMs: 5 } });
  await job.done;
  const out = j.sink.output.committed;
  const totals = out.filter((l) => l.startsWith('total '));
  assert.equal(totals.length, 2000);
  const paid = out.filter((l) => l.startsWith('paid '));
  assert.equal(paid.length, input.payments.length);
  const windows = out.filter((l) => l.startsWith('window '));
  assert.ok(windows.length > 0);
  assert.equal(j.sink.output.openTransactions, 0);
});
