/**
 * The one place an S3 client is built, so the checkpoint storage (s3-storage.ts) and savepoint exports
 * (savepoint-files.ts) talk to a store with the same settings: region, endpoint and path style,
 * credentials (the SDK's default chain unless given), standard retries, timeouts, and checksums only
 * where an operation requires them.
 */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export interface S3ClientSettings {
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

export function newS3Client(s: S3ClientSettings): S3Client {
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
