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
