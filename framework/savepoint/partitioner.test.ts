/**
 * Savepoints of a stage keyed by another partitioner than murmur2: the partitioner is recorded with
 * every task's snapshot, and rescale, export and import place keys with it (so the rescaled job finds
 * every key in the partition its producers put it in).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { valueState } from '../api/descriptors.ts';
import { isStreamError } from '../api/errors.ts';
import type { KeyedProcessFunction } from '../api/functions.ts';
import type { Partitioner } from '../api/keys.ts';
import type { SourceRecord } from '../api/source.ts';
import { MemoryCheckpointStorage } from '../checkpoint/storage/memory.ts';
import { StreamJob } from '../datastream/index.ts';
import { runJob } from '../runtime/job.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';
import { CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { exportSavepointToDirectory, importSavepointFromDirectory, rescaleSavepoint } from './operations.ts';
import { readJobSavepoint } from './savepoint-io.ts';

interface Rec {
  readonly k: string;
}

const count: KeyedProcessFunction<string, Rec, string> = {
  processElement(v, ctx, out) {
    const c = ctx.getState(valueState<number>('count'));
    c.update((c.value() ?? 0) + 1);
    ctx.timerService.registerEventTimeTimer(1e15);
    out.collect(v.k);
  },
};

const KEYS = Array.from({ length: 60 }, (_, i) => `user-${i}`);

/** Runs the count job over KEYS partitioned by `p` into `n` partitions and takes savepoint 'sp'. */
async function savepointOf(storage: MemoryCheckpointStorage, p: Partitioner, n: number) {
  const parts: SourceRecord<Rec>[][] = Array.from({ length: n }, () => []);
  for (const k of KEYS) parts[keyGroupOf(keyId(k), n, p)]!.push({ value: { k } });
  const job = new StreamJob('j');
  job
    .source(Object.assign(new TestSource<Rec>('input', parts, { bounded: false }), { partitioner: p }))
    .keyBy((v) => v.k)
    .process(count, { uid: 'count' })
    .sinkTo(new CollectingSink('out'));
  const running = runJob(job.build(), { storage, checkpoints: { intervalMs: 0 } });
  try {
    const end = Date.now() + 10_000;
    while (running.tasks().reduce((s, t) => s + t.recordsIn, 0) < KEYS.length) {
      if (Date.now() > end) throw new Error('the job did not take its input');
      await new Promise((r) => setTimeout(r, 5));
    }
    await running.savepoint('sp');
  } finally {
    await running.stop();
  }
  return readJobSavepoint(
    storage,
    'j',
    Array.from({ length: n }, (_, i) => `input-p${i}`),
    'sp',
  );
}

/** Where each key's state and timer are, per task. */
function placement(sp: Awaited<ReturnType<typeof savepointOf>>): Map<string, number> {
  const at = new Map<string, number>();
  sp.stages[0]!.tasks.forEach((t, p) => {
    for (const s of t.keyed.states) for (const [id] of s.entries) at.set(id, p);
    for (const [, id] of t.operators.operators.count?.timers?.event ?? []) assert.equal(at.get(id), p, id);
  });
  return at;
}

describe('savepoints of a stage with a partitioner', () => {
  test('record it; rescale re-hashes keys and timers with it', async () => {
    const storage = new MemoryCheckpointStorage();
    const sp = await savepointOf(storage, 'crc32', 3);
    assert.equal(sp.stages[0]!.partitioner, 'crc32');
    for (const [id, p] of placement(sp)) assert.equal(p, keyGroupOf(id, 3, 'crc32'), id);
    await rescaleSavepoint(storage, 'j', ['input-p0', 'input-p1', 'input-p2'], 'sp', {
      as: 'sp5',
      partitions: () => 5,
    });
    const five = await readJobSavepoint(
      storage,
      'j',
      Array.from({ length: 5 }, (_, i) => `input-p${i}`),
      'sp5',
    );
    assert.equal(five.stages[0]!.partitioner, 'crc32');
    const at = placement(five);
    assert.equal(at.size, KEYS.length);
    const moved = [...at].filter(([id, p]) => p !== keyGroupOf(id, 5, 'crc32'));
    assert.deepEqual(moved, []);
    // murmur2 would have put some elsewhere: the test tells the partitioners apart.
    assert.ok([...at].some(([id, p]) => p !== keyGroupOf(id, 5, 'murmur2')));
  });

  test('export writes the partitioner in the manifest; import places keys with it', async () => {
    const storage = new MemoryCheckpointStorage();
    await savepointOf(storage, 'fnv1a', 2);
    const dir = await mkdtemp(join(tmpdir(), 'sp-partitioner-'));
    try {
      const { manifest } = await exportSavepointToDirectory(
        storage,
        'j',
        ['input-p0', 'input-p1'],
        'sp',
        join(dir, 'out'),
      );
      assert.equal(manifest.stages[0]!.partitioner, 'fnv1a');
      const rows = (await readFile(join(dir, 'out', 'count', 'count.ndjson'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { key: string; keyGroup: number });
      for (const r of rows) assert.equal(r.keyGroup, keyGroupOf(keyId(r.key), 2, 'fnv1a'), r.key);
      await importSavepointFromDirectory(storage, 'j', join(dir, 'out'), { as: 'imp', partitions: () => 7 });
      const imported = await readJobSavepoint(
        storage,
        'j',
        Array.from({ length: 7 }, (_, i) => `input-p${i}`),
        'imp',
      );
      assert.equal(imported.stages[0]!.partitioner, 'fnv1a');
      for (const [id, p] of placement(imported)) assert.equal(p, keyGroupOf(id, 7, 'fnv1a'), id);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a partitioner function: kept in place at the same count, rescaled only when the function is given', async () => {
    const storage = new MemoryCheckpointStorage();
    const byLength: Partitioner = function byLength(k, n) {
      return k.length % n;
    };
    const sp = await savepointOf(storage, byLength, 2);
    assert.equal(sp.stages[0]!.partitioner, 'custom:byLength');
    const ids = ['input-p0', 'input-p1'];
    await assert.rejects(
      rescaleSavepoint(storage, 'j', ids, 'sp', { as: 'x', partitions: () => 3 }),
      (e: unknown) => isStreamError(e, 'RESCALE_UNSUPPORTED') && /custom:byLength/.test(e.message),
    );
    await rescaleSavepoint(storage, 'j', ids, 'sp', { as: 'same', partitions: () => 2 });
    await rescaleSavepoint(storage, 'j', ids, 'sp', {
      as: 'three',
      partitions: () => 3,
      partitioner: () => byLength,
    });
    const three = await readJobSavepoint(storage, 'j', ['input-p0', 'input-p1', 'input-p2'], 'three');
    for (const [id, p] of placement(three)) assert.equal(p, keyGroupOf(id, 3, byLength), id);
  });
});
