import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { StreamError } from '../api/errors.ts';
import type { StateKind } from '../api/state.ts';
import type { KeyedStateSnapshot, KeyedStateSnapshotEntry, StateMeta } from './backend.ts';
import type {
  OperatorStateMode,
  OperatorStateSnapshot,
  OperatorStateSnapshotEntry,
} from './operator-state.ts';
import { KEYED_SNAPSHOT_FORMAT_VERSION } from './state-meta.ts';

/**
 * The file format of state snapshots (keyed and operator), written to checkpoint storage:
 *
 *     offset  size  field
 *          0     4  magic: 'KSK1' keyed state, 'KSO1' operator state
 *          4     2  format version, big-endian (1)
 *          6     2  flags, 0 (reserved)
 *          8     4  body length in bytes, big-endian
 *         12     4  CRC-32 of the body, big-endian
 *         16     n  body: MessagePack (standard, no extensions) of the snapshot object
 *
 * Keyed body: `{ formatVersion, states: [{ meta: StateMeta, entries: [[keyId, bin], ...] }] }`.
 * Operator body: `{ formatVersion, states: [{ name, mode, serializerId, serializerVersion, elements: [bin ...] }] }`.
 *
 * A file that is not one of ours, truncated, longer than its header says, failing its checksum or
 * of the wrong shape is refused with CHECKPOINT_CORRUPT naming the file; a format version this build
 * does not read with SNAPSHOT_FORMAT_UNSUPPORTED.
 */

const HEADER_BYTES = 16;
const KEYED_MAGIC = 'KSK1';
const OPERATOR_MAGIC = 'KSO1';
const OPERATOR_SNAPSHOT_FORMAT_VERSION = 1;
const KINDS: readonly StateKind[] = ['value', 'list', 'map', 'reducing', 'aggregating', 'timeIndexed'];
const MODES: readonly OperatorStateMode[] = ['split', 'union', 'broadcast'];

const body = new Packr({ useRecords: false });

export function encodeKeyedSnapshot(snapshot: KeyedStateSnapshot): Uint8Array {
  return frame(KEYED_MAGIC, snapshot.formatVersion, {
    formatVersion: snapshot.formatVersion,
    states: snapshot.states.map((s) => ({ meta: plainMeta(s.meta), entries: s.entries })),
  });
}

/** `fileName` names the file in errors. */
export function decodeKeyedSnapshot(bytes: Uint8Array, fileName: string): KeyedStateSnapshot {
  const value = unframe(bytes, fileName, KEYED_MAGIC, KEYED_SNAPSHOT_FORMAT_VERSION, 'keyed state');
  const bad = (why: string): StreamError =>
    new StreamError('CHECKPOINT_CORRUPT', `keyed state snapshot ${fileName} is malformed: ${why}`);
  if (
    !isRecord(value) ||
    value.formatVersion !== KEYED_SNAPSHOT_FORMAT_VERSION ||
    !Array.isArray(value.states)
  ) {
    throw bad('no states');
  }
  const states: KeyedStateSnapshotEntry[] = value.states.map((s: unknown, i: number) => {
    if (!isRecord(s) || !Array.isArray(s.entries)) throw bad(`state #${i} has no entries`);
    const meta = readMeta(s.meta);
    if (meta === undefined) throw bad(`state #${i} has an invalid meta`);
    for (const e of s.entries as unknown[]) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !(e[1] instanceof Uint8Array)) {
        throw bad(`state '${meta.name}' has an entry that is not [keyId, bytes]`);
      }
    }
    return {
      meta,
      entries: (s.entries as [string, Uint8Array][]).map(([k, b]) => [k, plainBytes(b)] as const),
    };
  });
  return { formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION, states };
}

export function encodeOperatorSnapshot(snapshot: OperatorStateSnapshot): Uint8Array {
  return frame(OPERATOR_MAGIC, snapshot.formatVersion, {
    formatVersion: snapshot.formatVersion,
    states: snapshot.states.map((s) => ({
      name: s.name,
      mode: s.mode,
      serializerId: s.serializerId,
      serializerVersion: s.serializerVersion,
      elements: s.elements,
    })),
  });
}

