import { crc32 } from 'node:zlib';
import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';

/**
 * Run files: the file format of the backends' own checkpoints (full and incremental), used by the
 * level and the heap backend (it imports no native module). A run is a list of puts and deletes of
 * (state, key) entries; a full checkpoint is one or more runs of puts, an incremental one adds runs
 * of puts and deletes (tombstones) on top of earlier runs.
 *
 *     offset  size  field
 *          0     4  magic 'KSR1'
 *          4     2  format version, big-endian (1)
 *          6     2  flags (0)
 *          8     4  number of records, big-endian
 *         12     4  body length in bytes, big-endian
 *         16     4  CRC-32 of the body, big-endian
 *         20     n  body
 *
 * Body: the state table, then the records (all integers unsigned LEB128 varints):
 *
 *     states; per state: name length, UTF-8 name
 *     per record: op (0 put, 1 delete), state index, key length, UTF-8 key id,
 *                 and for a put: value length, value bytes (the stored-value bytes of value-codec.ts)
 *
 * Values are the same bytes as in canonical snapshots, so a restore needs no serializer to read a
 * run, and the level backend copies them between its database and run files without decoding.
 * A file that is not a run, truncated, longer than its header says, failing its CRC or with a record
 * that does not parse is refused with CHECKPOINT_CORRUPT naming the file; another version with
 * SNAPSHOT_FORMAT_UNSUPPORTED.
 */

const MAGIC = 'KSR1';
export const RUN_FORMAT_VERSION = 1;
const HEADER_BYTES = 20;
export const OP_PUT = 0;
export const OP_DELETE = 1;

/** Builds one run in memory; `size` is what `finish()` will return, give or take the state table. */
export class RunBuilder {
  #buf: Buffer;
  #len = 0;
  #records = 0;
  readonly #stateIndex = new Map<string, number>();
  readonly #stateNames: string[] = [];

  constructor(initialBytes = 64 * 1024) {
    this.#buf = Buffer.allocUnsafe(initialBytes);
  }

  get records(): number {
    return this.#records;
  }

  get size(): number {
    return this.#len;
  }

  put(state: string, key: KeyId, value: Uint8Array): void {
    const keyBytes = Buffer.byteLength(key, 'utf8');
    this.#reserve(1 + 5 + 10 + keyBytes + 10 + value.length);
    this.#buf[this.#len++] = OP_PUT;
    this.#varint(this.#index(state));
    this.#varint(keyBytes);
    this.#len += this.#buf.write(key, this.#len, 'utf8');
    this.#varint(value.length);
    this.#buf.set(value, this.#len);
    this.#len += value.length;
    this.#records++;
  }

  delete(state: string, key: KeyId): void {
    const keyBytes = Buffer.byteLength(key, 'utf8');
    this.#reserve(1 + 5 + 10 + keyBytes);
    this.#buf[this.#len++] = OP_DELETE;
    this.#varint(this.#index(state));
    this.#varint(keyBytes);
    this.#len += this.#buf.write(key, this.#len, 'utf8');
    this.#records++;
  }

