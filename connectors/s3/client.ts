/**
 * The one place an S3 client is built, so the checkpoint storage (s3-storage.ts) and savepoint exports
 * (savepoint-files.ts) talk to a store with the same settings: region, endpoint and path style,
 * credentials (the SDK's default chain unless given), standard retries, timeouts, and checksums only
 * where an operation requires them.
 */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { StreamError } from '../../framework/index.ts';

const MIB = 1024 * 1024;

/** How to reach a store and how hard to push it: the options every S3 user here takes. */
export interface S3ConnectionOptions {
  /** `http(s)://host:port` of a non-AWS store (S3Proxy, MinIO, Ceph, R2 ...). Default: AWS S3. */
  readonly endpoint?: string;
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
  readonly region?: string;
  /** Path-style addressing (`endpoint/bucket/key`). Default: true when `endpoint` is set. */
  readonly forcePathStyle?: boolean;
  /** Default: the AWS SDK's default credential chain. */
  readonly credentials?: S3ClientConfig['credentials'];
  /** Requests in flight at once (part uploads, ranged reads, whole files). Default 8. */
  readonly concurrency?: number;
  /** Files above this size are uploaded and downloaded in parts of this size. Default 8 MiB, at least 5 MiB. */
  readonly partSizeBytes?: number;
  /** Attempts per request, with backoff, on 5xx, throttling and network errors. Default 6. */
  readonly maxAttempts?: number;
  /** Time for one request to answer before it counts as failed (and is retried). Default 30 s. */
  readonly requestTimeoutMs?: number;
  /** A client to use instead of one built from the options above (its settings then apply). */
  readonly client?: S3Client;
}

/** The options, checked and resolved, with the client. */
export interface S3Connection {
  readonly client: S3Client;
  /** Whether the client was made here (and `close` should destroy it). */
  readonly ownsClient: boolean;
  /** Where requests go, for messages: the endpoint, or "AWS S3 (<region>)". */
  readonly endpoint: string;
  readonly concurrency: number;
  readonly partSizeBytes: number;
}

/** Checks `o` (CONFIG_INVALID naming `what` and the option) and makes the client. */
export function s3Connection(o: S3ConnectionOptions, what: string): S3Connection {
  const invalid = (why: string) => new StreamError('CONFIG_INVALID', `${what}: ${why}`);
  const int = (name: string, v: number | undefined, dflt: number, min: number): number => {
    const n = v ?? dflt;
    if (!Number.isSafeInteger(n) || n < min)
      throw invalid(`${name} must be an integer >= ${min}, got ${String(v)}`);
    return n;
  };
  const concurrency = int('concurrency', o.concurrency, 8, 1);
  const partSizeBytes = int('partSizeBytes', o.partSizeBytes, 8 * MIB, 5 * MIB);
  const maxAttempts = int('maxAttempts', o.maxAttempts, 6, 1);
  const requestTimeoutMs = int('requestTimeoutMs', o.requestTimeoutMs, 30_000, 1);
  if (o.endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(o.endpoint);
    } catch {}
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw invalid(
        `endpoint ${JSON.stringify(o.endpoint)} is not an http(s):// URL (e.g. http://127.0.0.1:9000)`,
      );
    }
  }
  const region = s3Region(o.region);
  return {
    client:
      o.client ??
      newS3Client({
        region,
        endpoint: o.endpoint,
        forcePathStyle: o.forcePathStyle,
        credentials: o.credentials,
        maxAttempts,
        requestTimeoutMs,
      }),
    ownsClient: o.client === undefined,
    endpoint: o.endpoint ?? `AWS S3 (${region})`,
    concurrency,
    partSizeBytes,
  };
}

interface S3ClientSettings {
  /** Resolved already (see `s3Region`). */
  readonly region: string;
  /** `http(s)://host:port` of a non-AWS store; undefined: AWS S3. */
  readonly endpoint: string | undefined;
  /** Default: true when `endpoint` is set. */
  readonly forcePathStyle: boolean | undefined;
  /** Default: the AWS SDK's default credential chain. */
  readonly credentials: S3ClientConfig['credentials'] | undefined;
  readonly maxAttempts: number;
  readonly requestTimeoutMs: number;
}

/** The region: as given, else AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
export function s3Region(region: string | undefined): string {
  return region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
}

function newS3Client(s: S3ClientSettings): S3Client {
  return new S3Client({
    region: s.region,
    ...(s.endpoint === undefined ? {} : { endpoint: s.endpoint }),
    forcePathStyle: s.forcePathStyle ?? s.endpoint !== undefined,
    ...(s.credentials === undefined ? {} : { credentials: s.credentials }),
    maxAttempts: s.maxAttempts,
    retryMode: 'standard',
    // Our own checksums (Content-MD5 up, SHA-256 in the metadata down) cover integrity; the SDK's
    // newer default checksum headers are refused by several S3-compatible stores.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      requestTimeout: s.requestTimeoutMs,
      connectionTimeout: Math.min(s.requestTimeoutMs, 10_000),
    },
  });
}
