import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ClassicLevel, type Snapshot } from 'classic-level';
import { StreamError } from '../../../api/errors.ts';
import type { StateMeta } from '../../backend.ts';
import { checkLocalCopy } from './local-check.ts';

/**
 * The level backend's local database: one LevelDB per task, in `<directory>/db`.
 *
 *     key                  value
 *     m:registry           JSON [{ name, id, meta }]: every state the database holds
 *     m:marker             JSON { token }: present only while the data is exactly the state of
 *                          that capture (written with the capture's batch, deleted by any later one)
 *     s<id>:<key id>       the stored-value bytes (value-codec.ts) of one entry of state <id>
 *
 * Registry and marker are written in the same atomic batches as the data, so after a crash they
 * describe exactly the data LevelDB recovered. A damaged database (its files checked before LevelDB
 * opens them, or `<directory>/POISONED`, written synchronously when a read finds damaged data) is
 * dropped at open, with one warning: the next open starts from an empty database.
 *
 * `<directory>/MARKER` (the token) says, outside LevelDB, that the database may hold a marker: it is
 * written once a batch with the marker landed and removed once one without it did, so it is present
 * whenever the database holds one (the other way round it is only a hint, after a crash). A database
 * without a marker is never reused (a restore rebuilds it, a fresh start empties it), so one opened
 * without that file is dropped unread: its files are not checked (a read of all of them, seconds at
 * a gigabyte), and a restart after a crash goes straight to the rebuild.
 */

export const REGISTRY_KEY = 'm:registry';
/** The file beside the database that says it may hold a marker (see above). */
export const MARKER_FILE = 'MARKER';
export const MARKER_KEY = 'm:marker';
/** Data keys lie in ['s', 't'). */
export const DATA_GTE = 's';
export const DATA_LT = 't';

/** The key prefix of state `id`: `s<id>:` (no other state's keys start with it: ':' is no digit). */
export function statePrefix(id: number): string {
  return `s${id}:`;
}

export interface RegistryEntry {
  readonly name: string;
  readonly id: number;
  readonly meta: StateMeta;
}

export interface LevelDbOptions {
  /** LevelDB's block cache in bytes (default 8 MiB). */
  readonly cacheSize?: number;
  /** LevelDB's memtable size in bytes (default 4 MiB). */
  readonly writeBufferSize?: number;
  readonly blockSize?: number;
  readonly maxFileSize?: number;
  /** Snappy compression of LevelDB's tables (default true). */
  readonly compression?: boolean;
}

export type Db = ClassicLevel<string, Buffer>;
export type { Snapshot };

export class LocalDb {
  readonly directory: string;
  readonly location: string;
  readonly #options: LevelDbOptions;
  readonly #warn: (message: string) => void;
  #db!: Db;
  /**
   * What the database holds (registry and marker), if anything: read when it is opened, then kept
   * up to date by the backend's batches as they land (flush.ts) and by its restores (restore.ts).
   */
  registry: RegistryEntry[] | undefined;
  #marker: string | undefined;

  private constructor(directory: string, options: LevelDbOptions, warn: (m: string) => void) {
    this.directory = resolve(directory);
    this.location = join(this.directory, 'db');
    this.#options = options;
    this.#warn = warn;
  }

  static async open(directory: string, options: LevelDbOptions, warn: (m: string) => void): Promise<LocalDb> {
    const local = new LocalDb(directory, options, warn);
    await local.#openOrRepair();
    return local;
  }

  get db(): Db {
    return this.#db;
  }

  /** The local-recovery marker the database holds (as the batches that landed left it), if any. */
  get marker(): string | undefined {
    return this.#marker;
  }

  /**
   * Set once a batch that wrote (or deleted) the marker has landed: keeps `<directory>/MARKER` in
   * step (best effort: without the file the next open drops the database, a rebuild, never wrong
   * state; with a stale one it checks and opens it, and the restore finds no marker).
   */
  set marker(token: string | undefined) {
    if (token === this.#marker) return;
    this.#marker = token;
    const file = join(this.directory, MARKER_FILE);
    try {
      if (token === undefined) rmSync(file, { force: true });
      else writeFileSync(file, `${token}\n`);
    } catch {
      // Only the next open's shortcut depends on it.
    }
  }

  /** Whether the database held any key when it was opened (false again after `wipe`). */
  hasData = false;
  /** Why the database found at open was damaged and dropped, if it was. */
  dropped: string | undefined;
  /** The database found at open held no marker, and was dropped unread. */
  unmarked = false;

  /**
   * Empties the database: a small one key by key (one native call, no reopen), a large one by
   * closing, removing and reopening it (O(files) instead of O(entries)).
   */
  async wipe(): Promise<void> {
    const onDisk = await this.#db.approximateSize(DATA_GTE, DATA_LT);
    // A clear that fails (a damaged block found on the way) falls back to removing the files.
    if (
      onDisk >= 32 * 1024 * 1024 ||
      !(await this.#db.clear().then(
        () => true,
        () => false,
      ))
    ) {
      await this.#db.close();
      await this.#rmDb();
      await this.#openRaw();
    }
    this.registry = undefined;
    this.marker = undefined;
    this.hasData = false;
  }

