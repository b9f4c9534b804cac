/**
 * Checkpoint storage in a Map, for tests. Same layout, checksums, retention and reference counting
 * as the filesystem storage (both extend BaseCheckpointStorage): metadata is stored encoded, so a
 * payload JSON cannot hold is refused here too. `corrupt` and `truncate` damage a stored file so that
 * tests can check corruption is detected.
 */
import { StreamError } from '../../api/errors.ts';
import { BaseCheckpointStorage, type CreateOutcome, type StorageOptions } from './base.ts';

export type MemoryStorageOptions = StorageOptions;

export class MemoryCheckpointStorage extends BaseCheckpointStorage {
  readonly kind = 'memory';
  readonly #files = new Map<string, Uint8Array>();

  constructor(options: MemoryStorageOptions = {}) {
    super(options);
  }

  /** Test hook: flips the bits of the last byte of the stored file at `path` (a FileRef path). */
  corrupt(path: string): void {
    const bytes = this.#get(path);
    if (bytes.byteLength === 0) {
      throw new StreamError(
        'CONFIG_INVALID',
        `memory storage: ${path} is empty; use truncate or write bytes`,
      );
    }
    const copy = bytes.slice();
    copy[copy.length - 1] = (copy[copy.length - 1] ?? 0) ^ 0xff;
    this.#files.set(path, copy);
  }

  /** Test hook: cuts the stored file at `path` to its first `length` bytes. */
  truncate(path: string, length: number): void {
    this.#files.set(path, this.#get(path).slice(0, length));
  }

  /** Test hook: every stored path (files and metadata), sorted. */
  paths(): string[] {
    return [...this.#files.keys()].sort();
  }

  #get(path: string): Uint8Array {
    const bytes = this.#files.get(path);
    if (bytes === undefined) throw new StreamError('CHECKPOINT_NOT_FOUND', `memory storage: no file ${path}`);
    return bytes;
  }

  protected async _create(
    path: string,
    bytes: Uint8Array,
    options: { readonly durable: boolean; readonly replaceIf?: () => Promise<boolean> },
  ): Promise<CreateOutcome> {
    const copy = new Uint8Array(bytes); // a copy (Buffer#slice would share memory)
    if (!this.#files.has(path)) {
      this.#files.set(path, copy);
      return 'created';
    }
    if (options.replaceIf !== undefined && (await options.replaceIf())) {
      this.#files.set(path, copy);
      return 'replaced';
    }
    return 'exists';
  }

  protected async _read(path: string): Promise<Uint8Array | undefined> {
    const bytes = this.#files.get(path);
    return bytes === undefined ? undefined : new Uint8Array(bytes);
  }

  protected async _size(path: string): Promise<number | undefined> {
    return this.#files.get(path)?.byteLength;
  }

  protected async _delete(path: string): Promise<void> {
    this.#files.delete(path);
  }

  protected async _list(dir: string): Promise<string[]> {
    const prefix = `${dir}/`;
    const names: string[] = [];
    for (const path of this.#files.keys()) {
      if (path.startsWith(prefix) && !path.includes('/', prefix.length))
        names.push(path.slice(prefix.length));
    }
    return names;
  }

  protected async _listDirs(dir: string): Promise<string[]> {
    const prefix = dir === '' ? '' : `${dir}/`;
    const names = new Set<string>();
    for (const path of this.#files.keys()) {
      if (!path.startsWith(prefix)) continue;
      const slash = path.indexOf('/', prefix.length);
      if (slash > prefix.length) names.add(path.slice(prefix.length, slash));
    }
    return [...names];
  }

  protected async _flush(_dir: string): Promise<void> {}

  protected async _root(_purpose: 'probe' | 'read' | 'write'): Promise<boolean> {
    return true;
  }

  protected _describe(path: string): string {
    return `memory:${path}`;
  }
}
