/**
 * Checkpoint storage in a local or shared directory. See docs/checkpoint-storage.md for the layout,
 * atomicity, checksums, retention and errors; this file is only the I/O under BaseCheckpointStorage.
 *
 * Every new file (snapshot file or metadata) is written to a temporary file in its final directory,
 * fsynced, then hard-linked to its name (which fails if the name exists: nothing is ever overwritten)
 * and the temporary name removed. Metadata additionally fsyncs its directory before `commit`
 * returns. A crash therefore leaves either the complete file or a `.tmp-*` leftover that nothing
 * reads and the next commit removes.
 */
import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import * as nodePath from 'node:path';
import { StreamError } from '../../api/errors.ts';
import { BaseCheckpointStorage, type CreateOutcome, type RootPurpose, type StorageOptions } from './base.ts';
import { filesDir, savepointsDir, scopeDir, TEMP_PREFIX } from './layout.ts';
import type { Scope } from './storage.ts';

/** The file system calls the storage makes; tests pass a facade to inject failures. */
export type CheckpointFs = Pick<
  typeof nodeFs,
  'mkdir' | 'open' | 'link' | 'rename' | 'unlink' | 'readdir' | 'readFile' | 'stat' | 'rmdir'
>;

export interface FilesystemStorageOptions extends StorageOptions {
  /** The checkpoint directory; relative paths resolve against the working directory. */
  readonly directory: string;
  /**
   * Create the directory on first write when missing (default true). With false, a missing directory
   * is CHECKPOINT_NOT_FOUND on every call: use it where the directory is a mount that must exist.
   */
  readonly createDirectory?: boolean;
  /** The file system to use (default node:fs/promises); for failure injection in tests. */
  readonly fs?: CheckpointFs;
}

/** Attempts of a write whose directory or temporary file another process removed meanwhile (`_create`). */
const ENOENT_ATTEMPTS = 3;

/** Temporary files being written in this process (any instance): never swept as leftovers. */
const tempsInFlight = new Set<string>();

/** Codes with which link() says "no hard links here" (FAT, some network and FUSE file systems). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);
/** Codes with which fsync of a directory says "not supported here"; the rename is then as durable as it gets. */
const NO_DIR_FSYNC = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EPERM', 'EBADF']);

const HINTS: Record<string, string> = {
  ENOSPC:
    'The disk is full: free space, lower `retain`, or move the checkpoint directory to a larger volume.',
  EDQUOT: 'The disk quota is exhausted: raise it, lower `retain`, or move the checkpoint directory.',
  EACCES: 'Permission denied: give the process read and write access to the checkpoint directory.',
  EPERM: 'Operation not permitted: give the process read and write access to the checkpoint directory.',
  EROFS: 'The file system is read-only: remount it read-write or choose another checkpoint directory.',
  ENOTDIR: 'A component of the path is a file, not a directory: check the checkpoint directory setting.',
  EISDIR: 'A directory is where a file should be: remove it, or choose another checkpoint directory.',
  EMFILE: 'The process has too many open files: raise the limit (ulimit -n).',
  ENFILE: 'The system has too many open files: raise the limit.',
  EIO: 'The device reported an I/O error: check the disk.',
};

function errnoCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export class FilesystemCheckpointStorage extends BaseCheckpointStorage {
  readonly kind = 'filesystem';
  /** The checkpoint directory, absolute. */
  readonly directory: string;
  readonly #createDirectory: boolean;
  readonly #fs: CheckpointFs;

  constructor(options: FilesystemStorageOptions) {
    super(options);
    if (typeof options?.directory !== 'string' || options.directory.trim() === '') {
      throw new StreamError(
        'CONFIG_INVALID',
        `filesystem checkpoint storage: directory must be a non-empty path, got ${JSON.stringify(options?.directory)}`,
      );
    }
    this.directory = nodePath.resolve(options.directory);
    this.#createDirectory = options.createDirectory ?? true;
    this.#fs = options.fs ?? nodeFs;
  }

  #abs(path: string): string {
    return nodePath.join(this.directory, ...path.split('/'));
  }

  #failed(op: string, absPath: string, e: unknown): StreamError {
    if (e instanceof StreamError) return e;
    const code = errnoCode(e);
    const detail = code ?? (e instanceof Error ? e.message : String(e));
    const hint =
      (code === undefined ? undefined : HINTS[code]) ?? 'Check the checkpoint directory and retry.';
    const safe =
      op === 'write' ? ' Nothing partial was left behind; committed checkpoints are unaffected.' : '';
    return new StreamError(
      'CHECKPOINT_STORAGE_FAILED',
      `cannot ${op} ${absPath}: ${detail}. ${hint}${safe}`,
      {
        cause: e,
      },
    );
  }

  async #syncDir(absDir: string): Promise<void> {
    let handle: nodeFs.FileHandle;
    try {
      handle = await this.#fs.open(absDir, 'r');
    } catch (e) {
      if (NO_DIR_FSYNC.has(errnoCode(e) ?? '')) return;
      throw e;
    }
    try {
      await handle.sync();
    } catch (e) {
      if (!NO_DIR_FSYNC.has(errnoCode(e) ?? '')) throw e;
    } finally {
      await handle.close();
    }
  }

  /** mkdir -p, then fsync the parent of every directory it created, so the new entries are durable. */
  async #mkdirs(absDir: string): Promise<void> {
    const first = await this.#fs.mkdir(absDir, { recursive: true });
    if (first === undefined) return;
    for (let dir = absDir; ; dir = nodePath.dirname(dir)) {
      const parent = nodePath.dirname(dir);
      await this.#syncDir(parent);
      if (dir === first || parent === dir) break;
    }
  }

  /** Gives `temp` the name `target` unless `target` exists. */
  async #linkNoClobber(temp: string, target: string): Promise<'created' | 'exists'> {
    try {
      await this.#fs.link(temp, target);
      return 'created';
    } catch (e) {
      const code = errnoCode(e);
      if (code === 'EEXIST') return 'exists';
      if (!NO_HARD_LINKS.has(code ?? '')) throw e;
    }
    // No hard links here: check, then rename. Within this process the in-flight bookkeeping rules out
    // a second writer of the same name between the two.
    if ((await this.#statOrUndefined(target)) !== undefined) return 'exists';
    await this.#fs.rename(temp, target);
    return 'created';
  }

  async #statOrUndefined(absPath: string): Promise<Stats | undefined> {
    try {
      return await this.#fs.stat(absPath);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Write `bytes` to a temporary file beside `target`, then give it the name unless taken. Another
   * process that shares the scope (instances of one job recording its topology, a cleanup) may, in
   * between, remove the scope's directory while it is empty, or sweep this temporary file as a
   * crash's leftover (it cannot know another process still writes it): the write then meets ENOENT
   * and is made again, up to ENOENT_ATTEMPTS times.
   */
  protected async _create(
    path: string,
    bytes: Uint8Array,
    options: { readonly durable: boolean; readonly replaceIf?: () => Promise<boolean> },
  ): Promise<CreateOutcome> {
    const target = this.#abs(path);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#createOnce(target, bytes, options);
      } catch (e) {
        if (attempt < ENOENT_ATTEMPTS && errnoCode(e) === 'ENOENT') continue;
        throw this.#failed('write', target, e);
      }
    }
  }

  async #createOnce(
    target: string,
    bytes: Uint8Array,
    options: { readonly durable: boolean; readonly replaceIf?: () => Promise<boolean> },
  ): Promise<CreateOutcome> {
    const dir = nodePath.dirname(target);
    const temp = nodePath.join(
      dir,
      `${TEMP_PREFIX}${randomBytes(6).toString('hex')}-${nodePath.basename(target)}`,
    );
    tempsInFlight.add(temp);
    try {
      await this.#mkdirs(dir);
      const handle = await this.#fs.open(temp, 'wx');
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } catch (e) {
        await handle.close().catch(() => {});
        throw e;
      }
      await handle.close();
      let outcome: CreateOutcome = await this.#linkNoClobber(temp, target);
      if (outcome === 'exists' && options.replaceIf !== undefined && (await options.replaceIf())) {
        await this.#fs.rename(temp, target);
        outcome = 'replaced';
      }
      if (options.durable && outcome !== 'exists') {
        try {
          await this.#syncDir(dir);
        } catch (e) {
          // Not durable, so not committed: take it back rather than report a failure for a file
          // that stays visible.
          await this.#fs.unlink(target).catch(() => {});
          throw e;
        }
      }
      return outcome;
    } finally {
      await this.#fs.unlink(temp).catch(() => {});
      tempsInFlight.delete(temp);
    }
  }

  protected async _read(path: string): Promise<Uint8Array | undefined> {
    const abs = this.#abs(path);
    try {
      const buf = await this.#fs.readFile(abs);
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength); // plain, not a Buffer
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw this.#failed('read', abs, e);
    }
  }

  protected async _size(path: string): Promise<number | undefined> {
    const abs = this.#abs(path);
    try {
      const st = await this.#statOrUndefined(abs);
      return st?.isFile() ? st.size : undefined;
    } catch (e) {
      throw this.#failed('inspect', abs, e);
    }
  }

  protected async _delete(path: string): Promise<void> {
    const abs = this.#abs(path);
    try {
      await this.#fs.unlink(abs);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw this.#failed('delete', abs, e);
    }
  }

  async #readdir(absDir: string): Promise<string[]> {
    try {
      return await this.#fs.readdir(absDir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw this.#failed('list', absDir, e);
    }
  }

  protected async _list(dir: string): Promise<string[]> {
    return (await this.#readdir(this.#abs(dir))).filter((name) => !name.startsWith(TEMP_PREFIX));
  }

  protected async _listDirs(dir: string): Promise<string[]> {
    const abs = dir === '' ? this.directory : this.#abs(dir);
    try {
      const entries = await this.#fs.readdir(abs, { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && !e.name.startsWith(TEMP_PREFIX)).map((e) => e.name);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw this.#failed('list', abs, e);
    }
  }

  protected async _flush(dir: string): Promise<void> {
    const abs = this.#abs(dir);
    try {
      await this.#syncDir(abs);
    } catch (e) {
      throw this.#failed('sync', abs, e);
    }
  }

  protected async _root(purpose: RootPurpose): Promise<boolean> {
    const dir = this.directory;
    let st: Stats | undefined;
    try {
      st = await this.#fs.stat(dir);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw this.#failed('open checkpoint directory', dir, e);
    }
    if (st !== undefined) {
      if (st.isDirectory()) return true;
      throw new StreamError(
        'CHECKPOINT_STORAGE_FAILED',
        `checkpoint directory ${dir} is not a directory (ENOTDIR): point the checkpoint directory setting at a directory`,
      );
    }
    if (this.#createDirectory && purpose === 'write') {
      try {
        await this.#mkdirs(dir);
      } catch (e) {
        throw this.#failed('create checkpoint directory', dir, e);
      }
      return true;
    }
    if (this.#createDirectory && purpose === 'probe') return false;
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      this.#createDirectory
        ? `checkpoint directory ${dir} does not exist, so there is nothing to restore from: check the checkpoint directory setting`
        : `checkpoint directory ${dir} does not exist: create it (or mount it), or set createDirectory: true to have it created on first write`,
    );
  }

  protected _describe(path: string): string {
    return this.#abs(path);
  }

  /** rmdir of the scope's files, savepoints and own directory; one that is not empty stays. */
  protected override async _removeEmptyDirs(scope: Scope): Promise<void> {
    for (const dir of [filesDir(scope), savepointsDir(scope), scopeDir(scope)]) {
      const abs = this.#abs(dir);
      try {
        await this.#fs.rmdir(abs);
      } catch (e) {
        const code = errnoCode(e);
        if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST')
          throw this.#failed('delete', abs, e);
      }
    }
  }

  /** Removes `.tmp-*` files that interrupted writes (crashes) left in the scope. */
  protected override async _sweepLeftovers(scope: Scope): Promise<void> {
    for (const dir of [scopeDir(scope), filesDir(scope), savepointsDir(scope)]) {
      const abs = this.#abs(dir);
      for (const name of await this.#readdir(abs)) {
        const temp = nodePath.join(abs, name);
        if (name.startsWith(TEMP_PREFIX) && !tempsInFlight.has(temp)) {
          try {
            await this.#fs.unlink(temp);
          } catch (e) {
            if (errnoCode(e) !== 'ENOENT') throw this.#failed('delete', temp, e);
          }
        }
      }
    }
  }
}
