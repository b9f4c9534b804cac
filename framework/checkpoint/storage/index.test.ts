/**
 * Retention from the per-scope index (BaseCheckpointStorage.#index) against what a second process, a
 * lost answer or a write during a scan can do. Each test failed on b6ec8fa (the first index version)
 * and passed on a8bad35 (retention from listings); found by review.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { StreamError } from '../../api/errors.ts';
import type { CreateOutcome } from './base.ts';
import { bytesOf, checkpointMeta } from './conformance.ts';
import { FilesystemCheckpointStorage } from './filesystem.ts';
import { MemoryCheckpointStorage } from './memory.ts';

/** What the review printed; kept as a no-op so the scenarios read the same. */
const note = (..._: unknown[]): void => {};

const SCOPE = { jobId: 'j', taskId: 's0-p0' };

test('T1 metadata stored but its write reported failed (lost answer): discard deletes the files of a committed checkpoint', async () => {
  class Lossy extends MemoryCheckpointStorage {
    loseNextMeta = false;
    protected override async _create(
      path: string,
      bytes: Uint8Array,
      o: { readonly durable: boolean; readonly replaceIf?: () => Promise<boolean> },
    ): Promise<CreateOutcome> {
      const r = await super._create(path, bytes, o);
      if (this.loseNextMeta && /chk-\d+\.json$/.test(path)) {
        this.loseNextMeta = false;
        throw new StreamError(
          'CHECKPOINT_STORAGE_FAILED',
          `write ${path}: connection reset after the store applied it`,
        );
      }
      return r;
    }
  }
  const s = new Lossy({ retain: 3, onCleanupError: () => {} });
  await s.latest(SCOPE);
  const r1 = await s.writeFile(SCOPE, 1, 'a', bytesOf('one'));
  await s.commit(checkpointMeta(SCOPE, 1, [r1]));
  const r2 = await s.writeFile(SCOPE, 2, 'a', bytesOf('two'));
  s.loseNextMeta = true;
  await assert.rejects(s.commit(checkpointMeta(SCOPE, 2, [r2])));
  await s.discard(SCOPE, 2); // what Task#checkpointFailed does (no committer: at-least-once sinks, runJob)
  const latest = await s.latest(SCOPE);
  note(
    '   latest after discard:',
    latest?.checkpointId,
    'files present:',
    s.paths().filter((p) => p.includes('/files/')),
  );
  assert.equal(latest?.checkpointId, 2);
  await s.readFile(latest!.files[0]!); // the newest committed checkpoint must be readable
});

