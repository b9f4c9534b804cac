import type { CheckpointFiles, KeyedStateBackend, KeyedStateHandle } from '../backend.ts';

/** For tests: one checkpoint of `backend` in its own format (capture, writeCheckpoint, release). */
export async function checkpointOnce(
  backend: KeyedStateBackend,
  files: CheckpointFiles,
  previous?: KeyedStateHandle,
): Promise<KeyedStateHandle> {
  const capture = backend.capture(1);
  try {
    return await capture.writeCheckpoint!(files, previous);
  } finally {
    capture.release();
  }
}
