import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The check of a task's local LevelDB before LevelDB opens it: whether its files are intact, read
 * with LevelDB's own formats (doc/log_format.md, doc/table_format.md, version_edit.cc of LevelDB
 * 1.23, the one classic-level 3 builds). LevelDB itself does not find most damage: with its default
 * options (classic-level exposes neither `paranoid_checks` nor `verify_checksums`) it drops log
 * records that fail their checksum and goes on, opens a database whose CURRENT file is missing as a
 * new, empty one, and reads table blocks without checking theirs. The local copy is only a cache of
 * checkpoint storage, so the answer to any doubt is to drop it and rebuild: `checkLocalCopy`
 * returns the first damage it finds, naming the file, or undefined.
 *
 * What is checked:
 * - `CURRENT` names a manifest (`MANIFEST-<n>\n`), and exists whenever any other database file does;
 * - the manifest: every record's checksum and framing (strict: a record cut short is damage too),
 *   and its version edits, replayed: every live table exists with the size the manifest gives it,
 *   and so does the log the version starts from;
 * - the logs LevelDB would replay: every record's checksum and framing; a last record cut short
 *   (a crash in the middle of a write, not synced) is what LevelDB ignores, and is not damage;
 * - every live table: the footer's magic number, the checksum of every block (data, filter,
 *   meta-index, index), and that those blocks and the footer make up the whole file.
 *
 * The cost is one read of the database's files and a CRC-32C over them in JavaScript (measured in
 * docs/level-backend.md).
 */
export async function checkLocalCopy(location: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(location);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    await check(location, new Set(names));
    return undefined;
  } catch (e) {
    if (e instanceof Damage) return e.message;
    throw e;
  }
}

/** Damage found in a file: its message names the file and what is wrong with it. */
class Damage extends Error {}

const DB_FILE = /^(MANIFEST-\d+|\d+\.(log|ldb|sst))$/;

async function check(location: string, names: Set<string>): Promise<void> {
  if (!names.has('CURRENT')) {
    const files = [...names].filter((n) => DB_FILE.test(n));
    if (files.length > 0)
      throw new Damage(`CURRENT is missing, beside ${files.sort().slice(0, 3).join(', ')} ...`);
    return; // no database yet
  }
  const current = await readFile(join(location, 'CURRENT'), 'utf8');
  const named = /^(MANIFEST-\d+)\n$/.exec(current);
  if (named === null)
    throw new Damage(`CURRENT does not name a manifest (it holds ${JSON.stringify(current.slice(0, 40))})`);
  const manifestName = named[1]!;
  if (!names.has(manifestName)) throw new Damage(`CURRENT names ${manifestName}, which is missing`);
  const version = replayEdits(
    manifestName,
    logRecords(manifestName, await readFile(join(location, manifestName)), false),
  );
  const numbered = new Map<number, string>();
  for (const n of names) {
    const m = /^(\d+)\.(log|ldb|sst)$/.exec(n);
    if (m !== null) numbered.set(Number(m[1]), n);
  }
  if (version.logNumber > 0 && numbered.get(version.logNumber) !== `${fileName(version.logNumber)}.log`) {
    throw new Damage(`${fileName(version.logNumber)}.log, the log ${manifestName} starts from, is missing`);
  }
  for (const [number, name] of numbered) {
    if (!name.endsWith('.log') || (number < version.logNumber && number !== version.prevLogNumber)) continue;
    logRecords(name, await readFile(join(location, name)), true);
  }
  for (const [number, size] of version.tables) {
    const name = numbered.get(number);
    if (name === undefined || name.endsWith('.log')) {
      throw new Damage(`${fileName(number)}.ldb, a table of ${manifestName}, is missing`);
    }
    const bytes = await readFile(join(location, name));
    if (bytes.length !== size) {
      throw new Damage(`${name} has ${bytes.length} bytes, ${manifestName} says ${size}`);
    }
    checkTable(name, bytes);
  }
}

