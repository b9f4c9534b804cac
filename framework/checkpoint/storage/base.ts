/**
 * The part of checkpoint storage both storages share: validation, layout, checksums, the commit
 * protocol, retention and reference counting. Each public method validates its input, then calls a
 * handful of primitives a storage implements (`_create`, `_read`, `_size`, `_delete`, `_list`,
 * `_flush`, `_root`), as abstract-level's `put()` calls `_put()`. Memory and filesystem therefore
 * differ only in where bytes go, never in semantics.
 */
import { isStreamError, StreamError } from '../../api/errors.ts';
import {
  checkCheckpointId,
  checkFileName,
  checkpointMetaPath,
  checkSavepointName,
  checkScope,
  dataFilePath,
  describeScope,
  filesDir,
  parseCheckpointMetaName,
  parseDataFileName,
  parseDataFilePath,
  parseSavepointMetaName,
  savepointMetaPath,
  savepointsDir,
  scopeDir,
} from './layout.ts';
import {
  decodeMetadata,
  encodeMetadata,
  isFileRef,
  jsonProblem,
  metadataProblem,
  sha256Hex,
} from './metadata-codec.ts';
import { planRetention, referencedBy, type StoredFile, type StoredMeta } from './retention.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from './storage.ts';

export interface StorageOptions {
  /** How many checkpoints of a scope to keep after each commit (savepoints are always kept). Default 3. */
  readonly retain?: number;
  /**
   * Called when cleanup after a successful commit (retention, temp files) fails, or is skipped
   * because a retained metadata file is unreadable. The commit itself has succeeded; cleanup is
   * retried after the next commit. Default: `process.emitWarning`.
   */
  readonly onCleanupError?: (error: StreamError) => void;
}

/** What `_create` did: wrote a new file, replaced a leftover (see `replaceIf`), or found one there. */
export type CreateOutcome = 'created' | 'replaced' | 'exists';

/** Why `_root` is asked: a listing (missing may mean "nothing yet"), a read, or a write. */
export type RootPurpose = 'probe' | 'read' | 'write';

export abstract class BaseCheckpointStorage implements CheckpointStorage {
  abstract readonly kind: CheckpointStorage['kind'];
  readonly retain: number;
  readonly #onCleanupError: (error: StreamError) => void;
  /** scope dir -> checkpoint id -> paths written by the current attempt (in flight: not garbage). */
  readonly #inFlight = new Map<string, Map<number, Set<string>>>();
  /** scope dir -> tail of the queue of commits and discards of that scope. */
  readonly #locks = new Map<string, Promise<void>>();
  /**
   * scope dir -> what the scope holds, from one full scan plus this process's own writes and deletes
   * since. Retention after a commit plans from it, so the task's files are never listed on the hot
   * path (an object store charges for, and throttles, listings); before it deletes anything it lists
   * the scope's metadata names once (one request, see #collect), so metadata another process
   * committed meanwhile (a zombie, a CLI) is never missed. `latest`, `list`, `load` and
   * `loadSavepoint`, which a task calls when it (re)starts on a scope, drop it; so does a commit
   * that failed after its metadata write was tried (it may have landed). The next commit scans again.
   */
  readonly #index = new Map<string, ScopeIndex>();
  /** scope dir -> files written while a scan of the scope runs (the scan may miss them). */
  readonly #scanning = new Map<string, Map<string, StoredFile>>();

  constructor(options: StorageOptions = {}) {
    const retain = options.retain ?? 3;
    if (!Number.isSafeInteger(retain) || retain < 1) {
      throw new StreamError(
        'CONFIG_INVALID',
        `checkpoint storage: retain must be an integer >= 1 (checkpoints kept per task), got ${String(retain)}`,
      );
    }
    this.retain = retain;
    this.#onCleanupError = options.onCleanupError ?? ((e) => process.emitWarning(e));
  }

  // ---- primitives -------------------------------------------------------------------------------

