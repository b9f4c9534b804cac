/**
 * Checkpoint storage in an S3-compatible object store (AWS S3, MinIO, Ceph, R2, GCS's S3 API,
 * S3Proxy), on the AWS SDK v3. Only the I/O is here: layout, checksums, the commit protocol,
 * retention and reference counting are BaseCheckpointStorage's, the same as for the filesystem.
 *
 * How the contract maps onto an object store:
 * - Atomic files: a PUT (or a completed multipart upload) makes an object appear whole or not at all,
 *   so there are no temporary names. A file above `partSizeBytes` is a multipart upload whose parts go
 *   up in parallel; a failed one is aborted.
 * - Never overwrite: a HEAD before the PUT, which is enough because one task's scope is written by
 *   one process at a time (the Kafka transactional id fences the others); or, with
 *   `conditionalWrites: 'on'`, a conditional PUT (`If-None-Match: *`) where the store enforces it.
 * - Durability: S3 acknowledges a PUT only once it is durable, so `_flush` has nothing to do.
 * - Integrity: every PUT carries Content-MD5 (the store refuses a body damaged in transit) and every
 *   read is checked against the SHA-256 in the metadata by the base class.
 * - The hot path lists nothing: files are read by the name the metadata gives, and retention plans
 *   from the base class's index (see BaseCheckpointStorage).
 * - Every request goes through one `Limit` of `concurrency` slots; the SDK retries 5xx, throttling
 *   and network errors with exponential backoff and jitter, `maxAttempts` times.
 * - Credentials: the SDK's default chain (environment, profile, web identity ...), unless given.
 */
import { createHash } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  BaseCheckpointStorage,
  type CreateOutcome,
  type RootPurpose,
  type StorageOptions,
  StreamError,
} from '../../framework/index.ts';
import { type S3ConnectionOptions, s3Connection } from './client.ts';
import { isNotFound, nameOf, s3Error, statusOf } from './errors.ts';
import { Limit } from './limit.ts';
import { parseS3Uri } from './uri.ts';

const _MIB = 1024 * 1024;

export interface S3StorageOptions extends StorageOptions, S3ConnectionOptions {
  readonly bucket: string;
  /** Key prefix: objects are `<prefix>/<jobId>/<taskId>/...`. Default: none. */
  readonly prefix?: string;
  /**
   * 'on': never-overwrite by conditional PUTs (`If-None-Match: *`), one request instead of a HEAD and a
   * PUT; for stores that enforce them (AWS S3 since 2024). 'off' (default): a HEAD before each PUT.
   * Not the default because some S3-compatible stores accept the header and ignore it (S3Proxy 2.6.0
   * overwrites; seen in connectors/s3/test/s3-storage.test.ts), which would void the guarantee.
   * With 'on', a store that answers 501 to it falls back to HEAD + PUT.
   */
  readonly conditionalWrites?: 'on' | 'off';
  /**
   * What a failed request leaves, ending its error message. Default: that the checkpoint is not
   * committed and the task goes on from the last good one (a running job); the offline commands,
   * which commit nothing, say so instead.
   */
  readonly errorOutcome?: string;
}

/** Request counts by kind, for tests and the benchmark (no listing on the hot path is checked by them). */
export interface S3RequestCounts {
  put: number;
  get: number;
  head: number;
  delete: number;
  list: number;
  multipart: number;
}

export class S3CheckpointStorage extends BaseCheckpointStorage {
  readonly kind = 's3';
  readonly bucket: string;
  readonly prefix: string;
  /** Where requests go, for messages: the endpoint, or "AWS S3 (<region>)". */
  readonly endpoint: string;
  readonly partSizeBytes: number;
  readonly requests: S3RequestCounts = { put: 0, get: 0, head: 0, delete: 0, list: 0, multipart: 0 };
  readonly #client: S3Client;
  readonly #ownsClient: boolean;
  readonly #limit: Limit;
  #conditional: boolean;
  /** A successful bucket check, kept; a failed one is not (the next call asks again). */
  #bucketChecked: Promise<void> | undefined;
  readonly #outcome: { readonly outcome?: string };

  /** `s3://bucket/prefix` plus the other options. */
  static fromUri(
    uri: string,
    options: Omit<S3StorageOptions, 'bucket' | 'prefix'> = {},
  ): S3CheckpointStorage {
    const { bucket, prefix } = parseS3Uri(uri);
    return new S3CheckpointStorage({ ...options, bucket, prefix });
  }