function fileName(number: number): string {
  return String(number).padStart(6, '0');
}

// ---------------------------------------------------------------- logs (and the manifest)

const BLOCK = 32_768;
const HEADER = 7;
const FULL = 1;
const FIRST = 2;
const MIDDLE = 3;
const LAST = 4;

/**
 * The records of a file in LevelDB's log format (32 KiB blocks of fragments, each with a masked
 * CRC-32C of its type and data). `tornTail`: a last record cut short or zeros to the end (a crash
 * in the middle of an unsynced write) end the file instead of being damage.
 */
export function logRecords(name: string, bytes: Buffer, tornTail: boolean): Buffer[] {
  const records: Buffer[] = [];
  let pending: Buffer[] | undefined;
  let at = 0;
  const torn = (what: string): Buffer[] => {
    if (tornTail) return records;
    throw new Damage(`${name} ends inside a record (${what}, at byte ${at} of ${bytes.length})`);
  };
  while (at < bytes.length) {
    const left = BLOCK - (at % BLOCK);
    if (left < HEADER) {
      if (!zeros(bytes, at, Math.min(at + left, bytes.length))) {
        throw new Damage(`${name}: the trailer of the block at byte ${at - (at % BLOCK)} is not zeros`);
      }
      at += left;
      continue;
    }
    if (at + HEADER > bytes.length) return torn('a header cut short');
    const length = bytes.readUInt16LE(at + 4);
    const type = bytes[at + 6]!;
    if (type === 0 && length === 0 && bytes.readUInt32LE(at) === 0) {
      if (zeros(bytes, at, bytes.length)) return torn('zeros to the end');
      throw new Damage(`${name}: zeros where a record should be, at byte ${at}`);
    }
    if (HEADER + length > left)
      throw new Damage(`${name}: a record at byte ${at} crosses its block (length ${length})`);
    if (at + HEADER + length > bytes.length) return torn('a record cut short');
    if (masked(crc32c(bytes, at + 6, at + HEADER + length)) !== bytes.readUInt32LE(at)) {
      throw new Damage(`${name}: checksum mismatch in the record at byte ${at}`);
    }
    const data = bytes.subarray(at + HEADER, at + HEADER + length);
    if (type === FULL || type === FIRST) {
      if (pending !== undefined) throw new Damage(`${name}: a record at byte ${at} starts inside another`);
      if (type === FULL) records.push(data);
      else pending = [data];
    } else if (type === MIDDLE || type === LAST) {
      if (pending === undefined) throw new Damage(`${name}: a record at byte ${at} continues none`);
      pending.push(data);
      if (type === LAST) {
        records.push(Buffer.concat(pending));
        pending = undefined;
      }
    } else {
      throw new Damage(`${name}: unknown record type ${type} at byte ${at}`);
    }
    at += HEADER + length;
  }
  return pending === undefined ? records : torn('the last record has no end');
}