  /**
   * Stores `bytes` at `path` atomically: afterwards the path holds all of them or does not exist.
   * Never overwrites: when the path exists, replaces it only if `replaceIf` resolves true, else
   * returns 'exists' and leaves it. `durable`: the new directory entry survives a crash on return.
   */
  protected abstract _create(
    path: string,
    bytes: Uint8Array,
    options: { readonly durable: boolean; readonly replaceIf?: () => Promise<boolean> },
  ): Promise<CreateOutcome>;
  /** The bytes at `path`, or undefined when there is no such file. */
  protected abstract _read(path: string): Promise<Uint8Array | undefined>;
  /** The size of the file at `path`, or undefined when there is no such file. */
  protected abstract _size(path: string): Promise<number | undefined>;
  /** Deletes `path`; a missing file is not an error. */
  protected abstract _delete(path: string): Promise<void>;
  /** Names of the files in `dir` (temporary files excluded); [] when `dir` does not exist. */
  protected abstract _list(dir: string): Promise<string[]>;
  /** Names of the directories in `dir` (with an object store: the common prefixes); [] when none. */
  protected abstract _listDirs(dir: string): Promise<string[]>;
  /** Makes the directory entries of files created in `dir` durable. */
  protected abstract _flush(dir: string): Promise<void>;
  /**
   * Checks the storage root for `purpose`. Returns false when it is missing and that means "nothing
   * stored yet" (a probe when the root would be created on first write); throws CHECKPOINT_NOT_FOUND
   * when it is missing and must not be; creates it for a write when configured to.
   */
  protected abstract _root(purpose: RootPurpose): Promise<boolean>;
  /** `path` as a user should see it in a message (an absolute path, `memory:<path>` ...). */
  protected abstract _describe(path: string): string;
  /** Removes leftovers of interrupted writes in the scope (temporary files). */
  protected async _sweepLeftovers(_scope: Scope): Promise<void> {}
  /** Removes the scope's directories if they hold nothing (a directory storage; object stores have none). */
  protected async _removeEmptyDirs(_scope: Scope): Promise<void> {}

  // ---- CheckpointStorage -------------------------------------------------------------------------