  constructor(options: S3StorageOptions) {
    super(options);
    const location = parseS3Uri(`s3://${options?.bucket ?? ''}/${options?.prefix ?? ''}`);
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    const c = s3Connection(options, 'S3 checkpoint storage');
    this.partSizeBytes = c.partSizeBytes;
    this.endpoint = c.endpoint;
    this.#limit = new Limit(c.concurrency);
    this.#conditional = options.conditionalWrites === 'on';
    this.#outcome = options.errorOutcome === undefined ? {} : { outcome: options.errorOutcome };
    this.#ownsClient = c.ownsClient;
    this.#client = c.client;
  }

  /**
   * Checks that the bucket exists and the credentials may use it: call at start, so a missing bucket
   * (CHECKPOINT_NOT_FOUND) or refused credentials (CHECKPOINT_STORAGE_DENIED) stop the service before
   * it joins the group, with what to do. An unreachable endpoint is CHECKPOINT_STORAGE_FAILED.
   */
  async check(): Promise<void> {
    this.#bucketChecked = undefined;
    await this.#checkBucket(START_OUTCOME);
  }

  /** Releases the client's connections (when the storage made the client). */
  close(): void {
    if (this.#ownsClient) this.#client.destroy();
  }

  /** `s3://bucket/<key>` of a storage path. */
  uriOf(path: string): string {
    return `s3://${this.bucket}/${this.#key(path)}`;
  }

  // ---- primitives -------------------------------------------------------------------------------

  protected async _create(
    path: string,
    bytes: Uint8Array,
    options: { readonly durable: boolean; readonly replaceIf?: () => Promise<boolean> },
  ): Promise<CreateOutcome> {
    const key = this.#key(path);
    const op = `write ${this.uriOf(path)}`;
    const large = bytes.byteLength > this.partSizeBytes;
    if (this.#conditional && !large) {
      const created = await this.#putIfAbsent(key, bytes, op);
      if (created !== undefined) {
        if (created) return 'created';
        if (options.replaceIf !== undefined && (await options.replaceIf())) {
          await this.#put(key, bytes, op);
          return 'replaced';
        }
        return 'exists';
      }
      // undefined: the store does not do conditional PUTs; ask with a HEAD below.
    }
    const exists = (await this._size(path)) !== undefined;
    if (exists && !(options.replaceIf !== undefined && (await options.replaceIf()))) return 'exists';
    if (large) await this.#multipart(key, bytes, op);
    else await this.#put(key, bytes, op);
    return exists ? 'replaced' : 'created';
  }

  protected async _read(path: string): Promise<Uint8Array | undefined> {
    const key = this.#key(path);
    const op = `read ${this.uriOf(path)}`;
    const part = this.partSizeBytes;
    let first: Fetched;
    try {
      first = await this.#get(key, op, `bytes=0-${part - 1}`, (e) => isNotFound(e) || isRangeError(e));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      // An empty object has no byte 0: stores answer 416 to any range.
      if (isRangeError(e)) {
        try {
          return (await this.#get(key, op, undefined, isNotFound)).bytes;
        } catch (again) {
          if (isNotFound(again)) return undefined;
          throw again;
        }
      }
      throw e;
    }
    const total = totalOf(first.contentRange) ?? first.bytes.byteLength;
    if (total <= first.bytes.byteLength) return first.bytes;
    // The rest in parts, in parallel (bounded by the limit). The ETag pins the version read.
    const out = new Uint8Array(total);
    out.set(first.bytes, 0);
    const ranges: [number, number][] = [];
    for (let start = first.bytes.byteLength; start < total; start += part)
      ranges.push([start, Math.min(total, start + part) - 1]);
    await Promise.all(
      ranges.map(async ([start, end]) => {
        let got: Fetched;
        try {
          got = await this.#get(
            key,
            op,
            `bytes=${start}-${end}`,
            (e) => isNotFound(e) || isChanged(e),
            first.etag,
          );
        } catch (e) {
          if (isNotFound(e)) {
            throw new StreamError(
              'CHECKPOINT_NOT_FOUND',
              `cannot ${op}: the object was deleted while it was read`,
              {
                cause: e,
              },
            );
          }
          if (isChanged(e)) {
            throw new StreamError(
              'CHECKPOINT_STORAGE_FAILED',
              `cannot ${op}: the object was replaced while it was read (its ETag changed); retry the restore`,
              { cause: e },
            );
          }
          throw e;
        }
        if (got.bytes.byteLength !== end - start + 1) {
          throw new StreamError(
            'CHECKPOINT_STORAGE_FAILED',
            `cannot ${op}: bytes ${start}-${end} came back as ${got.bytes.byteLength} bytes; retry the restore`,
          );
        }
        out.set(got.bytes, start);
      }),
    );
    return out;
  }

  protected async _size(path: string): Promise<number | undefined> {
    const op = `inspect ${this.uriOf(path)}`;
    try {
      const res = await this.#send(
        'head',
        op,
        () => this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(path) })),
        isNotFound,
      );
      return res.ContentLength ?? 0;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  protected async _delete(path: string): Promise<void> {
    // S3 answers 204 to deleting a missing key: no special case.
    await this.#send('delete', `delete ${this.uriOf(path)}`, () =>
      this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(path) })),
    );
  }

  protected async _list(dir: string): Promise<string[]> {
    return (await this.#listing(dir)).files;
  }

  protected async _listDirs(dir: string): Promise<string[]> {
    return (await this.#listing(dir)).dirs;
  }

  protected async _flush(_dir: string): Promise<void> {}

  protected async _root(_purpose: RootPurpose): Promise<boolean> {
    await this.#checkBucket();
    return true;
  }

  protected _describe(path: string): string {
    return this.uriOf(path);
  }

  // ---- internals ---------------------------------------------------------------------------------

  #key(path: string): string {
    return this.prefix === '' ? path : path === '' ? this.prefix : `${this.prefix}/${path}`;
  }

  /**
   * One request through the limit, counted; SDK errors become StreamErrors naming `op`, except those
   * `pass` selects: the answers the caller handles itself (a missing key, a failed precondition).
   */
  async #send<T>(
    kind: keyof S3RequestCounts,
    op: string,
    request: () => Promise<T>,
    pass: (e: unknown) => boolean = () => false,
  ): Promise<T> {
    return this.#limit.run(async () => {
      this.requests[kind]++;
      try {
        return await request();
      } catch (e) {
        if (pass(e)) throw e;
        throw s3Error(e, { op, bucket: this.bucket, endpoint: this.endpoint, ...this.#outcome });
      }
    });
  }

  /** A GET (of `range`), its body read inside the limit, so `concurrency` bounds downloads too. */
  #get(
    key: string,
    op: string,
    range: string | undefined,
    pass: (e: unknown) => boolean,
    ifMatch?: string,
  ): Promise<Fetched> {
    return this.#send(
      'get',
      op,
      async () => {
        const res = await this.#client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: key,
            ...(range === undefined ? {} : { Range: range }),
            ...(ifMatch === undefined ? {} : { IfMatch: ifMatch }),
          }),
        );
        const body = res.Body === undefined ? new Uint8Array(0) : await res.Body.transformToByteArray();
        return {
          bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength),
          contentRange: res.ContentRange,
          etag: res.ETag,
        };
      },
      pass,
    );
  }

  /**
   * Checks that the bucket exists and the credentials may list the prefix: a one-key listing of the
   * prefix, not HeadBucket, which needs s3:ListBucket on the whole bucket (a policy that grants it
   * only under the prefix is common, and every request kstate makes would be allowed).
   */
  #checkBucket(outcome?: string): Promise<void> {
    const op = `check bucket "${this.bucket}"`;
    this.#bucketChecked ??= this.#send('list', op, () =>
      this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.prefix === '' ? '' : `${this.prefix}/`,
          MaxKeys: 1,
        }),
      ),
    ).then(
      () => {},
      (e: unknown) => {
        this.#bucketChecked = undefined;
        throw s3Error(e, {
          op,
          bucket: this.bucket,
          endpoint: this.endpoint,
          ...(outcome === undefined ? this.#outcome : { outcome }),
        });
      },
    );
    return this.#bucketChecked;
  }

  async #put(key: string, bytes: Uint8Array, op: string): Promise<void> {
    await this.#send('put', op, () =>
      this.#client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: bytes,
          ContentMD5: md5(bytes),
          ContentLength: bytes.byteLength,
        }),
      ),
    );
  }

  /** true: created; false: the key exists; undefined: the store does not support conditional PUTs. */
  async #putIfAbsent(key: string, bytes: Uint8Array, op: string): Promise<boolean | undefined> {
    try {
      await this.#send(
        'put',
        op,
        () =>
          this.#client.send(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: key,
              Body: bytes,
              ContentMD5: md5(bytes),
              ContentLength: bytes.byteLength,
              IfNoneMatch: '*',
            }),
          ),
        (e) => [409, 412, 501].includes(statusOf(e) ?? 0) || nameOf(e) === 'NotImplemented',
      );
      return true;
    } catch (e) {
      const status = statusOf(e);
      if (status === 412 || nameOf(e) === 'PreconditionFailed') return false;
      // 409 ConditionalRequestConflict: a concurrent conditional write of the key is in progress.
      if (status === 409 && nameOf(e) === 'ConditionalRequestConflict') return false;
      if (status === 501 || nameOf(e) === 'NotImplemented') {
        this.#conditional = false;
        return undefined;
      }
      throw s3Error(e, { op, bucket: this.bucket, endpoint: this.endpoint, ...this.#outcome });
    }
  }

  /** A multipart upload of `bytes` in parts of `partSizeBytes`, uploaded in parallel; aborted on failure. */
  async #multipart(key: string, bytes: Uint8Array, op: string): Promise<void> {
    const created = await this.#send('multipart', op, () =>
      this.#client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key })),
    );
    const uploadId = created.UploadId;
    if (uploadId === undefined) {
      throw new StreamError(
        'CHECKPOINT_STORAGE_FAILED',
        `cannot ${op}: the store started a multipart upload without an UploadId`,
      );
    }
    try {
      const size = this.partSizeBytes;
      const count = Math.ceil(bytes.byteLength / size);
      // Once a part fails, parts not yet started are skipped (not sent only to be aborted), and the
      // abort waits until every started part has settled (AWS may keep a part still uploading).
      let failed = false;
      const settled = await Promise.allSettled(
        Array.from({ length: count }, async (_, i) => {
          const body = bytes.subarray(i * size, Math.min(bytes.byteLength, (i + 1) * size));
          const res = await this.#send(
            'multipart',
            op,
            () => {
              if (failed) return Promise.reject(SKIPPED);
              return this.#client.send(
                new UploadPartCommand({
                  Bucket: this.bucket,
                  Key: key,
                  UploadId: uploadId,
                  PartNumber: i + 1,
                  Body: body,
                  ContentMD5: md5(body),
                  ContentLength: body.byteLength,
                }),
              );
            },
            (e) => e === SKIPPED,
          ).catch((e: unknown) => {
            failed = true;
            throw e;
          });
          return { PartNumber: i + 1, ETag: res.ETag };
        }),
      );
      const error = settled.find((r) => r.status === 'rejected' && r.reason !== SKIPPED);
      if (error !== undefined) throw (error as PromiseRejectedResult).reason;
      const parts = settled.map(
        (r) => (r as PromiseFulfilledResult<{ PartNumber: number; ETag?: string }>).value,
      );
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
    } catch (e) {
      // Best effort: an upload left open costs storage until the bucket's lifecycle rule removes it
      // (docs/checkpoint-storage.md recommends AbortIncompleteMultipartUpload); it is never visible.
      await this.#send('multipart', op, () =>
        this.#client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
        ),
      ).catch(() => {});
      throw e;
    }
  }

  /** Objects and common prefixes directly under `dir`, every page. */
  async #listing(dir: string): Promise<{ files: string[]; dirs: string[] }> {
    const base = this.#key(dir);
    const prefix = base === '' ? '' : `${base}/`;
    const files: string[] = [];
    const dirs: string[] = [];
    let token: string | undefined;
    do {
      const res = await this.#send('list', `list ${`s3://${this.bucket}/${prefix}`}`, () =>
        this.#client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            Delimiter: '/',
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        ),
      );
      for (const o of res.Contents ?? []) if (o.Key !== undefined) files.push(o.Key.slice(prefix.length));
      for (const p of res.CommonPrefixes ?? []) {
        if (p.Prefix !== undefined) dirs.push(p.Prefix.slice(prefix.length).replace(/\/$/, ''));
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return { files: files.filter((f) => f !== ''), dirs: dirs.filter((d) => d !== '') };
  }
}

/** A GET's body and what the ranged read needs of its headers. */
interface Fetched {
  readonly bytes: Uint8Array;
  readonly contentRange: string | undefined;
  readonly etag: string | undefined;
}

/** How a failed start check ends its message. */
const START_OUTCOME = 'Nothing was started and nothing committed is affected.';

/** The rejection of a part not sent because another part had failed. */
const SKIPPED = Symbol('skipped');

function isRangeError(e: unknown): boolean {
  return statusOf(e) === 416 || nameOf(e) === 'InvalidRange';
}

/** A failed If-Match: the object changed between two ranged reads. */
function isChanged(e: unknown): boolean {
  return statusOf(e) === 412 || nameOf(e) === 'PreconditionFailed';
}

function md5(bytes: Uint8Array): string {
  return createHash('md5').update(bytes).digest('base64');
}

/** The total size from `Content-Range: bytes 0-99/1234`. */
function totalOf(contentRange: string | undefined): number | undefined {
  const m = contentRange === undefined ? null : /\/(\d+)\s*$/.exec(contentRange);
  return m === null ? undefined : Number(m[1]);
}
