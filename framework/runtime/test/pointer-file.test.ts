/**
 * The metadata file a committed checkpoint pointer names is read through the pointer codec: a file
 * that is JSON but not checkpoint metadata is CHECKPOINT_CORRUPT naming it, not taken as metadata
 * (before, a bare `JSON.parse ... as` accepted it and the restore failed later with a TypeError).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStreamError } from '../../api/errors.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { encodePointedMetadata } from '../../checkpoint/storage/pointer-codec.ts';
import type { CheckpointMetadata } from '../../checkpoint/storage/storage.ts';
import { readPointedMetadata } from '../snapshot-io.ts';

const scope = { jobId: 'pointed', taskId: 'in-p0' };

async function pointerTo(storage: MemoryCheckpointStorage, text: string | Uint8Array) {
  const bytes = typeof text === 'string' ? new TextEncoder().encode(text) : text;
  const ref = await storage.writeFile(scope, 5, 'metadata-0a0b', bytes);
  return { checkpointId: 5, ...ref };
}

test('a pointed metadata file that is JSON but not metadata is CHECKPOINT_CORRUPT naming the file', async () => {
  const storage = new MemoryCheckpointStorage();
  const pointer = await pointerTo(storage, JSON.stringify({ checkpointId: 5, taskId: 'in-p0', payload: {} }));
  await assert.rejects(
    readPointedMetadata(storage, pointer, scope.taskId),
    (e: unknown) => isStreamError(e, 'CHECKPOINT_CORRUPT') && e.message.includes(pointer.path),
  );
});

test('a pointed metadata file reads back through the codec, and one of a build before the envelope too', async () => {
  const storage = new MemoryCheckpointStorage();
  const operators = await storage.writeFile(scope, 5, 'operators-0a0b', new Uint8Array([1, 2, 3]));
  const meta: CheckpointMetadata = {
    formatVersion: 1,
    jobId: scope.jobId,
    taskId: scope.taskId,
    checkpointId: 5,
    timestamp: 1,
    files: [operators],
    type: 'full',
    payload: { format: 1 },
  };
  assert.deepEqual(
    await readPointedMetadata(storage, await pointerTo(storage, encodePointedMetadata(meta)), scope.taskId),
    meta,
  );
  const legacy = new MemoryCheckpointStorage();
  assert.deepEqual(
    await readPointedMetadata(legacy, await pointerTo(legacy, JSON.stringify(meta)), scope.taskId),
    meta,
  );
});
