import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStreamError } from '../../api/errors.ts';
import { decodePointedMetadata, encodePointedMetadata } from './pointer-codec.ts';
import type { CheckpointMetadata } from './storage.ts';

const SHA = 'a'.repeat(64);
const meta: CheckpointMetadata = {
  formatVersion: 1,
  jobId: 'job',
  taskId: 'in-p0',
  checkpointId: 4,
  timestamp: 1_700_000_000_000,
  files: [{ path: 'job/in-p0/files/4-operators-ab12', bytes: 10, sha256: SHA }],
  type: 'full',
  payload: { format: 1, channels: [{ source: 'in', partition: 0, position: '17', inflight: 0 }] },
};
const at = { checkpointId: 4, taskId: 'in-p0', path: 'job/in-p0/files/4-metadata-ab12' };
const bytes = (text: string) => new TextEncoder().encode(text);
const code = (c: string) => (e: unknown) => isStreamError(e) && e.code === c && e.message.includes(at.path);

test('pointed metadata: versioned envelope, read back as written', () => {
  const encoded = encodePointedMetadata(meta);
  const doc = JSON.parse(new TextDecoder().decode(encoded));
  assert.equal(doc.format, 'kstate-pointed-metadata');
  assert.equal(doc.version, 1);
  assert.deepEqual(decodePointedMetadata(encoded, at), meta);
});

test('pointed metadata: a file of a build before the envelope (the bare metadata) reads as version 0', () => {
  assert.deepEqual(decodePointedMetadata(bytes(JSON.stringify(meta)), at), meta);
});

test('pointed metadata: damaged, foreign or unknown content is refused with the catalogued error naming the file', () => {
  assert.throws(
    () => decodePointedMetadata(bytes('{"format":"kstate-pointed-me'), at),
    code('CHECKPOINT_CORRUPT'),
  );
  assert.throws(() => decodePointedMetadata(new Uint8Array([0xff, 0xfe]), at), code('CHECKPOINT_CORRUPT'));
  assert.throws(() => decodePointedMetadata(bytes('[1,2]'), at), code('CHECKPOINT_CORRUPT'));
  assert.throws(
    () => decodePointedMetadata(bytes('{"format":"other","version":1}'), at),
    code('CHECKPOINT_CORRUPT'),
  );
  // Well-formed JSON that is not metadata: no files list, a malformed file reference.
  const { files: _, ...noFiles } = meta;
  assert.throws(() => decodePointedMetadata(bytes(JSON.stringify(noFiles)), at), code('CHECKPOINT_CORRUPT'));
  const badRef = { ...meta, files: [{ path: '../x', bytes: 1, sha256: SHA }] };
  assert.throws(
    () =>
      decodePointedMetadata(
        bytes(JSON.stringify({ format: 'kstate-pointed-metadata', version: 1, metadata: badRef })),
        at,
      ),
    code('CHECKPOINT_CORRUPT'),
  );
  // Another checkpoint or task than the pointer names.
  assert.throws(
    () => decodePointedMetadata(encodePointedMetadata({ ...meta, checkpointId: 3 }), at),
    code('CHECKPOINT_CORRUPT'),
  );
  assert.throws(
    () => decodePointedMetadata(encodePointedMetadata({ ...meta, taskId: 'in-p1' }), at),
    code('CHECKPOINT_CORRUPT'),
  );
  // A version or metadata format this build does not read.
  assert.throws(
    () =>
      decodePointedMetadata(
        bytes(JSON.stringify({ format: 'kstate-pointed-metadata', version: 2, metadata: meta })),
        at,
      ),
    code('SNAPSHOT_FORMAT_UNSUPPORTED'),
  );
  assert.throws(
    () => decodePointedMetadata(bytes(JSON.stringify({ ...meta, formatVersion: 2 })), at),
    code('SNAPSHOT_FORMAT_UNSUPPORTED'),
  );
});

test('pointed metadata: what JSON cannot carry unchanged is refused before it is written', () => {
  const bigint = { ...meta, payload: { position: 17n } } as unknown as CheckpointMetadata;
  assert.throws(
    () => encodePointedMetadata(bigint),
    (e: unknown) => isStreamError(e, 'CONFIG_INVALID'),
  );
  const map = { ...meta, payload: { position: new Map() } } as unknown as CheckpointMetadata;
  assert.throws(
    () => encodePointedMetadata(map),
    (e: unknown) => isStreamError(e, 'CONFIG_INVALID'),
  );
});
