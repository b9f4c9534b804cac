/**
 * Buckets of the test store for tests outside connectors/s3 (which import no AWS SDK: dependency
 * rules): create a fresh one, and list and read what a command wrote, behind its back.
 */
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { type S3StoreAddress, s3ClientConfig, uniqueBucketName } from '../local/test-store.ts';

/** A new, empty bucket `kstate-<label>-...` in `store`. */
export async function createTestBucket(store: S3StoreAddress, label: string): Promise<string> {
  const client = new S3Client(s3ClientConfig(store));
  try {
    const bucket = uniqueBucketName(label);
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    return bucket;
  } finally {
    client.destroy();
  }
}

/** Every key under `prefix` (keys relative to it), with its size, sorted. */
export async function listTestObjects(
  store: S3StoreAddress,
  bucket: string,
  prefix: string,
): Promise<{ key: string; bytes: number }[]> {
  const client = new S3Client(s3ClientConfig(store));
  const dir = prefix === '' ? '' : `${prefix.replace(/\/+$/, '')}/`;
  const out: { key: string; bytes: number }[] = [];
  try {
    let token: string | undefined;
    do {
      const res = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: dir,
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
      );
      for (const o of res.Contents ?? []) out.push({ key: o.Key!.slice(dir.length), bytes: o.Size ?? 0 });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
  } finally {
    client.destroy();
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The object's bytes as UTF-8 text. */
export async function readTestObject(store: S3StoreAddress, bucket: string, key: string): Promise<string> {
  const client = new S3Client(s3ClientConfig(store));
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await res.Body?.transformToString('utf-8')) ?? '';
  } finally {
    client.destroy();
  }
}
