import { createReadStream, type Dirent } from 'node:fs';
import { mkdir, open, readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';

/**
 * Where a savepoint exported as NDJSON lives (`<operator>/<state>.ndjson` and `savepoint.json`): text
 * files named by `/`-separated paths relative to one root. export.ts and import.ts do all their I/O
 * through it, so one code path writes and reads a directory (`DirectorySavepointFiles`, here) or an
 * object-store prefix (`S3SavepointFiles`, kstate/s3).
 *
 * Contract of an implementation:
 * - `write` creates `file` from chunks of text as they come, so a large file is never whole in memory
 *   (an object store uploads it in parts); it never replaces an existing file (the exporter also
 *   refuses a root that is not empty); a failed write leaves no partial file visible under its name
 *   where the store allows (an object store), or a truncated one (a directory: the export failed and
 *   says so; `savepoint.json` is written last, so an export without it is incomplete).
 * - `readLines` streams a file's lines without their line ends (`\n` or `\r\n`); a missing file is an
 *   error naming it. `readText` is the whole file, `undefined` when it does not exist.
 * - `list` is every file under the root, sorted; `[]` when the root does not exist.
 * - Errors of the store itself are StreamErrors where the implementation can classify them
 *   (CHECKPOINT_NOT_FOUND: no such bucket; CHECKPOINT_STORAGE_DENIED; CHECKPOINT_STORAGE_FAILED).
 */
export interface SavepointFiles {
  /** The root as the user gave it, for messages: a directory path, `s3://bucket/prefix`. */
  readonly location: string;
  /** A file as the user finds it: `<dir>/<file>`, `s3://bucket/prefix/<file>`. */
  describe(file: string): string;
  /** True when the root holds no file (or does not exist). */
  isEmpty(): Promise<boolean>;
  /** Every file under the root, relative and `/`-separated, sorted. */
  list(): Promise<string[]>;
  /** The whole file as UTF-8 text; undefined when it does not exist. */
  readText(file: string): Promise<string | undefined>;
  /** The file's lines, streamed. */
  readLines(file: string): AsyncIterable<string>;
  /** Creates `file` from `chunks` (UTF-8 text, concatenated as they are). */
  write(file: string, chunks: AsyncIterable<string> | Iterable<string>): Promise<void>;
  /** Releases what the implementation holds (connections). */
  close?(): void;
}

/** Savepoint files in a local (or mounted) directory. */
export class DirectorySavepointFiles implements SavepointFiles {
  readonly location: string;

  constructor(directory: string) {
    this.location = directory;
  }

  describe(file: string): string {
    return join(this.location, file);
  }

  async isEmpty(): Promise<boolean> {
    const entries = await readdir(this.location).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [];
      throw e;
    });
    return entries.length === 0;
  }

  async list(): Promise<string[]> {
    let entries: Dirent[];
    try {
      entries = await readdir(this.location, { recursive: true, withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    return entries
      .filter((e) => e.isFile())
      .map((e) => relative(this.location, join(e.parentPath, e.name)).split(sep).join('/'))
      .sort();
  }

  async readText(file: string): Promise<string | undefined> {
    try {
      return await readFile(this.describe(file), 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  readLines(file: string): AsyncIterable<string> {
    return textLines(createReadStream(this.describe(file)));
  }

  async write(file: string, chunks: AsyncIterable<string> | Iterable<string>): Promise<void> {
    const path = this.describe(file);
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(path, 'wx');
    try {
      for await (const chunk of chunks) await fh.write(chunk);
    } finally {
      await fh.close();
    }
  }
}

/**
 * The lines of UTF-8 text arriving in chunks (a file or HTTP body), without their line ends (`\n` or
 * `\r\n`); a last line without a line end is a line, an empty text has none. Characters split
 * between chunks are joined; an error of the source is thrown by the iteration.
 */
export async function* textLines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8');
  let rest = '';
  const strip = (line: string) => (line.endsWith('\r') ? line.slice(0, -1) : line);
  for await (const chunk of chunks) {
    rest += decoder.decode(chunk, { stream: true });
    if (!rest.includes('\n')) continue;
    const lines = rest.split('\n');
    rest = lines.pop()!;
    for (const line of lines) yield strip(line);
  }
  rest += decoder.decode();
  if (rest !== '') yield strip(rest);
}

/** `files` as given, or a directory path as DirectorySavepointFiles. */
export function savepointFiles(files: string | SavepointFiles): SavepointFiles {
  return typeof files === 'string' ? new DirectorySavepointFiles(files) : files;
}
