/**
 * The stored form of checkpoint metadata: one JSON document that carries a SHA-256 of its own
 * content, so a damaged or hand-edited metadata file is refused instead of restored from.
 *
 * ```json
 * { "format": "kstate-checkpoint-metadata", "version": 1, "sha256": "<hex>", "metadata": { ... } }
 * ```
 *
 * `sha256` is taken over `JSON.stringify(metadata)` (compact). Parsing and re-stringifying a JSON
 * value that JSON.stringify produced gives the same text, so the check survives pretty-printing and
 * catches any change of a value.
 */
import { createHash } from 'node:crypto';
import { StreamError } from '../../api/errors.ts';
import { parseDataFilePath } from './layout.ts';
import type { CheckpointMetadata, FileRef } from './storage.ts';

const FORMAT = 'kstate-checkpoint-metadata';
const VERSION = 1;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Why `value` would not survive a JSON round trip unchanged, or undefined when it would. Metadata is
 * stored as JSON; a Map, a typed array, NaN or a class instance would come back as something else.
 */
export function jsonProblem(value: unknown, at: string, seen: Set<object> = new Set()): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${at} is ${value}, which JSON stores as null`;
    case 'object': {
      if (value === null) return undefined;
      if (seen.has(value)) return `${at} refers back to itself (a cycle)`;
      seen.add(value);
      try {
        if (Array.isArray(value)) {
          for (let i = 0; i < value.length; i++) {
            if (!(i in value) || value[i] === undefined) return `${at}[${i}] is undefined or a hole`;
            const p = jsonProblem(value[i], `${at}[${i}]`, seen);
            if (p !== undefined) return p;
          }
          return undefined;
        }
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          const kind = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
          return `${at} is a ${kind}, which JSON cannot store faithfully`;
        }
        for (const [k, v] of Object.entries(value)) {
          if (v === undefined) continue; // dropped by JSON, and reads back as undefined anyway
          const p = jsonProblem(v, `${at}.${k}`, seen);
          if (p !== undefined) return p;
        }
        return undefined;
      } finally {
        seen.delete(value);
      }
    }
    default:
      return `${at} is a ${typeof value}, which JSON cannot store`;
  }
}

/** Whether `v` is a well-formed FileRef: a path inside some scope's files directory, a size, a SHA-256. */
export function isFileRef(v: unknown): v is FileRef {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    parseDataFilePath(r.path) !== undefined &&
    typeof r.bytes === 'number' &&
    Number.isSafeInteger(r.bytes) &&
    r.bytes >= 0 &&
    typeof r.sha256 === 'string' &&
    SHA256_HEX.test(r.sha256)
  );
}

/** What is wrong with the shape of `m` as checkpoint metadata, or undefined. */
export function metadataProblem(m: unknown): string | undefined {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'metadata is not an object';
  const r = m as Record<string, unknown>;
  if (typeof r.jobId !== 'string') return 'jobId is not a string';
  if (typeof r.taskId !== 'string') return 'taskId is not a string';
  if (typeof r.checkpointId !== 'number' || !Number.isSafeInteger(r.checkpointId) || r.checkpointId < 0) {
    return `checkpointId ${String(r.checkpointId)} is not a non-negative safe integer`;
  }
  if (r.savepoint !== undefined && typeof r.savepoint !== 'string') return 'savepoint is not a string';
  if (typeof r.timestamp !== 'number' || !Number.isFinite(r.timestamp)) return 'timestamp is not a number';
  if (r.type !== 'full' && r.type !== 'incremental')
    return `type ${JSON.stringify(r.type)} is not full|incremental`;
  if (!Array.isArray(r.files)) return 'files is not an array';
  for (let i = 0; i < r.files.length; i++) {
    if (!isFileRef(r.files[i])) {
      return `files[${i}] ${JSON.stringify(r.files[i])} is not a file reference {path, bytes, sha256}`;
    }
  }
  return undefined;
}

/** The bytes stored for `meta` (already validated by the caller). */
export function encodeMetadata(meta: CheckpointMetadata): Uint8Array {
  const body = JSON.stringify(meta);
  const text = `{\n  "format": "${FORMAT}",\n  "version": ${VERSION},\n  "sha256": "${sha256Hex(body)}",\n  "metadata": ${body}\n}\n`;
  return new TextEncoder().encode(text);
}

/**
 * The metadata stored in `bytes`, verified. `where` names the file in errors. Throws
 * CHECKPOINT_CORRUPT when the bytes are not what encodeMetadata wrote, and
 * SNAPSHOT_FORMAT_UNSUPPORTED for a format this build does not read.
 */
export function decodeMetadata(bytes: Uint8Array, where: string): CheckpointMetadata {
  const corrupt = (why: string, cause?: unknown): StreamError =>
    new StreamError(
      'CHECKPOINT_CORRUPT',
      `checkpoint metadata ${where} is corrupt: ${why}. It was damaged or edited after it was committed ` +
        '(a crash cannot cause this: metadata is renamed into place only once complete). Restore from ' +
        'another checkpoint or a savepoint, or move this file away to stop using this checkpoint.',
      cause === undefined ? undefined : { cause },
    );
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw corrupt(`it is not valid JSON (${bytes.byteLength} bytes; truncated?)`, e);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw corrupt('it is not a JSON object');
  const env = doc as Record<string, unknown>;
  if (env.format !== FORMAT) throw corrupt(`its "format" is ${JSON.stringify(env.format)}, not "${FORMAT}"`);
  if (env.version !== VERSION) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `checkpoint metadata ${where} has envelope version ${JSON.stringify(env.version)}; this build reads ` +
        `version ${VERSION}. Restore it with the build that wrote it, or take a savepoint there.`,
    );
  }
  if (typeof env.sha256 !== 'string' || !SHA256_HEX.test(env.sha256))
    throw corrupt('its "sha256" is missing');
  const actual = sha256Hex(JSON.stringify(env.metadata) ?? '');
  if (actual !== env.sha256)
    throw corrupt(`checksum mismatch: content hashes to ${actual}, file says ${env.sha256}`);
  const meta = env.metadata as Record<string, unknown> | undefined;
  if (meta?.formatVersion !== 1) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `checkpoint metadata ${where} has formatVersion ${JSON.stringify(meta?.formatVersion)}; this build ` +
        'reads formatVersion 1. Restore it with the build that wrote it, or take a savepoint there.',
    );
  }
  const problem = metadataProblem(meta);
  if (problem !== undefined) throw corrupt(problem);
  return meta as unknown as CheckpointMetadata;
}
