import { StreamError } from '../../../api/errors.ts';
import type { KeyId } from '../../../api/keys.ts';
import type { FileRef } from '../../../checkpoint/storage/storage.ts';
import type { CheckpointFiles, KeyedStateHandle, StateMeta } from '../../backend.ts';
import { OP_PUT, RunBuilder, RunReader } from './run-file.ts';

/**
 * Checkpoint chains: how a backend's own checkpoints (`KeyedStateCapture.writeCheckpoint`) are laid
 * out in checkpoint storage, shared by the level and the heap backend (this folder imports no native
 * module). write-checkpoint.ts writes one; `readChain` reads one back.
 *
 *     checkpoint  files written          handle.files                      layout
 *     n           base runs (all state)  base                              { base, deltas: [] }
 *     n+1         delta runs             base + delta(n+1)                 { base, deltas: [n+1] }
 *     n+2         delta runs             base + delta(n+1) + delta(n+2)    { base, deltas: [n+1, n+2] }
 *     ...         (after `maxDeltas` deltas, or once the deltas outweigh the base: a new base)
 *
 * A delta holds the entries put and deleted (tombstones) since the capture of the checkpoint before
 * it; restore reads the base and applies the deltas in order. Files are shared by reference: a
 * checkpoint lists every file it needs in its handle, and checkpoint storage keeps a file while a
 * retained checkpoint lists it (see docs/checkpoint-storage.md).
 *
 * Every layout carries the token of its capture. A backend builds a delta only on top of the handle
 * whose token is the one of its own previous capture (or of the handle it restored), so a handle of
 * any other capture gives a full checkpoint, never a wrong delta. The level backend also records the
 * token in its local database, which is how local recovery knows that the database matches.
 */

export const CHAIN_LAYOUT_FORMAT = 1;

/** One state at the capture: its meta and number of entries (a check for local recovery). */
export interface ChainState {
  readonly meta: StateMeta;
  readonly entries: number;
}

export interface ChainPart {
  /** Paths of the part's run files (each also in `handle.files`), in order. */
  readonly files: readonly string[];
  readonly records: number;
  readonly bytes: number;
}

export interface ChainDelta extends ChainPart {
  /** Token of the capture this delta brings the state to. */
  readonly token: string;
}

/** `KeyedStateHandle.layout` of the heap and level backends (JSON-safe). */
export interface ChainLayout {
  readonly format: typeof CHAIN_LAYOUT_FORMAT;
  /** Token of the capture this checkpoint holds: `<backend instance>.<capture number>`. */
  readonly token: string;
  readonly states: readonly ChainState[];
  readonly base: ChainPart;
  readonly deltas: readonly ChainDelta[];
}

export interface ChainPolicy {
  /** Deltas on one base before a full checkpoint is written again. Default 10. */
  readonly maxDeltas: number;
  /**
   * A full checkpoint is written instead of a delta when the deltas (with this one, estimated from its
   * number of changed keys) would hold more than `maxDeltaRatio` x the base's bytes. Default 1.
   */
  readonly maxDeltaRatio: number;
  /** Run files are cut at about this many bytes. Default 64 MiB. */
  readonly fileBytes: number;
  /**
   * Run files of one checkpoint transferred at once: uploads while a checkpoint is written (see
   * RunFilesWriter), downloads while a restore reads (see readChain). 1 is one file after the
   * other. Default 4. It bounds memory too: about (fileConcurrency + 1) x fileBytes of run files
   * are held at once while writing, fileConcurrency x fileBytes while restoring.
   */
  readonly fileConcurrency: number;
}

export const DEFAULT_CHAIN_POLICY: ChainPolicy = {
  maxDeltas: 10,
  maxDeltaRatio: 1,
  fileBytes: 64 * 1024 * 1024,
  fileConcurrency: 4,
};

/** Fills in and checks a chain policy; CONFIG_INVALID names the field (prefixed with `where`). */
export function resolveChainPolicy(
  where: string,
  o: { maxDeltas?: number; maxDeltaRatio?: number; fileBytes?: number; fileConcurrency?: number },
): ChainPolicy {
  const p = {
    maxDeltas: o.maxDeltas ?? DEFAULT_CHAIN_POLICY.maxDeltas,
    maxDeltaRatio: o.maxDeltaRatio ?? DEFAULT_CHAIN_POLICY.maxDeltaRatio,
    fileBytes: o.fileBytes ?? DEFAULT_CHAIN_POLICY.fileBytes,
    fileConcurrency: o.fileConcurrency ?? DEFAULT_CHAIN_POLICY.fileConcurrency,
  };
  if (!Number.isSafeInteger(p.maxDeltas) || p.maxDeltas < 0) {
    throw new StreamError('CONFIG_INVALID', `${where}.maxDeltas must be an integer >= 0, got ${p.maxDeltas}`);
  }
  if (!(typeof p.maxDeltaRatio === 'number' && p.maxDeltaRatio > 0 && Number.isFinite(p.maxDeltaRatio))) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}.maxDeltaRatio must be a positive number, got ${p.maxDeltaRatio}`,
    );
  }
  if (!Number.isSafeInteger(p.fileBytes) || p.fileBytes < 1024) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}.fileBytes must be an integer >= 1024, got ${p.fileBytes}`,
    );
  }
  checkFileConcurrency(where, p.fileConcurrency);
  return p;
}

