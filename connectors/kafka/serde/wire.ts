/**
 * The Confluent wire format: byte 0 is the magic byte 0, bytes 1-4 the schema id (big-endian int32),
 * then the payload. For Protobuf the payload starts with the message indexes: the path of the message
 * type within the .proto file, as a zigzag varint count followed by that many zigzag varints, where the
 * common path [0] (the first message) is written as the single byte 0.
 *
 * Reading returns the outcome as a value (`ok: false` with the reason) rather than throwing, so callers
 * build the DeserializationError with the context they have.
 */
import type { DeserializationReason } from './errors.ts';

export const MAGIC_BYTE = 0;
export const HEADER_SIZE = 5;

export type WireRead<T> =
  | ({ readonly ok: true } & T)
  | { readonly ok: false; readonly reason: DeserializationReason; readonly detail: string };

export function writeHeader(schemaId: number, payload: Buffer, prefix?: Buffer): Buffer {
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt8(MAGIC_BYTE, 0);
  header.writeInt32BE(schemaId, 1);
  return prefix === undefined ? Buffer.concat([header, payload]) : Buffer.concat([header, prefix, payload]);
}

export function readHeader(bytes: Buffer): WireRead<{ schemaId: number; body: Buffer }> {
  if (bytes.length < HEADER_SIZE) {
    return {
      ok: false,
      reason: 'truncated',
      detail: `${bytes.length} bytes, fewer than the 5-byte header (magic byte 0 + schema id)`,
    };
  }
  const magic = bytes.readUInt8(0);
  if (magic !== MAGIC_BYTE) {
    return {
      ok: false,
      reason: 'wrong-magic-byte',
      detail: `first byte is 0x${magic.toString(16).padStart(2, '0')}, not the magic byte 0x00 of a schema-registry serializer`,
    };
  }
  return { ok: true, schemaId: bytes.readInt32BE(1), body: bytes.subarray(HEADER_SIZE) };
}

function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

function unzigzag(n: number): number {
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

function writeVarint(out: number[], value: number): void {
  let v = zigzag(value);
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** The Protobuf message-index prefix for `indexes` ([0] is the single byte 0). */
export function writeMessageIndexes(indexes: readonly number[]): Buffer {
  if (indexes.length === 1 && indexes[0] === 0) return Buffer.from([0]);
  const out: number[] = [];
  writeVarint(out, indexes.length);
  for (const index of indexes) writeVarint(out, index);
  return Buffer.from(out);
}

/** Reads the message indexes at the start of a Protobuf body; an empty count means [0]. */
export function readMessageIndexes(body: Buffer): WireRead<{ indexes: number[]; payload: Buffer }> {
  let pos = 0;
  const next = (): number | undefined => {
    let result = 0;
    let factor = 1;
    for (let i = 0; i < 5; i++) {
      if (pos >= body.length) return undefined;
      const byte = body[pos++] as number;
      result += (byte & 0x7f) * factor;
      if (byte < 0x80) return unzigzag(result);
      factor *= 0x80;
    }
    return undefined;
  };
  const count = next();
  if (count === undefined || count < 0 || count > 100) {
    return {
      ok: false,
      reason: 'truncated',
      detail: 'no valid Protobuf message-index count after the header',
    };
  }
  if (count === 0) return { ok: true, indexes: [0], payload: body.subarray(pos) };
  const indexes: number[] = [];
  for (let i = 0; i < count; i++) {
    const index = next();
    if (index === undefined || index < 0) {
      return {
        ok: false,
        reason: 'truncated',
        detail: `Protobuf message index ${i} of ${count} is missing or negative`,
      };
    }
    indexes.push(index);
  }
  return { ok: true, indexes, payload: body.subarray(pos) };
}