  /**
   * Records synchronously that the database holds damaged data, so that the next open starts empty
   * (the backend is failing at that point; its restore then rebuilds from checkpoint storage).
   */
  poison(reason: string): void {
    try {
      writeFileSync(join(this.directory, 'POISONED'), `${reason}\n`);
    } catch {
      // Best effort: the failure itself is reported by the caller.
    }
  }

  async close(): Promise<void> {
    await this.#db.close();
  }

  /** A new database object (it opens itself on the next tick: create it only to open it). */
  #create(): Db {
    return new ClassicLevel<string, Buffer>(this.location, {
      keyEncoding: 'utf8',
      valueEncoding: 'buffer',
      createIfMissing: true,
      errorIfExists: false,
      ...this.#options,
    });
  }

  /**
   * Opens the database, or drops it (with one warning naming it and the cause) and opens an empty
   * one when it is damaged: marked `POISONED`, failing `checkLocalCopy` (local-check.ts), refused by
   * LevelDB for any reason but its lock, or holding unreadable metadata. The local copy is only a
   * cache of checkpoint storage: the restore that follows rebuilds it from there. A database that
   * another process holds is never touched: LevelDB's lock is taken before anything is removed.
   */
  async #openOrRepair(): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
    } catch (e) {
      throw new StreamError(
        'CONFIG_INVALID',
        `the level state backend cannot create its directory ${this.directory}: ${describe(e)}`,
        { cause: e },
      );
    }
    const poisoned = join(this.directory, 'POISONED');
    let damage: string | undefined;
    if (existsSync(poisoned)) {
      const why = (await readFile(poisoned, 'utf8').catch(() => '')).trim();
      damage = `it was marked damaged: ${why || 'no reason recorded'}`;
    }
    if (damage === undefined && !existsSync(join(this.directory, MARKER_FILE))) {
      await this.#dropUnread();
      return;
    }
    damage ??= await checkLocalCopy(this.location).catch((e) => `its files cannot be read: ${describe(e)}`);
    let opened = false;
    try {
      await this.#openRaw();
      opened = true;
    } catch (e) {
      if (e instanceof StreamError && e.code === 'CONFIG_INVALID') throw e; // locked: not ours to drop
      damage ??= `LevelDB refuses to open it: ${describe((e as { cause?: unknown }).cause ?? e)}`;
    }
    if (damage === undefined) {
      try {
        this.registry = readRegistry(this.#db.getSync(REGISTRY_KEY));
        this.#marker = readMarker(this.#db.getSync(MARKER_KEY));
        this.hasData = (await this.#db.keys({ limit: 1 }).all()).length > 0;
        return;
      } catch (e) {
        damage = `its metadata cannot be read: ${describe(e)}`;
      }
    }
    this.#warn(
      `level state backend: the local database at ${this.location} is damaged (${damage}); ` +
        'removing it: the restore rebuilds it from checkpoint storage',
    );
    this.dropped = damage;
    if (opened) await this.#db.close();
    await this.#rmDb();
    await rm(poisoned, { force: true });
    await this.#openRaw();
  }

  /**
   * A database without a marker: no restore reuses it and a fresh start empties it, so it is
   * removed without being read or checked (after LevelDB's lock is taken: another process's database
   * is never touched), and an empty one opened. `unmarked` says so for the restore's reason.
   */
  async #dropUnread(): Promise<void> {
    if (existsSync(this.location) && readdirSync(this.location).length > 0) {
      try {
        await this.#openRaw();
        await this.#db.close();
      } catch (e) {
        if (e instanceof StreamError && e.code === 'CONFIG_INVALID') throw e; // locked: not ours to drop
        // Unreadable to LevelDB too: removed all the same.
      }
      await this.#rmDb();
      this.unmarked = true;
    }
    await this.#openRaw();
  }

  async #openRaw(): Promise<void> {
    this.#db = this.#create();
    try {
      await this.#db.open();
    } catch (e) {
      const code = levelCode(e);
      if (code === 'LEVEL_LOCKED') {
        throw new StreamError(
          'CONFIG_INVALID',
          `the level state backend's database ${this.location} is locked by another process (or another backend in this one): ` +
            'give every task its own directory, or stop the process that holds it',
          { cause: e },
        );
      }
      throw new StreamError(
        'CHECKPOINT_STORAGE_FAILED',
        `the level state backend cannot open its database ${this.location}: ${describe(e)}`,
        { cause: e },
      );
    }
  }

  async #rmDb(): Promise<void> {
    try {
      await rm(this.location, { recursive: true, force: true });
    } catch (e) {
      throw new StreamError(
        'CHECKPOINT_STORAGE_FAILED',
        `the level state backend cannot remove its database ${this.location}: ${describe(e)}`,
        { cause: e },
      );
    }
  }
}