/**
 * Whether the checkpoint of a capture may be a delta on `previous`: only when `previous` holds the
 * capture right before it (`baseToken`), the chain is shorter than `maxDeltas`, and the deltas would
 * not outweigh the base. `changedKeys`/`totalKeys` estimate this delta's size.
 */
export function chooseCheckpointType(
  previous: ChainLayout | undefined,
  baseToken: string | undefined,
  changedKeys: number,
  totalKeys: number,
  policy: ChainPolicy,
): 'full' | 'incremental' {
  if (previous === undefined || baseToken === undefined || previous.token !== baseToken) return 'full';
  if (previous.deltas.length >= policy.maxDeltas) return 'full';
  const deltaBytes = previous.deltas.reduce((s, d) => s + d.bytes, 0);
  // This delta's bytes, estimated from the base's bytes per entry.
  const perKey = previous.base.records === 0 ? 0 : previous.base.bytes / previous.base.records;
  const estimate = Math.min(changedKeys, Math.max(totalKeys, 1)) * perKey;
  return deltaBytes + estimate > policy.maxDeltaRatio * previous.base.bytes ? 'full' : 'incremental';
}

/**
 * The layout of a handle of `kind`, checked: SNAPSHOT_FORMAT_UNSUPPORTED for another backend or
 * layout version, CHECKPOINT_CORRUPT for a malformed one or one naming a file the handle does not list.
 */
export function parseChainLayout(handle: KeyedStateHandle, kind: string): ChainLayout {
  if (handle.backend !== kind) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `the keyed state handle was written by the '${handle.backend}' backend; the '${kind}' backend cannot restore it (restore from a savepoint to change backends)`,
    );
  }
  const l = handle.layout as Partial<ChainLayout> | null;
  const bad = (why: string): StreamError =>
    new StreamError('CHECKPOINT_CORRUPT', `the '${kind}' keyed state handle is malformed: ${why}`);
  if (typeof l !== 'object' || l === null) throw bad('no layout');
  if (l.format !== CHAIN_LAYOUT_FORMAT) {
    throw new StreamError(
      'SNAPSHOT_FORMAT_UNSUPPORTED',
      `the '${kind}' keyed state handle has layout format ${JSON.stringify(l.format)}; this build reads format ${CHAIN_LAYOUT_FORMAT}`,
    );
  }
  if (typeof l.token !== 'string') throw bad('no token');
  if (!Array.isArray(l.states)) throw bad('no states');
  for (const s of l.states as unknown[]) {
    const st = s as Partial<ChainState> | null;
    if (
      typeof st !== 'object' ||
      st === null ||
      typeof st.entries !== 'number' ||
      typeof st.meta !== 'object' ||
      st.meta === null ||
      typeof st.meta.name !== 'string' ||
      typeof st.meta.kind !== 'string' ||
      typeof st.meta.serializerId !== 'string' ||
      typeof st.meta.serializerVersion !== 'number'
    ) {
      throw bad('a state is not { meta, entries }');
    }
  }
  const listed = new Set(handle.files.map((f) => f.path));
  const part = (p: unknown, what: string): void => {
    const x = p as Partial<ChainPart> | null;
    if (
      typeof x !== 'object' ||
      x === null ||
      !Array.isArray(x.files) ||
      typeof x.records !== 'number' ||
      typeof x.bytes !== 'number'
    ) {
      throw bad(`${what} is not { files, records, bytes }`);
    }
    for (const f of x.files as unknown[]) {
      if (typeof f !== 'string' || !listed.has(f)) {
        throw bad(`${what} names the file ${String(f)}, which the handle does not list`);
      }
    }
  };
  part(l.base, 'the base');
  if (!Array.isArray(l.deltas)) throw bad('no deltas');
  l.deltas.forEach((d, i) => {
    part(d, `delta ${i}`);
    if (typeof (d as Partial<ChainDelta>).token !== 'string') throw bad(`delta ${i} has no token`);
  });
  return l as ChainLayout;
}

