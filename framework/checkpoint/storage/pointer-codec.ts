/**
 * The stored form of the metadata file a committed checkpoint pointer names. A task whose sink
 * commits its checkpoints (CheckpointCommitter: the Kafka transaction) writes the checkpoint's
 * metadata as a data file of the checkpoint, and the commit records a pointer to it (checkpoint id,
 * path, size, SHA-256) with the output and the input positions; a restore reads it back from there.
 *
 * ```json
 * { "format": "kstate-pointed-metadata", "version": 1, "metadata": { ... } }
 * ```
 *
 * The pointer's size and SHA-256 cover the whole file (`CheckpointStorage.readFile` checks them);
 * decoding checks the envelope, the metadata's shape (as the metadata codec does) and that it is the
 * checkpoint of the task the pointer names. Files from builds before the envelope hold the bare
 * metadata object: they read as version 0.
 */
import { StreamError } from '../../api/errors.ts';
import { jsonProblem, metadataProblem } from './metadata-codec.ts';
import type { CheckpointMetadata } from './storage.ts';

const FORMAT = 'kstate-pointed-metadata';
const VERSION = 1;

/**
 * The bytes of the pointed metadata file for `meta`. Throws CONFIG_INVALID when `meta` is not
 * well-formed metadata or would not survive JSON unchanged (the commit must not point at a file
 * that reads back as something else).
 */
export function encodePointedMetadata(meta: CheckpointMetadata): Uint8Array {
  const problem = metadataProblem(meta) ?? jsonProblem(meta, 'metadata');
  if (problem !== undefined || meta.formatVersion !== 1) {
    throw new StreamError(
      'CONFIG_INVALID',
      `cannot write the metadata file of checkpoint ${meta.checkpointId} of task ${meta.taskId}: ${problem ?? `formatVersion must be 1, got ${meta.formatVersion}`}`,
    );
  }
  const text = `{"format":"${FORMAT}","version":${VERSION},"metadata":${JSON.stringify(meta)}}\n`;
  return new TextEncoder().encode(text);
}

/** What a pointer names: the checkpoint of which task, in which file (for errors). */
export interface PointedCheckpoint {
  readonly checkpointId: number;
  readonly taskId: string;
  readonly path: string;
}

/**
 * The metadata in a pointed metadata file, checked to be `expected`'s. Throws CHECKPOINT_CORRUPT
 * when the bytes are not what encodePointedMetadata (or a build before it) wrote, or name another
 * checkpoint or task; SNAPSHOT_FORMAT_UNSUPPORTED for a version this build does not read.
 */
export function decodePointedMetadata(bytes: Uint8Array, expected: PointedCheckpoint): CheckpointMetadata {
  const { checkpointId, taskId, path } = expected;
  const corrupt = (why: string, cause?: unknown): StreamError =>
    new StreamError(
      'CHECKPOINT_CORRUPT',
      `metadata file ${path} of checkpoint ${checkpointId} of task ${taskId}, named by its committed pointer, is corrupt: ${why}. Restore from a savepoint, or repair the file`,
      cause === undefined ? undefined : { cause },
    );
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw corrupt(`it is not JSON (${bytes.byteLength} bytes)`, e);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw corrupt('it is not a JSON object');
  const env = doc as Record<string, unknown>;
  let meta: unknown;
  if (env.format === undefined && 'formatVersion' in env) {
    meta = env; // version 0: the bare metadata object
  } else {
    if (env.format !== FORMAT)
      throw corrupt(`its "format" is ${JSON.stringify(env.format)}, not "${FORMAT}"`);
    if (env.version !== VERSION) {
      throw new StreamError(
        'SNAPSHOT_FORMAT_UNSUPPORTED',
        `metadata file ${path} of checkpoint ${checkpointId} of task ${taskId} has version ${JSON.stringify(env.version)}; this build reads versions 0 and ${VERSION}. Restore it with the build that wrote it`,
      );
    }
    meta = env.metadata;
  }
  const formatVersion = (meta as { formatVersion?: unknown } | undefined)?.formatVersion;
  if (typeof meta === 'object' && meta !== null && formatVersion !== 1) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `metadata file ${path} of checkpoint ${checkpointId} of task ${taskId} has formatVersion ${JSON.stringify(formatVersion)}; this build reads formatVersion 1`,
    );
  }
  const problem = metadataProblem(meta);
  if (problem !== undefined) throw corrupt(problem);
  const m = meta as CheckpointMetadata;
  if (m.checkpointId !== checkpointId || m.taskId !== taskId) {
    throw corrupt(`it holds checkpoint ${m.checkpointId} of task ${m.taskId}`);
  }
  return m;
}