/** The most specific `LEVEL_*` code of an abstract-level error (open errors wrap the native one). */
export function levelCode(e: unknown): string | undefined {
  let code: string | undefined;
  for (let x = e as { code?: unknown; cause?: unknown } | undefined; x; x = x.cause as typeof x) {
    if (typeof x.code === 'string' && x.code.startsWith('LEVEL_')) code = x.code;
    if (typeof x !== 'object') break;
  }
  return code;
}

export function describe(e: unknown): string {
  const parts: string[] = [];
  for (let x = e as { message?: unknown; cause?: unknown } | undefined; x; x = x.cause as typeof x) {
    if (typeof x !== 'object') {
      parts.push(String(x));
      break;
    }
    if (typeof x.message === 'string' && !parts.includes(x.message)) parts.push(x.message);
  }
  return parts.join(': ') || String(e);
}

function readRegistry(bytes: Buffer | undefined): RegistryEntry[] | undefined {
  if (bytes === undefined) return undefined;
  const value: unknown = JSON.parse(bytes.toString('utf8'));
  if (
    !Array.isArray(value) ||
    !value.every(
      (r) =>
        typeof r === 'object' &&
        r !== null &&
        typeof r.name === 'string' &&
        Number.isSafeInteger(r.id) &&
        typeof r.meta === 'object' &&
        r.meta !== null &&
        r.meta.name === r.name,
    )
  ) {
    throw new Error('the state registry is malformed');
  }
  return value as RegistryEntry[];
}

function readMarker(bytes: Buffer | undefined): string | undefined {
  if (bytes === undefined) return undefined;
  const value: unknown = JSON.parse(bytes.toString('utf8'));
  const token = (value as { token?: unknown } | null)?.token;
  if (typeof token !== 'string') throw new Error('the local recovery marker is malformed');
  return token;
}

export function registryBytes(entries: readonly RegistryEntry[]): Buffer {
  return Buffer.from(JSON.stringify(entries), 'utf8');
}

export function markerBytes(token: string): Buffer {
  return Buffer.from(JSON.stringify({ token }), 'utf8');
}

/**
 * Calls `each` for every entry in `range` of `db` (or of `snapshot`), in key order; awaits `each`
 * when it returns a promise. Every native call is a trip through the event loop, which a busy task
 * loop makes slow: so a call fetches up to 16 384 entries (16 MiB), the next one is in flight while
 * `each` runs over the current one, a short batch ends the scan without one more call, and the
 * iterator is closed without waiting.
 */
export async function scan(
  db: Db,
  range: { gte: string; lt: string },
  snapshot: Snapshot | undefined,
  each: (key: string, value: Buffer) => void | Promise<void>,
): Promise<void> {
  const it = db.iterator({
    ...range,
    ...(snapshot === undefined ? {} : { snapshot }),
    highWaterMarkBytes: SCAN_BYTES,
  });
  try {
    let next = it.nextv(SCAN_ENTRIES);
    for (;;) {
      const batch = await next;
      let bytes = 0;
      for (const [k, v] of batch) bytes += k.length * 3 + v.length;
      const last = batch.length < SCAN_ENTRIES && bytes < SCAN_BYTES;
      if (!last) next = it.nextv(SCAN_ENTRIES);
      for (const [k, v] of batch) {
        const r = each(k, v);
        if (r !== undefined) await r;
      }
      if (last) return;
    }
  } finally {
    it.close().catch(() => {});
  }
}

/** The keys in `range` of `db`, in key order (as `scan`). */
export async function scanKeys(
  db: Db,
  range: { gte: string; lt: string },
  each: (key: string) => void,
): Promise<void> {
  const it = db.keys({ ...range, highWaterMarkBytes: SCAN_BYTES });
  try {
    let next = it.nextv(SCAN_ENTRIES * 4);
    for (;;) {
      const batch = await next;
      let bytes = 0;
      for (const k of batch) bytes += k.length * 3;
      const last = batch.length < SCAN_ENTRIES * 4 && bytes < SCAN_BYTES;
      if (!last) next = it.nextv(SCAN_ENTRIES * 4);
      for (const k of batch) each(k);
      if (last) return;
    }
  } finally {
    it.close().catch(() => {});
  }
}

const SCAN_ENTRIES = 16_384;
const SCAN_BYTES = 16 * 1024 * 1024;