/** A plain (JSON-safe, no `undefined` fields) copy of a meta. */
export function plainMeta(meta: StateMeta): StateMeta {
  return {
    name: meta.name,
    kind: meta.kind,
    serializerId: meta.serializerId,
    serializerVersion: meta.serializerVersion,
    ...(meta.ttl === undefined
      ? {}
      : {
          ttl: {
            ttlMs: meta.ttl.ttlMs,
            time: meta.ttl.time,
            ...(meta.ttl.update === undefined ? {} : { update: meta.ttl.update }),
            ...(meta.ttl.visibility === undefined ? {} : { visibility: meta.ttl.visibility }),
          },
        }),
  };
}

/** CONFIG_INVALID unless `n` is an integer from 1 to 64 (prefixed with `where`). */
function checkFileConcurrency(where: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > 64) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where}.fileConcurrency must be an integer from 1 to 64 (run files transferred at once), got ${n}`,
    );
  }
}

/**
 * Writes runs to checkpoint files, cutting a new file at about `fileBytes`; files are written in the
 * background, up to `concurrency` at once (each under its own name, so the order in which the writes
 * finish does not matter: `part.files` is in the order the files were cut).
 *
 * `put` and `delete` return true when they cut a file: then `await ready()` (backpressure: it waits
 * while a cut file waits for a free slot, so at most `concurrency` + 1 files are held besides the one
 * being built). `finish()` writes the last file and waits for all.
 *
 * Errors: after a write fails no other write starts (cut files not started are dropped), and
 * `ready()` and `finish()` reject with the first failure only once every write already started has
 * settled, so a rejected checkpoint never has a write still landing behind it (discarding its files
 * then finds them all). A caller that fails itself calls `abandon()`, for the same reason.
 */
export class RunFilesWriter {
  readonly #files: CheckpointFiles;
  readonly #prefix: string;
  readonly #fileBytes: number;
  readonly #concurrency: number;
  readonly #builder = new RunBuilder();
  readonly #refs: FileRef[] = [];
  #cut = 0;
  #records = 0;
  /** Cut files waiting for a slot, oldest first. */
  readonly #waiting: { readonly index: number; readonly bytes: Uint8Array }[] = [];
  #running = 0;
  #failed = false;
  #error: unknown;
  /** Resolved (and cleared) whenever a write settles. */
  #settle: { readonly promise: Promise<void>; readonly resolve: () => void } | undefined;

  constructor(
    files: CheckpointFiles,
    prefix: string,
    fileBytes: number,
    concurrency: number = DEFAULT_CHAIN_POLICY.fileConcurrency,
  ) {
    checkFileConcurrency('RunFilesWriter', concurrency);
    this.#files = files;
    this.#prefix = prefix;
    this.#fileBytes = fileBytes;
    this.#concurrency = concurrency;
  }

  put(state: string, key: KeyId, value: Uint8Array): boolean {
    this.#builder.put(state, key, value);
    return this.#builder.size >= this.#fileBytes && this.#cutFile();
  }

  delete(state: string, key: KeyId): boolean {
    this.#builder.delete(state, key);
    return this.#builder.size >= this.#fileBytes && this.#cutFile();
  }

  /**
   * Resolves once no cut file waits for a slot; rejects with the first failed write (after every
   * started write has settled).
   */
  async ready(): Promise<void> {
    while (!this.#failed && this.#waiting.length > 0) await this.#settled();
    if (this.#failed) await this.#fail();
  }

  /** Writes the last file (an empty run when nothing was written, so every part has a file). */
  async finish(): Promise<{ refs: FileRef[]; part: ChainPart }> {
    if (this.#builder.records > 0 || this.#cut === 0) this.#cutFile();
    while (!this.#failed && this.#running + this.#waiting.length > 0) await this.#settled();
    if (this.#failed) await this.#fail();
    return {
      refs: this.#refs,
      part: {
        files: this.#refs.map((r) => r.path),
        records: this.#records,
        bytes: this.#refs.reduce((s, r) => s + r.bytes, 0),
      },
    };
  }

  /**
   * Gives up on the checkpoint (its caller failed while building files): no other write starts, and
   * it resolves once every write already started has settled, so that nothing of a rejected
   * checkpoint lands after the rejection.
   */
  async abandon(): Promise<void> {
    this.#failed = true;
    this.#waiting.length = 0;
    while (this.#running > 0) await this.#settled();
  }

  #cutFile(): true {
    const index = this.#cut++;
    this.#records += this.#builder.records;
    const bytes = this.#builder.finish();
    if (!this.#failed) {
      this.#waiting.push({ index, bytes });
      this.#pump();
    }
    return true;
  }

  /** Starts waiting files while slots are free. */
  #pump(): void {
    while (!this.#failed && this.#running < this.#concurrency && this.#waiting.length > 0) {
      const { index, bytes } = this.#waiting.shift()!;
      this.#running++;
      Promise.resolve()
        .then(() => this.#files.write(`${this.#prefix}-${index}`, bytes))
        .then(
          (ref) => {
            this.#refs[index] = ref;
          },
          (e: unknown) => {
            if (!this.#failed) {
              this.#failed = true;
              this.#error = e;
              this.#waiting.length = 0;
            }
          },
        )
        .finally(() => {
          this.#running--;
          this.#pump();
          const s = this.#settle;
          this.#settle = undefined;
          s?.resolve();
        });
    }
  }

  #settled(): Promise<void> {
    if (this.#settle === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      this.#settle = { promise, resolve };
    }
    return this.#settle.promise;
  }

  /** Waits for the writes still running, then throws the first failure. */
  async #fail(): Promise<never> {
    while (this.#running > 0) await this.#settled();
    throw this.#error;
  }
}

