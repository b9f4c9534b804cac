/**
 * S3CheckpointStorage's own logic against a scripted client (no server): errors of the ranged read,
 * the bound on downloads, multipart that stops at the first failed part, a 501 that must not escape
 * raw. Each failed on 7209001; found by review. The store itself is tested in s3-storage.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { S3Client } from '@aws-sdk/client-s3';
import { isStreamError } from '../../../framework/index.ts';
import { S3CheckpointStorage } from '../s3-storage.ts';

const MIB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sdkError = (name: string, status: number) =>
  Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status, attempts: 1 } });

class Exposed extends S3CheckpointStorage {
  read(path: string) {
    return this._read(path);
  }
  create(path: string, bytes: Uint8Array) {
    return this._create(path, bytes, { durable: false });
  }
}

// biome-ignore lint/suspicious/noExplicitAny: a scripted client answers whatever a command asks
type Input = any;
function fakeClient(handler: (name: string, input: Input) => Promise<unknown>): S3Client {
  const send = (cmd: { constructor: { name: string }; input: Input }) =>
    handler(cmd.constructor.name, cmd.input);
  return { send, destroy() {} } as unknown as S3Client;
}

test('a ranged read whose later part 404s (object deleted mid-read) is CHECKPOINT_NOT_FOUND, not a raw SDK error', async () => {
  const size = 12 * MIB;
  let gets = 0;
  const client = fakeClient(async (name, input) => {
    if (name === 'HeadBucketCommand') return {};
    if (name === 'GetObjectCommand') {
      gets++;
      if (input.Range === `bytes=0-${5 * MIB - 1}`)
        return {
          ETag: '"e"',
          ContentRange: `bytes 0-${5 * MIB - 1}/${size}`,
          Body: { transformToByteArray: async () => new Uint8Array(5 * MIB) },
        };
      throw sdkError('NoSuchKey', 404);
    }
    throw new Error(`unexpected ${name}`);
  });
  const s = new Exposed({ bucket: 'bkt', client, partSizeBytes: 5 * MIB });
  const e = await s.read('j/t/files/1-x').catch((x: unknown) => x);
  assert.ok(isStreamError(e, 'CHECKPOINT_NOT_FOUND'), `got ${String(e)}`);
  assert.ok(gets >= 2, `the 404 came from a later part, after the first was read (${gets} GETs)`);
});

test('concurrency bounds downloads: bodies are read inside the limit', async () => {
  const size = 20 * MIB;
  let open = 0,
    maxOpen = 0;
  const client = fakeClient(async (name, input) => {
    if (name !== 'GetObjectCommand') return {};
    const [a, b] = input.Range.slice(6).split('-').map(Number);
    return {
      ETag: '"e"',
      ContentRange: `bytes ${a}-${b}/${size}`,
      Body: {
        transformToByteArray: async () => {
          open++;
          maxOpen = Math.max(maxOpen, open);
          await sleep(50);
          open--;
          return new Uint8Array(b - a + 1);
        },
      },
    };
  });
  const s = new Exposed({ bucket: 'bkt', client, partSizeBytes: 5 * MIB, concurrency: 1 });
  await s.read('j/t/files/1-x');
  assert.equal(maxOpen, 1);
});

test('multipart stops at the first failed part: queued parts are not sent, then the upload is aborted', async () => {
  const sent: string[] = [];
  const client = fakeClient(async (name, input) => {
    if (name === 'HeadObjectCommand') throw sdkError('NotFound', 404);
    if (name === 'HeadBucketCommand') return {};
    if (name === 'CreateMultipartUploadCommand') return { UploadId: 'u' };
    if (name === 'UploadPartCommand') {
      sent.push(`part${input.PartNumber}`);
      await sleep(10);
      if (input.PartNumber === 1) throw sdkError('InternalError', 500);
      return { ETag: `"p${input.PartNumber}"` };
    }
    if (name === 'AbortMultipartUploadCommand') {
      sent.push('abort');
      return {};
    }
    return {};
  });
  const s = new Exposed({ bucket: 'bkt', client, partSizeBytes: 5 * MIB, concurrency: 2 });
  await assert.rejects(s.create('j/t/files/1-x', new Uint8Array(40 * MIB)));
  assert.ok(sent.indexOf('abort') < 4, 'parts kept going after the failure');
});

test('a bucket deleted after the start check: the PUT says the bucket is missing', async () => {
  const client = fakeClient(async (name) => {
    if (name === 'HeadBucketCommand') return {};
    if (name === 'HeadObjectCommand') throw sdkError('NotFound', 404); // HEAD has no body: S3 cannot say NoSuchBucket
    if (name === 'PutObjectCommand') throw sdkError('NoSuchBucket', 404);
    return {};
  });
  const s = new Exposed({ bucket: 'bkt', client });
  const e = (await s.create('j/t/files/1-x', new Uint8Array(3)).catch((x: unknown) => x)) as {
    code?: string;
    message?: string;
  };
  assert.equal(e.code, 'CHECKPOINT_NOT_FOUND');
  assert.match(String(e.message), /bucket "bkt" does not exist/);
});

test('a 501 on a plain PUT is a StreamError', async () => {
  const client = fakeClient(async (name) => {
    if (name === 'HeadBucketCommand') return {};
    if (name === 'HeadObjectCommand') throw sdkError('NotFound', 404);
    if (name === 'PutObjectCommand') throw sdkError('NotImplemented', 501);
    return {};
  });
  const s = new Exposed({ bucket: 'bkt', client });
  const e = await s.create('j/t/files/1-x', new Uint8Array(3)).catch((x: unknown) => x);
  assert.ok(isStreamError(e));
});