function zeros(bytes: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

// ---------------------------------------------------------------- the manifest's version edits

export interface Version {
  readonly logNumber: number;
  readonly prevLogNumber: number;
  /** Live table number -> size in bytes. */
  readonly tables: Map<number, number>;
}

/** Replays a manifest's version edits (VersionEdit::DecodeFrom, VersionSet::Recover). */
export function replayEdits(name: string, records: readonly Buffer[]): Version {
  let logNumber = 0;
  let prevLogNumber = 0;
  let sawNextFile = false;
  const tables = new Map<number, number>();
  for (const [i, record] of records.entries()) {
    const r = new Reader(record, () => new Damage(`${name}: version edit ${i} is malformed`));
    while (!r.done()) {
      const tag = r.varint();
      if (tag === 1)
        r.slice(); // comparator
      else if (tag === 2) logNumber = r.varint();
      else if (tag === 3) {
        r.varint();
        sawNextFile = true;
      } else if (tag === 4)
        r.varint(); // last sequence
      else if (tag === 5) {
        r.varint();
        r.slice(); // compact pointer
      } else if (tag === 6) {
        r.varint();
        tables.delete(r.varint());
      } else if (tag === 7) {
        r.varint();
        const number = r.varint();
        tables.set(number, r.varint());
        r.slice();
        r.slice();
      } else if (tag === 9) prevLogNumber = r.varint();
      else throw new Damage(`${name}: version edit ${i} has an unknown tag ${tag}`);
    }
  }
  if (!sawNextFile) throw new Damage(`${name} holds no complete version (${records.length} records)`);
  return { logNumber, prevLogNumber, tables };
}

// ---------------------------------------------------------------- tables

const FOOTER = 48;
const TRAILER = 5;
const MAGIC = Buffer.from([0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]);

/**
 * Checks a table file: footer, every block's checksum (the index and meta-index blocks are read,
 * snappy-decompressed when they are compressed, for the handles of the others), and that the blocks
 * and the footer cover the file exactly.
 */
export function checkTable(name: string, bytes: Buffer): void {
  const damage = (what: string) => new Damage(`${name}: ${what}`);
  if (bytes.length < FOOTER || !bytes.subarray(bytes.length - 8).equals(MAGIC)) {
    throw damage('not a table (no footer)');
  }
  const footer = new Reader(bytes.subarray(bytes.length - FOOTER, bytes.length - 8), () =>
    damage('bad footer'),
  );
  const metaindex = { offset: footer.varint(), size: footer.varint() };
  const index = { offset: footer.varint(), size: footer.varint() };
  let covered = FOOTER;
  const block = (h: { offset: number; size: number }, what: string): Buffer => {
    const end = h.offset + h.size;
    if (end + TRAILER > bytes.length - FOOTER)
      throw damage(`the ${what} block at ${h.offset} runs past the footer`);
    if (masked(crc32c(bytes, h.offset, end + 1)) !== bytes.readUInt32LE(end + 1)) {
      throw damage(`checksum mismatch in the ${what} block at byte ${h.offset}`);
    }
    covered += h.size + TRAILER;
    const type = bytes[end]!;
    if (type === 0) return bytes.subarray(h.offset, end);
    if (type === 1)
      return unsnappy(bytes.subarray(h.offset, end), () =>
        damage(`the ${what} block at ${h.offset} does not decompress`),
      );
    throw damage(`the ${what} block at ${h.offset} has an unknown compression ${type}`);
  };
  const handles = (contents: Buffer, what: string) =>
    blockValues(contents, () => damage(`the ${what} block is malformed`)).map((v) => {
      const r = new Reader(v, () => damage(`a handle in the ${what} block is malformed`));
      return { offset: r.varint(), size: r.varint() };
    });
  for (const h of handles(block(metaindex, 'meta-index'), 'meta-index')) block(h, 'meta');
  for (const h of handles(block(index, 'index'), 'index')) block(h, 'data');
  if (covered !== bytes.length) throw damage(`its blocks cover ${covered} of its ${bytes.length} bytes`);
}

/** The values of a block's entries (prefix-compressed keys, then the restart array). */
function blockValues(block: Buffer, bad: () => Error): Buffer[] {
  if (block.length < 4) throw bad();
  const restarts = block.readUInt32LE(block.length - 4);
  const end = block.length - 4 * (restarts + 1);
  if (restarts < 1 || end < 0) throw bad();
  const r = new Reader(block.subarray(0, end), bad);
  const values: Buffer[] = [];
  while (!r.done()) {
    r.varint(); // shared
    const unshared = r.varint();
    const valueLength = r.varint();
    r.bytes(unshared);
    values.push(r.bytes(valueLength));
  }
  return values;
}

/** Raw snappy (https://github.com/google/snappy/blob/main/format_description.txt), checked. */
function unsnappy(src: Buffer, bad: () => Error): Buffer {
  const r = new Reader(src, bad);
  const out = Buffer.alloc(r.varint());
  let o = 0;
  while (!r.done()) {
    const tag = r.byte();
    let length: number;
    let offset = 0;
    switch (tag & 3) {
      case 0: {
        length = tag >>> 2;
        if (length >= 60) {
          const n = length - 59;
          length = 0;
          for (let i = 0; i < n; i++) length += r.byte() * 2 ** (8 * i);
        }
        length += 1;
        if (o + length > out.length) throw bad();
        r.bytes(length).copy(out, o);
        o += length;
        continue;
      }
      case 1:
        length = ((tag >>> 2) & 7) + 4;
        offset = ((tag >>> 5) << 8) | r.byte();
        break;
      case 2:
        length = (tag >>> 2) + 1;
        offset = r.bytes(2).readUInt16LE(0);
        break;
      default:
        length = (tag >>> 2) + 1;
        offset = r.bytes(4).readUInt32LE(0);
    }
    if (offset === 0 || offset > o || o + length > out.length) throw bad();
    for (let i = 0; i < length; i++, o++) out[o] = out[o - offset]!;
  }
  if (o !== out.length) throw bad();
  return out;
}

/** Varints, length-prefixed slices and bytes, each past the end an error of `bad`. */
class Reader {
  readonly #b: Buffer;
  readonly #bad: () => Error;
  #at = 0;

  constructor(b: Buffer, bad: () => Error) {
    this.#b = b;
    this.#bad = bad;
  }

  done(): boolean {
    return this.#at >= this.#b.length;
  }

  byte(): number {
    if (this.#at >= this.#b.length) throw this.#bad();
    return this.#b[this.#at++]!;
  }

  /** A varint32 or varint64 (exact up to 2^53, which file numbers and sizes stay under). */
  varint(): number {
    let v = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const b = this.byte();
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
    throw this.#bad();
  }

  bytes(n: number): Buffer {
    if (this.#at + n > this.#b.length) throw this.#bad();
    this.#at += n;
    return this.#b.subarray(this.#at - n, this.#at);
  }

  slice(): Buffer {
    return this.bytes(this.varint());
  }
}

// ---------------------------------------------------------------- CRC-32C (Castagnoli), slicing by 8

const TABLE = (() => {
  const t = new Int32Array(256 * 8);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++)
      t[s * 256 + i] = (t[(s - 1) * 256 + i]! >>> 8) ^ t[t[(s - 1) * 256 + i]! & 255]!;
  }
  return t;
})();

/** Whether an Int32Array reads bytes little-endian (the word loop below assumes it). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** CRC-32C of `bytes[from, to)` (crc32c("123456789") = 0xe3069283). */
export function crc32c(bytes: Uint8Array, from = 0, to = bytes.length): number {
  const t = TABLE;
  let crc = -1;
  let i = from;
  for (; i < to && (bytes.byteOffset + i) % 4 !== 0; i++) crc = t[(crc ^ bytes[i]!) & 255]! ^ (crc >>> 8);
  const words = new Int32Array(bytes.buffer, bytes.byteOffset + i, LITTLE_ENDIAN ? ((to - i) >>> 3) << 1 : 0);
  for (let w = 0; w < words.length; w += 2) {
    const a = words[w]! ^ crc;
    const b = words[w + 1]!;
    crc =
      t[1792 + (a & 255)]! ^
      t[1536 + ((a >>> 8) & 255)]! ^
      t[1280 + ((a >>> 16) & 255)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + (b & 255)]! ^
      t[512 + ((b >>> 8) & 255)]! ^
      t[256 + ((b >>> 16) & 255)]! ^
      t[b >>> 24]!;
  }
  for (i += words.length * 4; i < to; i++) crc = t[(crc ^ bytes[i]!) & 255]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** LevelDB's masked CRC (crc32c::Mask), as stored in logs and tables. */
function masked(crc: number): number {
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}
