/**
 * Savepoint exports in an S3-compatible object store: the `SavepointFiles` of kstate's framework
 * (framework/savepoint/files.ts) over a prefix, `s3://bucket/prefix/<operator>/<state>.ndjson` and
 * `.../savepoint.json`, so `kstate savepoint export --out s3://...` and `import --from s3://...` run the
 * same export and import code as for a directory.
 *
 * - A file is written as it is produced: up to one part in memory per slot of `concurrency`. A file
 *   smaller than `partSizeBytes` is one PUT; a larger one a multipart upload whose parts go up while
 *   the next is produced, completed at the end and aborted on any failure, so an object appears whole
 *   or not at all. A file that exists already is refused (a HEAD first), never replaced.
 * - A file is read as a stream (`readLines`): a large export is never whole in memory.
 * - The client is built as the checkpoint storage's (client.ts: region, endpoint, path style, the SDK's
 *   default credential chain, retries, timeouts); errors are the storage's catalogued ones (errors.ts),
 *   naming the setting that gave the location (`--out`, `--from`).
 */
import { createHash } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { type SavepointFiles, StreamError, textLines } from '../../framework/index.ts';
import { type S3ConnectionOptions, s3Connection } from './client.ts';
import { isNotFound, s3Error } from './errors.ts';
import { parseS3Uri } from './uri.ts';

const _MIB = 1024 * 1024;

export interface S3SavepointFilesOptions extends S3ConnectionOptions {
  /** What named the location, for messages: e.g. "--out". Default: "the s3:// address". */
  readonly setting?: string;
  /** What a failed request leaves, ending its error message. Default: run the command again. */
  readonly errorOutcome?: string;
}

/** Request counts, for tests (a large file must be a multipart upload). */
export interface S3SavepointFilesCounts {
  put: number;
  get: number;
  head: number;
  list: number;
  multipart: number;
}

export class S3SavepointFiles implements SavepointFiles {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly partSizeBytes: number;
  readonly requests: S3SavepointFilesCounts = { put: 0, get: 0, head: 0, list: 0, multipart: 0 };
  readonly #client: S3Client;
  readonly #ownsClient: boolean;
  readonly #concurrency: number;
  readonly #endpoint: string;
  readonly #setting: string;
  readonly #outcome: string;

  /** `s3://bucket/prefix`; a malformed address is CONFIG_INVALID naming `options.setting`. */
  static fromUri(uri: string, options: S3SavepointFilesOptions = {}): S3SavepointFiles {
    return new S3SavepointFiles(uri, options);
  }

