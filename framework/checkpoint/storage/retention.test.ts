import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planRetention, type StoredMeta } from './retention.ts';

const chk = (checkpointId: number, files: string[] | undefined): StoredMeta => ({
  checkpointId,
  files,
  location: `chk-${checkpointId}.json`,
});
const file = (checkpointId: number, name: string) => ({
  path: `j/t/files/${checkpointId}-${name}`,
  checkpointId,
});

test('keeps the newest `retain` by numeric id, every savepoint, and what they list', () => {
  const plan = planRetention({
    metas: [
      chk(10, ['j/t/files/9-a', 'j/t/files/10-b']),
      chk(9, ['j/t/files/9-a']),
      chk(2, ['j/t/files/2-a']),
      { checkpointId: 1, savepoint: 'sp', files: ['j/t/files/1-a'], location: 'savepoints/sp.json' },
    ],
    files: [file(1, 'a'), file(2, 'a'), file(9, 'a'), file(10, 'b'), file(11, 'c'), file(3, 'orphan')],
    retain: 2,
    inFlight: new Set([11]),
  });
  assert.deepEqual(plan, { pruneCheckpoints: [2], deleteFiles: ['j/t/files/2-a', 'j/t/files/3-orphan'] });
});

test('unreadable metadata: pruned if old, and blocks file deletion if retained', () => {
  const old = planRetention({
    metas: [chk(1, undefined), chk(2, ['j/t/files/2-a'])],
    files: [file(1, 'a'), file(2, 'a')],
    retain: 1,
    inFlight: new Set(),
  });
  assert.deepEqual(old, { pruneCheckpoints: [1], deleteFiles: ['j/t/files/1-a'] });
  const kept = planRetention({
    metas: [chk(1, ['j/t/files/1-a']), chk(2, undefined)],
    files: [file(1, 'a')],
    retain: 1,
    inFlight: new Set(),
  });
  assert.deepEqual(kept, { pruneCheckpoints: [1], deleteFiles: [], blockedBy: 'chk-2.json' });
});
