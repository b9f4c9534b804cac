import { StreamError } from '../../framework/index.ts';

/** `s3://bucket/some/prefix` split; the prefix has no leading or trailing slash ('' for none). */
export interface S3Location {
  readonly bucket: string;
  readonly prefix: string;
}

/** Bucket names as S3 allows them (3-63 of a-z 0-9 . -, starting and ending with a letter or digit). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function isS3Uri(spec: string): boolean {
  return /^s3:\/\//i.test(spec.trim());
}

/** Parses `s3://bucket[/prefix]`; CONFIG_INVALID saying what is wrong and what a valid one looks like. */
export function parseS3Uri(uri: string, what = 'checkpoint storage'): S3Location {
  const m = /^s3:\/\/([^/]*)\/?(.*)$/i.exec(uri.trim());
  const fail = (why: string) =>
    new StreamError(
      'CONFIG_INVALID',
      `${what} ${JSON.stringify(uri)}: ${why}; want s3://<bucket>/<prefix>, e.g. s3://my-bucket/kstate/checkpoints`,
    );
  if (m === null) throw fail('not an s3:// address');
  const bucket = m[1] ?? '';
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw fail(
      `bucket ${JSON.stringify(bucket)} is not a valid S3 bucket name (3-63 characters: lower-case letters, digits, '.' and '-')`,
    );
  }
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((s) => s === '.' || s === '..') || prefix.includes('//')) {
    throw fail(`prefix ${JSON.stringify(prefix)} has an empty, '.' or '..' segment`);
  }
  return { bucket, prefix };
}