/**
 * Reads the runs of a chain in order (base, then each delta), calling `file(reader)` per run file;
 * the callback iterates the records (`while (reader.next()) ...`). Storage verifies each file's
 * checksum (CHECKPOINT_CORRUPT / CHECKPOINT_NOT_FOUND naming it); the reader names it too.
 *
 * Reads ahead: up to `concurrency` files are read (or held, read) at once, from the one being
 * applied on, so the next files download while one is applied. Files are applied strictly in chain
 * order, whatever order their reads finish in; a failed read rejects when its turn comes (the files
 * before it have been applied), and a rejection never leaves a callback running.
 */
export async function readChain(
  handle: KeyedStateHandle,
  layout: ChainLayout,
  files: CheckpointFiles,
  file: (reader: RunReader) => void | Promise<void>,
  concurrency: number = DEFAULT_CHAIN_POLICY.fileConcurrency,
): Promise<void> {
  checkFileConcurrency('readChain', concurrency);
  const refs = new Map(handle.files.map((f) => [f.path, f]));
  const paths = [layout.base, ...layout.deltas].flatMap((part) => part.files);
  const reads: Promise<Uint8Array>[] = [];
  const start = (upTo: number): void => {
    while (reads.length < paths.length && reads.length <= upTo) {
      const ref = refs.get(paths[reads.length]!)!;
      const read = Promise.resolve().then(() => files.read(ref));
      read.catch(() => {}); // handled when its turn comes (or not needed after an earlier failure)
      reads.push(read);
    }
  };
  for (let i = 0; i < paths.length; i++) {
    start(i + concurrency - 1);
    const bytes = await reads[i]!;
    reads[i] = DONE; // let it be collected
    await file(new RunReader(bytes, paths[i]!));
  }
}

const DONE: Promise<Uint8Array> = Promise.resolve(new Uint8Array(0));

/** The entries of a chain as plain maps per state (deletes applied); values are copies. */
export async function readChainEntries(
  handle: KeyedStateHandle,
  layout: ChainLayout,
  files: CheckpointFiles,
  concurrency: number = DEFAULT_CHAIN_POLICY.fileConcurrency,
): Promise<Map<string, Map<KeyId, Uint8Array>>> {
  const states = new Map<string, Map<KeyId, Uint8Array>>();
  for (const s of layout.states) states.set(s.meta.name, new Map());
  const read = (r: RunReader): void => {
    while (r.next()) {
      const m = states.get(r.state);
      if (m === undefined) throw unlistedState(r);
      if (r.op === OP_PUT) m.set(r.key, Uint8Array.prototype.slice.call(r.value!));
      else m.delete(r.key);
    }
  };
  await readChain(handle, layout, files, read, concurrency);
  return states;
}

/** The error of a run file record of a state the checkpoint's layout does not list. */
export function unlistedState(r: RunReader): StreamError {
  return new StreamError(
    'CHECKPOINT_CORRUPT',
    `keyed state run file ${r.fileName} holds state '${r.state}', which the checkpoint's layout does not list`,
  );
}

/**
 * CHECKPOINT_CORRUPT unless the chain's files held as many entries of each state as its layout
 * recorded at the capture (`found(name)`: the entries a restore ended with).
 */
export function checkChainEntryCounts(layout: ChainLayout, found: (state: string) => number): void {
  for (const s of layout.states) {
    const n = found(s.meta.name);
    if (n !== s.entries) {
      throw new StreamError(
        'CHECKPOINT_CORRUPT',
        `the files of checkpoint token ${layout.token} hold ${n} entries of state '${s.meta.name}', its layout says ${s.entries}`,
      );
    }
  }
}

/** A capture token: unique per backend instance and capture. */
export function captureToken(instance: string, seq: number): string {
  return `${instance}.${seq}`;
}