  /** The framed file; the builder is empty afterwards. */
  finish(): Uint8Array {
    const table: Buffer[] = [varintBytes(this.#stateNames.length)];
    for (const name of this.#stateNames) {
      const b = Buffer.from(name, 'utf8');
      table.push(varintBytes(b.length), b);
    }
    const tableBytes = table.reduce((s, b) => s + b.length, 0);
    const bodyLength = tableBytes + this.#len;
    if (bodyLength > 0xffffffff) {
      throw new StreamError('CHECKPOINT_DECLINED', `a run file would be ${bodyLength} bytes, over 4 GiB`);
    }
    const out = Buffer.allocUnsafe(HEADER_BYTES + bodyLength);
    out.write(MAGIC, 0, 'latin1');
    out.writeUInt16BE(RUN_FORMAT_VERSION, 4);
    out.writeUInt16BE(0, 6);
    out.writeUInt32BE(this.#records, 8);
    out.writeUInt32BE(bodyLength, 12);
    let at = HEADER_BYTES;
    for (const b of table) {
      out.set(b, at);
      at += b.length;
    }
    this.#buf.copy(out, at, 0, this.#len);
    out.writeUInt32BE(crc32(out.subarray(HEADER_BYTES)), 16);
    this.#len = 0;
    this.#records = 0;
    this.#stateIndex.clear();
    this.#stateNames.length = 0;
    return out;
  }

  #index(state: string): number {
    let i = this.#stateIndex.get(state);
    if (i === undefined) {
      i = this.#stateNames.length;
      this.#stateNames.push(state);
      this.#stateIndex.set(state, i);
    }
    return i;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  #varint(n: number): void {
    const buf = this.#buf;
    while (n >= 0x80) {
      buf[this.#len++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[this.#len++] = n;
  }
}

function varintBytes(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Buffer.from(out);
}

/**
 * Reads a run record by record: `while (r.next()) use(r.op, r.state, r.key, r.value)`. `value` is a
 * view into the file's bytes (valid as long as they are). Throws CHECKPOINT_CORRUPT naming the file.
 */
export class RunReader {
  readonly fileName: string;
  readonly records: number;
  readonly states: readonly string[];
  op = OP_PUT;
  state = '';
  key: KeyId = '';
  value: Uint8Array | undefined = undefined;
  readonly #buf: Buffer;
  readonly #end: number;
  #at: number;
  #read = 0;

  constructor(bytes: Uint8Array, fileName: string) {
    this.fileName = fileName;
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (buf.length < HEADER_BYTES) {
      throw this.#corrupt(`${buf.length} bytes, shorter than the ${HEADER_BYTES}-byte header`);
    }
    if (buf.toString('latin1', 0, 4) !== MAGIC) {
      throw this.#corrupt(`it does not start with '${MAGIC}' (not a keyed state run file, or garbage)`);
    }
    const version = buf.readUInt16BE(4);
    if (version !== RUN_FORMAT_VERSION) {
      throw new StreamError(
        'SNAPSHOT_FORMAT_UNSUPPORTED',
        `keyed state run file ${fileName} has format version ${version}; this build reads version ${RUN_FORMAT_VERSION}`,
      );
    }
    this.records = buf.readUInt32BE(8);
    const length = buf.readUInt32BE(12);
    const actual = buf.length - HEADER_BYTES;
    if (actual !== length) {
      throw this.#corrupt(
        actual < length
          ? `truncated: ${actual} of ${length} body bytes`
          : `${actual - length} bytes past its end`,
      );
    }
    if (crc32(buf.subarray(HEADER_BYTES)) !== buf.readUInt32BE(16)) throw this.#corrupt('checksum mismatch');
    this.#buf = buf;
    this.#end = buf.length;
    this.#at = HEADER_BYTES;
    const n = this.#varint();
    const states: string[] = [];
    for (let i = 0; i < n; i++) states.push(this.#string(this.#varint()));
    this.states = states;
  }

  /** Moves to the next record; false at the end (after checking the record count). */
  next(): boolean {
    if (this.#at >= this.#end) {
      if (this.#read !== this.records) {
        throw this.#corrupt(`it holds ${this.#read} records, its header says ${this.records}`);
      }
      return false;
    }
    const op = this.#buf[this.#at++]!;
    if (op !== OP_PUT && op !== OP_DELETE) throw this.#corrupt(`record ${this.#read} has op ${op}`);
    const state = this.states[this.#varint()];
    if (state === undefined) throw this.#corrupt(`record ${this.#read} names no state of its table`);
    this.op = op;
    this.state = state;
    this.key = this.#string(this.#varint());
    if (op === OP_PUT) {
      const length = this.#varint();
      if (this.#at + length > this.#end) throw this.#corrupt(`record ${this.#read} runs past the end`);
      this.value = this.#buf.subarray(this.#at, this.#at + length);
      this.#at += length;
    } else {
      this.value = undefined;
    }
    this.#read++;
    return true;
  }

  #string(length: number): string {
    if (this.#at + length > this.#end) throw this.#corrupt(`record ${this.#read} runs past the end`);
    const s = this.#buf.toString('utf8', this.#at, this.#at + length);
    this.#at += length;
    return s;
  }

  #varint(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.#at >= this.#end) throw this.#corrupt(`record ${this.#read} runs past the end`);
      const b = this.#buf[this.#at++]!;
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 0x80;
    }
    throw this.#corrupt(`record ${this.#read} has an overlong length`);
  }

  #corrupt(why: string): StreamError {
    return new StreamError('CHECKPOINT_CORRUPT', `keyed state run file ${this.fileName} is corrupt: ${why}`);
  }
}
