import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytesOf, checkpointMeta, rejectsWith } from './conformance.ts';
import { MemoryCheckpointStorage } from './memory.ts';

const SCOPE = { jobId: 'j', taskId: 't' };

test('retain must be an integer of at least 1', () => {
  for (const retain of [0, -1, 1.5]) {
    assert.throws(() => new MemoryCheckpointStorage({ retain }), { code: 'CONFIG_INVALID' });
  }
});

test('listSavepoints and deleteSavepoint: deleting the last holder of a file deletes the file', async () => {
  const storage = new MemoryCheckpointStorage({ retain: 1 });
  const ref = await storage.writeFile(SCOPE, 1, 'state', bytesOf('s'));
  await storage.commit(checkpointMeta(SCOPE, 1, [ref], { savepoint: 'b' }));
  await storage.commit(checkpointMeta(SCOPE, 1, [ref], { savepoint: 'a' }));
  await storage.commit(checkpointMeta(SCOPE, 2, []));
  assert.deepEqual(
    (await storage.listSavepoints(SCOPE)).map((m) => m.savepoint),
    ['a', 'b'],
  );
  await storage.deleteSavepoint('a', SCOPE);
  assert.equal(new TextDecoder().decode(await storage.readFile(ref)), 's'); // 'b' still lists it
  await storage.deleteSavepoint('b', SCOPE);
  await rejectsWith(storage.readFile(ref), 'CHECKPOINT_NOT_FOUND');
  await rejectsWith(storage.deleteSavepoint('b', SCOPE), 'CHECKPOINT_NOT_FOUND', /"b"/);
  assert.deepEqual(await storage.listSavepoints(SCOPE), []);
});

test("the hot path never lists a task's files: after the first commit, one listing of metadata names per commit", async () => {
  const listed: string[] = [];
  class Counting extends MemoryCheckpointStorage {
    protected override async _list(dir: string): Promise<string[]> {
      listed.push(dir);
      return super._list(dir);
    }
  }
  const storage = new Counting({ retain: 2 });
  assert.equal(await storage.latest(SCOPE), undefined); // a task's restore: listings allowed
  const refs = [];
  for (let id = 1; id <= 20; id++) {
    const ref = await storage.writeFile(SCOPE, id, 'state', bytesOf(`s${id}`));
    refs.push(ref);
    if (id === 2) listed.length = 0; // the first commit scanned the scope once
    // Incremental: each checkpoint lists the first file and its own.
    await storage.commit(checkpointMeta(SCOPE, id, id === 1 ? [ref] : [refs[0]!, ref]));
  }
  // Commits 2..20: each that deletes lists the task's metadata names once (another process may have
  // committed), never its files directory, never its savepoints.
  assert.ok(listed.length <= 19, `${listed.length} listings`);
  assert.deepEqual([...new Set(listed)], ['j/t']);
  // Retention still happened: only 19 and 20 are kept, the shared first file lives.
  assert.deepEqual(
    (await storage.list(SCOPE)).map((m) => m.checkpointId),
    [19, 20],
  );
  assert.deepEqual(
    storage.paths().filter((p) => p.includes('/files/')),
    [refs[0]!.path, refs[18]!.path, refs[19]!.path].sort(),
  );
});