test('T2 a file deleted behind the process between write and commit: commit must refuse (size check)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rv-'));
  try {
    const a = new FilesystemCheckpointStorage({ directory: dir, retain: 3, onCleanupError: () => {} });
    const r1 = await a.writeFile(SCOPE, 1, 'a', bytesOf('one'));
    await a.commit(checkpointMeta(SCOPE, 1, [r1]));
    const r2 = await a.writeFile(SCOPE, 2, 'a', bytesOf('two'));
    await rm(join(dir, r2.path)); // e.g. another process's retention/discard (its inFlight is empty)
    let committed = true;
    try {
      await a.commit(checkpointMeta(SCOPE, 2, [r2]));
    } catch (e: unknown) {
      committed = false;
      note('   commit refused:', (e as StreamError).code);
    }
    if (committed) {
      const latest = await a.latest(SCOPE);
      note('   committed checkpoint', latest?.checkpointId, 'whose file is missing');
    }
    assert.equal(committed, false, 'commit of metadata listing a missing file succeeded');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('T3 zombie (no committer) + stale index + #known: the newest committed checkpoint of the live owner lists deleted files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rv-'));
  try {
    const A = new FilesystemCheckpointStorage({ directory: dir, retain: 2, onCleanupError: () => {} });
    const B = new FilesystemCheckpointStorage({ directory: dir, retain: 2, onCleanupError: () => {} });
    await A.latest(SCOPE);
    const f1 = await A.writeFile(SCOPE, 1, 'run-a', bytesOf('f1'));
    await A.commit(checkpointMeta(SCOPE, 1, [f1]));
    const f2 = await A.writeFile(SCOPE, 2, 'run-a', bytesOf('f2'));
    await A.commit(checkpointMeta(SCOPE, 2, [f1, f2], { type: 'incremental' }));
    // The partition moves to B; B restores from 2 and checkpoints incrementally on f1, f2.
    await B.latest(SCOPE);
    const f3 = await B.writeFile(SCOPE, 3, 'run-b', bytesOf('f3'));
    await B.commit(checkpointMeta(SCOPE, 3, [f1, f2, f3], { type: 'incremental' }));
    // A (zombie) goes on: its id 3 collides (commit refused), then 4 and 5 (full) commit.
    const f4 = await A.writeFile(SCOPE, 4, 'run-a', bytesOf('f4'));
    await A.commit(checkpointMeta(SCOPE, 4, [f4]));
    const f5 = await A.writeFile(SCOPE, 5, 'run-a', bytesOf('f5'));
    await A.commit(checkpointMeta(SCOPE, 5, [f5]));
    // A is fenced/stops. B goes on: ids 4, 5 collide; 6 commits its chain.
    const f6 = await B.writeFile(SCOPE, 6, 'run-b', bytesOf('f6'));
    let committed = true;
    try {
      await B.commit(checkpointMeta(SCOPE, 6, [f1, f2, f3, f6], { type: 'incremental' }));
    } catch (e: unknown) {
      committed = false;
      note('   B commit 6 refused:', (e as StreamError).code);
    }
    const latest = await B.latest(SCOPE);
    note('   B commit 6 committed:', committed, '; latest:', latest?.checkpointId);
    const missing: string[] = [];
    for (const f of latest!.files) {
      try {
        await B.readFile(f);
      } catch {
        missing.push(f.path);
      }
    }
    note('   files of the latest checkpoint missing:', missing);
    assert.deepEqual(missing, []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('T4 leak: a write that the store applied but reported failed is never collected by this process', async () => {
  class Lossy extends MemoryCheckpointStorage {
    loseNextData = false;
    protected override async _create(
      path: string,
      bytes: Uint8Array,
      o: { readonly durable: boolean; readonly replaceIf?: () => Promise<boolean> },
    ): Promise<CreateOutcome> {
      const r = await super._create(path, bytes, o);
      if (this.loseNextData && path.includes('/files/')) {
        this.loseNextData = false;
        throw new StreamError('CHECKPOINT_STORAGE_FAILED', 'lost answer');
      }
      return r;
    }
  }
  const s = new Lossy({ retain: 1, onCleanupError: () => {} });
  await s.latest(SCOPE);
  const r1 = await s.writeFile(SCOPE, 1, 'a', bytesOf('one'));
  await s.commit(checkpointMeta(SCOPE, 1, [r1]));
  s.loseNextData = true;
  await assert.rejects(s.writeFile(SCOPE, 2, 'a', bytesOf('two')));
  await s.discard(SCOPE, 2);
  for (let id = 3; id <= 6; id++) {
    const r = await s.writeFile(SCOPE, id, 'a', bytesOf(`x${id}`));
    await s.commit(checkpointMeta(SCOPE, id, [r]));
  }
  const files = s.paths().filter((p) => p.includes('/files/'));
  note('   files after 4 more commits (retain 1):', files);
  assert.deepEqual(files, [`j/s0-p0/files/6-a`]);
});

test('T5 leak: a file written while the first commit scans the scope is never collected', async () => {
  let gate: (() => void) | undefined;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  class Gated extends MemoryCheckpointStorage {
    protected override async _list(dir: string): Promise<string[]> {
      const names = await super._list(dir);
      if (dir.endsWith('/files') && gate) {
        const g = gate;
        gate = undefined;
        g();
        await released;
      }
      return names;
    }
  }
  const s = new Gated({ retain: 1, onCleanupError: () => {} });
  await s.latest(SCOPE);
  const r1 = await s.writeFile(SCOPE, 1, 'a', bytesOf('one'));
  const listed = new Promise<void>((r) => (gate = r));
  const c1 = s.commit(checkpointMeta(SCOPE, 1, [r1]));
  await listed;
  await assert.ok(await s.writeFile(SCOPE, 2, 'a', bytesOf('two'))); // checkpoint 2 writes during the scan
  release();
  await c1;
  await s.discard(SCOPE, 2); // checkpoint 2 fails
  for (let id = 3; id <= 5; id++) {
    const r = await s.writeFile(SCOPE, id, 'a', bytesOf(`x${id}`));
    await s.commit(checkpointMeta(SCOPE, id, [r]));
  }
  const files = s.paths().filter((p) => p.includes('/files/'));
  note('   files after discard(2) and 3 more commits (retain 1):', files);
  assert.deepEqual(files, [`j/s0-p0/files/5-a`]);
});

test("a zombie's retention leaves the files of a checkpoint the new owner is still writing", async () => {
  // The chaos test once restored a committed checkpoint whose file was gone: the old owner of the
  // task (a zombie, its Kafka commits fenced, its storage commits not) ran retention while the new
  // owner was between writing a file and committing the metadata that lists it.
  const dir = await mkdtemp(join(tmpdir(), 'zombie-'));
  try {
    const a = new FilesystemCheckpointStorage({ directory: dir, retain: 2, onCleanupError: () => {} });
    for (let id = 1; id <= 3; id++) {
      const r = await a.writeFile(SCOPE, id, 'ops-a', bytesOf(`a${id}`));
      await a.commit(checkpointMeta(SCOPE, id, [r]));
    }
    const b = new FilesystemCheckpointStorage({ directory: dir, retain: 2, onCleanupError: () => {} });
    assert.equal((await b.latest(SCOPE))?.checkpointId, 3); // the new owner restores 3
    const inFlight = await b.writeFile(SCOPE, 5, 'ops-b', bytesOf('b5'));
    // The zombie, restarted in its process (a fresh scan), commits once more before it is stopped.
    const zombie = new FilesystemCheckpointStorage({ directory: dir, retain: 2, onCleanupError: () => {} });
    const r4 = await zombie.writeFile(SCOPE, 4, 'ops-a', bytesOf('a4'));
    await zombie.commit(checkpointMeta(SCOPE, 4, [r4]));
    await b.commit(checkpointMeta(SCOPE, 5, [inFlight]));
    assert.equal(new TextDecoder().decode(await b.readFile(inFlight)), 'b5');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