  constructor(uri: string, options: S3SavepointFilesOptions = {}) {
    this.#setting = options.setting ?? 'the s3:// address';
    this.#outcome = options.errorOutcome ?? 'Run the command again once the store answers.';
    const { bucket, prefix } = parseS3Uri(uri, this.#setting);
    this.bucket = bucket;
    this.prefix = prefix;
    this.location = `s3://${bucket}${prefix === '' ? '' : `/${prefix}`}`;
    const c = s3Connection(options, 'S3 savepoint files');
    this.#concurrency = c.concurrency;
    this.partSizeBytes = c.partSizeBytes;
    this.#endpoint = c.endpoint;
    this.#ownsClient = c.ownsClient;
    this.#client = c.client;
  }

  describe(file: string): string {
    return `s3://${this.bucket}/${this.#key(file)}`;
  }

  close(): void {
    if (this.#ownsClient) this.#client.destroy();
  }

  async isEmpty(): Promise<boolean> {
    const res = await this.#send('list', `list ${this.location}`, () =>
      this.#client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.#dir(), MaxKeys: 1 })),
    );
    return (res.Contents ?? []).length === 0;
  }

  async list(): Promise<string[]> {
    const dir = this.#dir();
    const out: string[] = [];
    let token: string | undefined;
    do {
      const res = await this.#send('list', `list ${this.location}`, () =>
        this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: dir,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        ),
      );
      for (const o of res.Contents ?? []) {
        const name = o.Key?.slice(dir.length);
        if (name !== undefined && name !== '' && !name.endsWith('/')) out.push(name);
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out.sort();
  }

  async readText(file: string): Promise<string | undefined> {
    const op = `read ${this.describe(file)}`;
    try {
      const res = await this.#send('get', op, () =>
        this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(file) })),
      );
      return (await res.Body?.transformToString('utf-8')) ?? '';
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.#error(e, op);
    }
  }

  async *readLines(file: string): AsyncGenerator<string> {
    const op = `read ${this.describe(file)}`;
    let body: AsyncIterable<Uint8Array>;
    try {
      const res = await this.#send('get', op, () =>
        this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(file) })),
      );
      body = (res.Body as AsyncIterable<Uint8Array> | undefined) ?? (async function* () {})();
    } catch (e) {
      if (isNotFound(e))
        throw new StreamError('CHECKPOINT_NOT_FOUND', `cannot ${op}: it does not exist`, { cause: e });
      throw this.#error(e, op);
    }
    try {
      yield* textLines(body);
    } catch (e) {
      // The connection broke while the body streamed.
      throw this.#error(e, op);
    } finally {
      // A reader that stops early (a bad row) leaves the rest unread: close the connection.
      (body as { destroy?: () => void }).destroy?.();
    }
  }

  async write(file: string, chunks: AsyncIterable<string> | Iterable<string>): Promise<void> {
    const key = this.#key(file);
    const op = `write ${this.describe(file)}`;
    if (await this.#exists(key, op)) {
      throw new StreamError(
        'CONFIG_INVALID',
        `cannot ${op}: it exists already; export into an unused prefix (nothing is replaced)`,
      );
    }
    const size = this.partSizeBytes;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let upload: Multipart | undefined;
    try {
      for await (const chunk of chunks) {
        const b = Buffer.from(chunk, 'utf8');
        pending.push(b);
        pendingBytes += b.byteLength;
        while (pendingBytes >= size) {
          const all = Buffer.concat(pending);
          pending = [all.subarray(size)];
          pendingBytes = all.byteLength - size;
          upload ??= await this.#startMultipart(key, op);
          await upload.add(all.subarray(0, size));
        }
      }
      const rest = Buffer.concat(pending);
      if (upload === undefined) {
        await this.#send('put', op, () =>
          this.#client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: key,
              Body: rest,
              ContentMD5: md5(rest),
              ContentLength: rest.byteLength,
            }),
          ),
        );
        return;
      }
      if (rest.byteLength > 0) await upload.add(rest);
      await upload.complete();
    } catch (e) {
      // Requests failed as StreamErrors (#send); anything else is the chunks' own failure.
      await upload?.abort();
      throw e;
    }
  }

  // ---- internals ---------------------------------------------------------------------------------

  #key(file: string): string {
    return this.prefix === '' ? file : `${this.prefix}/${file}`;
  }

  #dir(): string {
    return this.prefix === '' ? '' : `${this.prefix}/`;
  }

  #error(e: unknown, op: string): StreamError {
    return s3Error(e, {
      op,
      bucket: this.bucket,
      endpoint: this.#endpoint,
      setting: this.#setting,
      outcome: this.#outcome,
    });
  }

  /** One request, counted; SDK errors other than "no such key" become StreamErrors naming `op`. */
  async #send<T>(kind: keyof S3SavepointFilesCounts, op: string, request: () => Promise<T>): Promise<T> {
    this.requests[kind]++;
    try {
      return await request();
    } catch (e) {
      if (isNotFound(e)) throw e;
      throw this.#error(e, op);
    }
  }

  async #exists(key: string, op: string): Promise<boolean> {
    try {
      await this.#send('head', op, () =>
        this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })),
      );
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  /** A multipart upload: `add` sends parts in order of their numbers, at most `concurrency` in flight. */
  async #startMultipart(key: string, op: string): Promise<Multipart> {
    const created = await this.#send('multipart', op, () =>
      this.#client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key })),
    );
    const uploadId = created.UploadId;
    if (uploadId === undefined)
      throw new StreamError(
        'CHECKPOINT_STORAGE_FAILED',
        `cannot ${op}: the store started a multipart upload without an UploadId`,
      );
    const parts: { PartNumber: number; ETag: string | undefined }[] = [];
    const inFlight = new Set<Promise<void>>();
    let failed: unknown;
    const settle = async () => {
      await Promise.allSettled([...inFlight]);
      if (failed !== undefined) throw failed;
    };
    return {
      add: async (body: Buffer) => {
        if (failed !== undefined) throw failed;
        while (inFlight.size >= this.#concurrency) await Promise.race(inFlight);
        if (failed !== undefined) throw failed;
        const n = parts.length + 1;
        parts.push({ PartNumber: n, ETag: undefined });
        const p: Promise<void> = this.#send('multipart', op, () =>
          this.#client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: n,
              Body: body,
              ContentMD5: md5(body),
              ContentLength: body.byteLength,
            }),
          ),
        ).then(
          (res) => {
            parts[n - 1]!.ETag = res.ETag;
            inFlight.delete(p);
          },
          (e: unknown) => {
            failed ??= e;
            inFlight.delete(p);
          },
        );
        inFlight.add(p);
      },
      complete: async () => {
        await settle();
        await this.#send('multipart', op, () =>
          this.#client.send(
            new CompleteMultipartUploadCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              MultipartUpload: { Parts: parts },
            }),
          ),
        );
      },
      abort: async () => {
        await Promise.allSettled([...inFlight]);
        // Best effort: an upload left open is never visible, and a lifecycle rule removes it.
        await this.#send('multipart', op, () =>
          this.#client.send(
            new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
          ),
        ).catch(() => {});
      },
    };
  }
}

interface Multipart {
  add(body: Buffer): Promise<void>;
  complete(): Promise<void>;
  abort(): Promise<void>;
}

function md5(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('base64');
}
