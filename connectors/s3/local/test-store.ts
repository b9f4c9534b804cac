/**
 * The S3 store tests run against, as with-broker.ts exports it (KSTATE_TEST_S3_ENDPOINT and the AWS_*
 * variables), and the S3 client settings S3Proxy needs. Plain values: no SDK import here.
 */
import { randomBytes } from 'node:crypto';

export interface S3StoreAddress {
  /** `http://host:port`. */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;
}

/** Why S3 tests skip when there is no store; pass as `{ skip: ... }`. */
export const NO_TEST_S3 =
  'KSTATE_TEST_S3_ENDPOINT is not set: run under node scripts/kafka/with-broker.ts (npm run test:kafka), which starts S3Proxy';

/** The store with-broker.ts started (or named), or undefined outside it. */
export function testS3Store(env: NodeJS.ProcessEnv = process.env): S3StoreAddress | undefined {
  const endpoint = env.KSTATE_TEST_S3_ENDPOINT?.trim();
  if (endpoint === undefined || endpoint === '') return undefined;
  return {
    endpoint,
    accessKeyId: env.AWS_ACCESS_KEY_ID ?? '',
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? '',
    region: env.AWS_REGION ?? 'us-east-1',
  };
}

/**
 * `new S3Client(s3ClientConfig(store))` for S3Proxy: path-style addressing, and checksums only where an
 * operation requires them, because S3Proxy 2.6.0 answers 501 NotImplemented to the SDK's default flexible
 * checksums (on PUT and on GET). Note also that it ignores `If-None-Match: *` on PUT: the object is
 * overwritten (docs/kafka-harness.md, "The S3 store").
 */
export function s3ClientConfig(store: S3StoreAddress, endpoint = store.endpoint) {
  return {
    endpoint,
    region: store.region,
    forcePathStyle: true,
    credentials: { accessKeyId: store.accessKeyId, secretAccessKey: store.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  };
}

/** A bucket name no other test uses: `kstate-<label>-<time>-<random>` (S3 rules: 3-63 of a-z 0-9 -). */
export function uniqueBucketName(label: string): string {
  const clean = label
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 30);
  return `kstate-${clean || 'test'}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}