export function decodeOperatorSnapshot(bytes: Uint8Array, fileName: string): OperatorStateSnapshot {
  const value = unframe(bytes, fileName, OPERATOR_MAGIC, OPERATOR_SNAPSHOT_FORMAT_VERSION, 'operator state');
  const bad = (why: string): StreamError =>
    new StreamError('CHECKPOINT_CORRUPT', `operator state snapshot ${fileName} is malformed: ${why}`);
  if (
    !isRecord(value) ||
    value.formatVersion !== OPERATOR_SNAPSHOT_FORMAT_VERSION ||
    !Array.isArray(value.states)
  ) {
    throw bad('no states');
  }
  const states: OperatorStateSnapshotEntry[] = value.states.map((s: unknown, i: number) => {
    if (
      !isRecord(s) ||
      typeof s.name !== 'string' ||
      !MODES.includes(s.mode as OperatorStateMode) ||
      typeof s.serializerId !== 'string' ||
      typeof s.serializerVersion !== 'number' ||
      !Array.isArray(s.elements) ||
      !(s.elements as unknown[]).every((e) => e instanceof Uint8Array)
    ) {
      throw bad(`state #${i} is not {name, mode, serializerId, serializerVersion, elements}`);
    }
    return {
      name: s.name,
      mode: s.mode as OperatorStateMode,
      serializerId: s.serializerId,
      serializerVersion: s.serializerVersion,
      elements: (s.elements as Uint8Array[]).map(plainBytes),
    };
  });
  return { formatVersion: OPERATOR_SNAPSHOT_FORMAT_VERSION, states };
}

function frame(magic: string, version: number, value: unknown): Uint8Array {
  const payload = body.pack(value);
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out.write(magic, 0, 'latin1');
  out.writeUInt16BE(version, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt32BE(payload.length, 8);
  out.writeUInt32BE(crc32(payload), 12);
  out.set(payload, HEADER_BYTES);
  return out;
}

function unframe(bytes: Uint8Array, fileName: string, magic: string, version: number, what: string): unknown {
  const corrupt = (why: string, cause?: unknown): StreamError =>
    new StreamError('CHECKPOINT_CORRUPT', `${what} snapshot ${fileName} is corrupt: ${why}`, { cause });
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < HEADER_BYTES)
    throw corrupt(`${buf.length} bytes, shorter than the ${HEADER_BYTES}-byte header`);
  if (buf.toString('latin1', 0, 4) !== magic) {
    throw corrupt(`it does not start with '${magic}' (not a ${what} snapshot, or garbage)`);
  }
  const fileVersion = buf.readUInt16BE(4);
  if (fileVersion !== version) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `${what} snapshot ${fileName} has format version ${fileVersion}; this build reads version ${version}`,
    );
  }
  const length = buf.readUInt32BE(8);
  const actual = buf.length - HEADER_BYTES;
  if (actual !== length) {
    throw corrupt(
      actual < length
        ? `truncated: ${actual} of ${length} body bytes`
        : `${actual - length} bytes past its end`,
    );
  }
  const payload = buf.subarray(HEADER_BYTES);
  if (crc32(payload) !== buf.readUInt32BE(12)) throw corrupt('checksum mismatch');
  try {
    return body.unpack(payload);
  } catch (e) {
    throw corrupt(`the body does not decode (${e instanceof Error ? e.message : String(e)})`, e);
  }
}

function plainMeta(meta: StateMeta): StateMeta {
  return {
    name: meta.name,
    kind: meta.kind,
    serializerId: meta.serializerId,
    serializerVersion: meta.serializerVersion,
    ...(meta.ttl === undefined ? {} : { ttl: { ...meta.ttl } }),
  };
}

function readMeta(m: unknown): StateMeta | undefined {
  if (
    !isRecord(m) ||
    typeof m.name !== 'string' ||
    !KINDS.includes(m.kind as StateKind) ||
    typeof m.serializerId !== 'string' ||
    typeof m.serializerVersion !== 'number'
  ) {
    return undefined;
  }
  const base = {
    name: m.name,
    kind: m.kind as StateKind,
    serializerId: m.serializerId,
    serializerVersion: m.serializerVersion,
  };
  if (m.ttl === undefined || m.ttl === null) return base;
  const t = m.ttl;
  if (!isRecord(t) || typeof t.ttlMs !== 'number' || (t.time !== 'processing' && t.time !== 'event'))
    return undefined;
  const ttl: StateMeta['ttl'] = {
    ttlMs: t.ttlMs,
    time: t.time,
    ...(t.update === 'onCreateAndWrite' || t.update === 'onReadAndWrite' ? { update: t.update } : {}),
    ...(t.visibility === 'neverReturnExpired' || t.visibility === 'returnExpiredIfNotCleanedUp'
      ? { visibility: t.visibility }
      : {}),
  };
  return { ...base, ttl };
}

/** A plain Uint8Array view (msgpackr decodes `bin` as Node Buffers) of the same memory. */
function plainBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