  async writeFile(scope: Scope, checkpointId: number, name: string, bytes: Uint8Array): Promise<FileRef> {
    checkScope(scope);
    checkCheckpointId(checkpointId);
    checkFileName(name);
    if (!(bytes instanceof Uint8Array)) {
      throw new StreamError('CONFIG_INVALID', `checkpoint storage: writeFile("${name}") needs a Uint8Array`);
    }
    const path = dataFilePath(scope, checkpointId, name);
    const attempt = this.#attempt(scope, checkpointId);
    if (attempt.has(path)) {
      throw new StreamError(
        'CHECKPOINT_STORAGE_FAILED',
        `cannot write ${this._describe(path)}: checkpoint ${checkpointId} of ${describeScope(scope)} already ` +
          `wrote a file named "${name}". Files are immutable: give each file of a checkpoint its own name.`,
      );
    }
    attempt.add(path);
    try {
      await this._root('write');
      const outcome = await this._create(path, bytes, {
        durable: false,
        // A file at this path that this attempt did not write and no committed metadata lists is a
        // leftover of an attempt that never committed (a crash): garbage, safe to replace.
        replaceIf: async () => !(await this.#isReferenced(scope, path)),
      });
      if (outcome === 'exists') {
        throw new StreamError(
          'CHECKPOINT_STORAGE_FAILED',
          `cannot write ${this._describe(path)}: committed checkpoint metadata of ${describeScope(scope)} ` +
            `lists a file of that name, and committed files are never overwritten. Checkpoint id ` +
            `${checkpointId} was committed before: use a new checkpoint id.`,
        );
      }
    } catch (e) {
      attempt.delete(path);
      // The store may have applied the write before it failed (a lost answer): garbage to collect.
      this.#noteWritten(scope, { path, checkpointId });
      throw e;
    }
    this.#noteWritten(scope, { path, checkpointId });
    return { path, bytes: bytes.byteLength, sha256: sha256Hex(bytes) };
  }

  async readFile(ref: FileRef): Promise<Uint8Array> {
    if (!isFileRef(ref)) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `checkpoint file reference ${safeJson(ref)} is malformed (want { path: "<jobId>/<taskId>/files/` +
          '<checkpointId>-<name>", bytes, sha256 }); the metadata that holds it is damaged.',
      );
    }
    await this._root('read');
    const bytes = await this._read(ref.path);
    const where = this._describe(ref.path);
    if (bytes === undefined) {
      throw new StreamError(
        'CHECKPOINT_NOT_FOUND',
        `checkpoint file ${where} does not exist. It was deleted (retention keeps the last ${this.retain} ` +
          'checkpoints of a task: was this checkpoint pruned?) or the checkpoint directory was moved.',
      );
    }
    if (bytes.byteLength < ref.bytes) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `checkpoint file ${where} is truncated: ${bytes.byteLength} bytes, expected ${ref.bytes}. ` +
          'Restore from another checkpoint or a savepoint.',
      );
    }
    if (bytes.byteLength > ref.bytes) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `checkpoint file ${where} is ${bytes.byteLength} bytes, expected ${ref.bytes}: it was replaced or ` +
          'appended to. Restore from another checkpoint or a savepoint.',
      );
    }
    const actual = sha256Hex(bytes);
    if (actual !== ref.sha256) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `checkpoint file ${where} fails its checksum: sha256 ${actual}, expected ${ref.sha256}. It was ` +
          'altered after it was written; restore from another checkpoint or a savepoint.',
      );
    }
    return bytes;
  }

  async commit(meta: CheckpointMetadata): Promise<void> {
    const problem = metadataProblem(meta) ?? jsonProblem(meta, 'metadata');
    if (problem !== undefined || meta.formatVersion !== 1) {
      throw new StreamError(
        'CONFIG_INVALID',
        `cannot commit checkpoint metadata: ${problem ?? `formatVersion must be 1, got ${meta.formatVersion}`}`,
      );
    }
    const scope: Scope = { jobId: meta.jobId, taskId: meta.taskId };
    checkScope(scope);
    if (meta.savepoint !== undefined) checkSavepointName(meta.savepoint);
    const what =
      meta.savepoint === undefined
        ? `checkpoint ${meta.checkpointId} of ${describeScope(scope)}`
        : `savepoint "${meta.savepoint}" (checkpoint ${meta.checkpointId}) of ${describeScope(scope)}`;
    for (const f of meta.files) {
      const loc = parseDataFilePath(f.path);
      if (loc?.jobId !== scope.jobId || loc.taskId !== scope.taskId) {
        throw new StreamError(
          'CONFIG_INVALID',
          `cannot commit ${what}: it lists ${f.path}, a file of another task. Files can be shared only ` +
            "by checkpoints of the task that wrote them (that task's retention deletes them).",
        );
      }
    }
    const path =
      meta.savepoint === undefined
        ? checkpointMetaPath(scope, meta.checkpointId)
        : savepointMetaPath(scope, meta.savepoint);
    await this.#exclusive(scope, async () => {
      await this._root('write');
      // Every listed file is checked, also this process's own: another process (a CLI's retention, a
      // zombie) may have deleted one. In parallel: an object store answers each in a round trip.
      const sizes = await Promise.all(meta.files.map((f) => this._size(f.path)));
      for (const [i, f] of meta.files.entries()) {
        const size = sizes[i];
        if (size === undefined) {
          throw new StreamError(
            'CHECKPOINT_NOT_FOUND',
            `cannot commit ${what}: file ${this._describe(f.path)} it lists does not exist (deleted by ` +
              'retention or discard before this commit?). The checkpoint is not committed; take a new one.',
          );
        }
        if (size !== f.bytes) {
          throw new StreamError(
            'CHECKPOINT_CORRUPT',
            `cannot commit ${what}: file ${this._describe(f.path)} is ${size} bytes, but the metadata says ` +
              `${f.bytes}. The checkpoint is not committed; take a new one.`,
          );
        }
      }
      if (meta.files.length > 0) await this._flush(filesDir(scope));
      const bytes = encodeMetadata(meta);
      let outcome: CreateOutcome;
      try {
        outcome = await this._create(path, bytes, { durable: true });
      } catch (e) {
        // The write may have landed although it failed (an answer lost on the way back): a discard
        // of this checkpoint must see the metadata, so the index is rebuilt from storage.
        this.#index.delete(scopeDir(scope));
        throw e;
      }
      if (outcome === 'exists') {
        const existing = await this._read(path);
        if (existing === undefined || !sameBytes(existing, bytes)) {
          throw new StreamError(
            'CHECKPOINT_STORAGE_FAILED',
            `cannot commit ${what}: ${this._describe(path)} already exists with other content, and ` +
              'committed metadata is never overwritten. ' +
              (meta.savepoint === undefined
                ? 'Checkpoint ids must not be reused: use a new id.'
                : 'Choose another savepoint name, or delete the old savepoint first.'),
          );
        }
      }
      this.#inFlight.get(scopeDir(scope))?.delete(meta.checkpointId);
      const index = this.#index.get(scopeDir(scope));
      if (index !== undefined) {
        const location = this._describe(path);
        index.metas = index.metas.filter((m) => m.location !== location);
        index.metas.push({
          checkpointId: meta.savepoint === undefined ? meta.checkpointId : -1,
          savepoint: meta.savepoint,
          files: meta.files.map((f) => f.path),
          location,
        });
      }
      await this.#collect(scope);
    });
  }

  async latest(scope: Scope): Promise<CheckpointMetadata | undefined> {
    checkScope(scope);
    this.#index.delete(scopeDir(scope));
    // Retries only when the newest file vanished between listing and reading (pruned meanwhile).
    for (let attempt = 0; ; attempt++) {
      if (!(await this._root('probe'))) return undefined;
      const ids = await this.#checkpointIds(scope);
      const newest = ids[ids.length - 1];
      if (newest === undefined) return undefined;
      const meta = await this.#readCheckpoint(scope, newest);
      if (meta !== undefined) return meta;
      if (attempt === 9) {
        throw new StreamError(
          'CHECKPOINT_STORAGE_FAILED',
          `the newest checkpoint of ${describeScope(scope)} keeps vanishing between listing and reading ` +
            `(${this._describe(checkpointMetaPath(scope, newest))}); is another process deleting it?`,
        );
      }
    }
  }

  async list(scope: Scope): Promise<CheckpointMetadata[]> {
    checkScope(scope);
    this.#index.delete(scopeDir(scope));
    if (!(await this._root('probe'))) return [];
    const out: CheckpointMetadata[] = [];
    for (const id of await this.#checkpointIds(scope)) {
      const meta = await this.#readCheckpoint(scope, id);
      if (meta !== undefined) out.push(meta); // undefined: pruned while we listed
    }
    return out;
  }

  async load(scope: Scope, checkpointId: number): Promise<CheckpointMetadata> {
    checkScope(scope);
    checkCheckpointId(checkpointId);
    this.#index.delete(scopeDir(scope));
    await this._root('read');
    const meta = await this.#readCheckpoint(scope, checkpointId);
    if (meta !== undefined) return meta;
    const ids = await this.#checkpointIds(scope);
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `checkpoint ${checkpointId} of ${describeScope(scope)} does not exist ` +
        `(${this._describe(checkpointMetaPath(scope, checkpointId))}); ` +
        (ids.length === 0
          ? 'this task has no committed checkpoints.'
          : `committed checkpoints of this task: ${ids.join(', ')} (retention keeps the last ${this.retain}).`),
    );
  }

  async loadSavepoint(name: string, scope: Scope): Promise<CheckpointMetadata> {
    checkScope(scope);
    checkSavepointName(name);
    this.#index.delete(scopeDir(scope));
    await this._root('read');
    const meta = await this.#readSavepoint(scope, name);
    if (meta !== undefined) return meta;
    const names = await this.#savepointNames(scope);
    throw new StreamError(
      'CHECKPOINT_NOT_FOUND',
      `savepoint "${name}" of ${describeScope(scope)} does not exist ` +
        `(${this._describe(savepointMetaPath(scope, name))}); ` +
        (names.length === 0
          ? 'this task has no savepoints.'
          : `savepoints of this task: ${names.join(', ')}.`),
    );
  }

  async discard(scope: Scope, checkpointId: number): Promise<void> {
    checkScope(scope);
    checkCheckpointId(checkpointId);
    // Only what this process wrote for the checkpoint: another process (a task's new owner while
    // this one is a zombie) may be writing files of the same id. Anything else is retention's.
    const written = this.#inFlight.get(scopeDir(scope))?.get(checkpointId) ?? new Set<string>();
    this.#inFlight.get(scopeDir(scope))?.delete(checkpointId);
    await this.#exclusive(scope, async () => {
      if (written.size === 0 || !(await this._root('probe'))) return;
      const index = await this.#indexOf(scope);
      const doomed = [...written];
      await this.#refreshMetas(scope, index);
      const unreadable = index.metas.find((m) => m.files === undefined);
      if (unreadable !== undefined) {
        this.#onCleanupError(
          new StreamError(
            'CHECKPOINT_CORRUPT',
            `discard of checkpoint ${checkpointId} of ${describeScope(scope)} deleted nothing: metadata ` +
              `${unreadable.location} is unreadable, so which files are still referenced is unknown.`,
          ),
        );
        return;
      }
      const referenced = referencedBy(index.metas);
      for (const path of doomed) {
        if (!referenced.has(path)) await this.#deleteFile(scope, path);
      }
    });
  }

  // ---- beyond the contract -----------------------------------------------------------------------

  /** Task ids of the job that have checkpoints or savepoints here, sorted (a listing: not for the hot path). */
  async tasks(jobId: string): Promise<string[]> {
    checkScope({ jobId, taskId: 'x' });
    if (!(await this._root('probe'))) return [];
    return (await this._listDirs(jobId)).sort();
  }

  /** Job ids with anything stored here, sorted (a listing). */
  async jobs(): Promise<string[]> {
    if (!(await this._root('probe'))) return [];
    return (await this._listDirs('')).sort();
  }

  /** Savepoints of the scope, by name. */
  async listSavepoints(scope: Scope): Promise<CheckpointMetadata[]> {
    checkScope(scope);
    if (!(await this._root('probe'))) return [];
    const out: CheckpointMetadata[] = [];
    for (const name of await this.#savepointNames(scope)) {
      const meta = await this.#readSavepoint(scope, name);
      if (meta !== undefined) out.push(meta);
    }
    return out;
  }

  /** Deletes a savepoint, and the files no retained checkpoint or other savepoint lists. */
  async deleteSavepoint(name: string, scope: Scope): Promise<void> {
    checkScope(scope);
    checkSavepointName(name);
    await this.#exclusive(scope, async () => {
      await this._root('read');
      const path = savepointMetaPath(scope, name);
      if ((await this._size(path)) === undefined) {
        throw new StreamError(
          'CHECKPOINT_NOT_FOUND',
          `savepoint "${name}" of ${describeScope(scope)} does not exist (${this._describe(path)})`,
        );
      }
      await this._delete(path);
      const index = this.#index.get(scopeDir(scope));
      if (index !== undefined) index.metas = index.metas.filter((m) => m.savepoint !== name);
      await this.#collect(scope);
    });
  }

  /**
   * Deletes those of `paths` (data files of the scope, as FileRef paths) that exist and no committed
   * metadata of the scope lists, then the scope's directories if that left them empty: the leftovers
   * of an offline write that never committed (an interrupted `kstate savepoint rescale`, which knows
   * the names it wrote). Returns the paths deleted. Reads every metadata of the scope: not for the
   * hot path. Refuses (CHECKPOINT_CORRUPT) to delete anything while a metadata file is unreadable.
   */
  async deleteUnreferenced(scope: Scope, paths: readonly string[]): Promise<string[]> {
    checkScope(scope);
    for (const path of paths) {
      const loc = parseDataFilePath(path);
      if (loc?.jobId !== scope.jobId || loc.taskId !== scope.taskId)
        throw new StreamError(
          'CONFIG_INVALID',
          `deleteUnreferenced: ${path} is no data file of ${describeScope(scope)}`,
        );
    }
    return this.#exclusive(scope, async () => {
      if (!(await this._root('probe'))) return [];
      const metas = await this.#storedMetas(scope);
      const unreadable = metas.find((m) => m.files === undefined);
      if (unreadable !== undefined)
        throw new StreamError(
          'CHECKPOINT_CORRUPT',
          `metadata ${unreadable.location} is unreadable, so which files of ${describeScope(scope)} it lists is unknown: nothing deleted`,
        );
      const referenced = referencedBy(metas);
      const inFlight = new Set(
        [...(this.#inFlight.get(scopeDir(scope))?.values() ?? [])].flatMap((s) => [...s]),
      );
      const deleted: string[] = [];
      for (const path of paths) {
        if (referenced.has(path) || inFlight.has(path) || (await this._size(path)) === undefined) continue;
        await this.#deleteFile(scope, path);
        deleted.push(path);
      }
      if (metas.length === 0) {
        await this._sweepLeftovers(scope);
        await this._removeEmptyDirs(scope);
      }
      return deleted;
    });
  }

  // ---- internals ---------------------------------------------------------------------------------

  /** The scope's index, scanning storage (listings) when this process has none. */
  async #indexOf(scope: Scope): Promise<ScopeIndex> {
    const key = scopeDir(scope);
    const cached = this.#index.get(key);
    if (cached !== undefined) return cached;
    const recent = new Map<string, StoredFile>();
    this.#scanning.set(key, recent);
    try {
      const metas = await this.#storedMetas(scope);
      const files = new Map((await this.#storedFiles(scope)).map((f) => [f.path, f]));
      // Writes that finished during the scan, which its listing may have missed.
      for (const [path, f] of recent) files.set(path, f);
      const index: ScopeIndex = { metas, files, swept: false };
      this.#index.set(key, index);
      return index;
    } finally {
      if (this.#scanning.get(key) === recent) this.#scanning.delete(key);
    }
  }

  /** Records a file written (or perhaps written) in the scope's index, and in a scan under way. */
  #noteWritten(scope: Scope, f: StoredFile): void {
    const key = scopeDir(scope);
    this.#index.get(key)?.files.set(f.path, f);
    this.#scanning.get(key)?.set(f.path, f);
  }

  /**
   * Adds checkpoint metadata another process committed since the scan (one listing of the scope's
   * metadata names; the files directory is not listed), and drops what another process pruned.
   */
  async #refreshMetas(scope: Scope, index: ScopeIndex): Promise<void> {
    const ids = new Set(await this.#checkpointIds(scope));
    const known = new Set(index.metas.filter((m) => m.savepoint === undefined).map((m) => m.checkpointId));
    index.metas = index.metas.filter((m) => m.savepoint !== undefined || ids.has(m.checkpointId));
    for (const id of ids) {
      if (known.has(id)) continue;
      const location = this._describe(checkpointMetaPath(scope, id));
      try {
        const meta = await this.#readCheckpoint(scope, id);
        if (meta !== undefined)
          index.metas.push({ checkpointId: id, files: meta.files.map((f) => f.path), location });
      } catch {
        index.metas.push({ checkpointId: id, files: undefined, location });
      }
    }
  }

  async #deleteFile(scope: Scope, path: string): Promise<void> {
    await this._delete(path);
    this.#index.get(scopeDir(scope))?.files.delete(path);
  }

  #attempt(scope: Scope, checkpointId: number): Set<string> {
    const key = scopeDir(scope);
    let byId = this.#inFlight.get(key);
    if (byId === undefined) {
      byId = new Map();
      this.#inFlight.set(key, byId);
    }
    let paths = byId.get(checkpointId);
    if (paths === undefined) {
      paths = new Set();
      byId.set(checkpointId, paths);
    }
    return paths;
  }

  /** Runs `fn` after every commit or discard of the scope queued before it. */
  async #exclusive<T>(scope: Scope, fn: () => Promise<T>): Promise<T> {
    const key = scopeDir(scope);
    const run = (this.#locks.get(key) ?? Promise.resolve()).then(fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.#locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }

  async #checkpointIds(scope: Scope): Promise<number[]> {
    const ids: number[] = [];
    for (const name of await this._list(scopeDir(scope))) {
      const id = parseCheckpointMetaName(name);
      if (id !== undefined) ids.push(id);
    }
    return ids.sort((a, b) => a - b);
  }

  async #savepointNames(scope: Scope): Promise<string[]> {
    const names: string[] = [];
    for (const file of await this._list(savepointsDir(scope))) {
      const name = parseSavepointMetaName(file);
      if (name !== undefined) names.push(name);
    }
    return names.sort();
  }

  async #storedFiles(scope: Scope): Promise<StoredFile[]> {
    const dir = filesDir(scope);
    const files: StoredFile[] = [];
    for (const name of await this._list(dir)) {
      const checkpointId = parseDataFileName(name);
      if (checkpointId !== undefined) files.push({ path: `${dir}/${name}`, checkpointId });
    }
    return files;
  }

  async #readCheckpoint(scope: Scope, checkpointId: number): Promise<CheckpointMetadata | undefined> {
    const path = checkpointMetaPath(scope, checkpointId);
    const bytes = await this._read(path);
    if (bytes === undefined) return undefined;
    const where = this._describe(path);
    const meta = decodeMetadata(bytes, where);
    if (
      meta.jobId !== scope.jobId ||
      meta.taskId !== scope.taskId ||
      meta.checkpointId !== checkpointId ||
      meta.savepoint !== undefined
    ) {
      throw misplaced(where, meta);
    }
    return meta;
  }

  async #readSavepoint(scope: Scope, name: string): Promise<CheckpointMetadata | undefined> {
    const path = savepointMetaPath(scope, name);
    const bytes = await this._read(path);
    if (bytes === undefined) return undefined;
    const where = this._describe(path);
    const meta = decodeMetadata(bytes, where);
    if (meta.jobId !== scope.jobId || meta.taskId !== scope.taskId || meta.savepoint !== name) {
      throw misplaced(where, meta);
    }
    return meta;
  }

  /** Every committed metadata of the scope, with `files` undefined for unreadable ones. */
  async #storedMetas(scope: Scope): Promise<StoredMeta[]> {
    const metas: StoredMeta[] = [];
    const add = async (
      read: () => Promise<CheckpointMetadata | undefined>,
      checkpointId: number,
      path: string,
      savepoint?: string,
    ): Promise<void> => {
      const location = this._describe(path);
      try {
        const meta = await read();
        if (meta !== undefined)
          metas.push({ checkpointId, savepoint, files: meta.files.map((f) => f.path), location });
      } catch {
        metas.push({ checkpointId, savepoint, files: undefined, location });
      }
    };
    for (const id of await this.#checkpointIds(scope)) {
      await add(() => this.#readCheckpoint(scope, id), id, checkpointMetaPath(scope, id));
    }
    for (const name of await this.#savepointNames(scope)) {
      // Savepoints are never pruned, so their checkpoint id does not matter to retention.
      await add(() => this.#readSavepoint(scope, name), -1, savepointMetaPath(scope, name), name);
    }
    return metas;
  }

  async #isReferenced(scope: Scope, path: string): Promise<boolean> {
    const metas = await this.#storedMetas(scope);
    // An unreadable metadata file might list it: assume it does.
    return metas.some((m) => m.files === undefined || m.files.includes(path));
  }

  /** Retention after a commit: never throws (the commit has happened); reports instead. */
  async #collect(scope: Scope): Promise<void> {
    try {
      const index = await this.#indexOf(scope);
      const planned = () =>
        planRetention({
          metas: index.metas,
          files: [...index.files.values()],
          retain: this.retain,
          inFlight: new Set(this.#inFlight.get(scopeDir(scope))?.keys()),
        });
      let plan = planned();
      if (plan.pruneCheckpoints.length > 0 || plan.deleteFiles.length > 0) {
        // About to delete: first make sure no metadata committed by another process lists a file.
        await this.#refreshMetas(scope, index);
        plan = planned();
      }
      // Metadata first: a crash half-way leaves unreferenced files (collected next time), never
      // metadata that lists deleted files.
      for (const id of plan.pruneCheckpoints) {
        await this._delete(checkpointMetaPath(scope, id));
        index.metas = index.metas.filter((m) => m.savepoint !== undefined || m.checkpointId !== id);
      }
      for (const path of plan.deleteFiles) await this.#deleteFile(scope, path);
      if (plan.blockedBy !== undefined) {
        this.#onCleanupError(
          new StreamError(
            'CHECKPOINT_CORRUPT',
            `retention of ${describeScope(scope)} deleted no files: retained metadata ${plan.blockedBy} is ` +
              'unreadable, so which files it references is unknown. Repair or remove it.',
          ),
        );
      }
      if (!index.swept) {
        await this._sweepLeftovers(scope);
        index.swept = true;
      }
    } catch (e) {
      this.#index.delete(scopeDir(scope)); // what was deleted is unsure: scan again next time
      this.#onCleanupError(
        new StreamError(
          isStreamError(e) ? e.code : 'CHECKPOINT_STORAGE_FAILED',
          `cleanup of ${describeScope(scope)} after a commit failed (the commit itself succeeded; cleanup is ` +
            `retried after the next commit): ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        ),
      );
    }
  }
}

/** What retention needs to know of a scope (see BaseCheckpointStorage.#index). */
interface ScopeIndex {
  metas: StoredMeta[];
  readonly files: Map<string, StoredFile>;
  /** Whether leftovers of interrupted writes were swept since the scan (once per scan). */
  swept: boolean;
}

function misplaced(where: string, meta: CheckpointMetadata): StreamError {
  const held =
    meta.savepoint === undefined
      ? `checkpoint ${meta.checkpointId}`
      : `savepoint "${meta.savepoint}" (checkpoint ${meta.checkpointId})`;
  return new StreamError(
    'CHECKPOINT_CORRUPT',
    `checkpoint metadata ${where} holds ${held} of job "${meta.jobId}" task "${meta.taskId}", which ` +
      'belongs elsewhere: the file was copied or renamed by hand. Move it back where it belongs.',
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
