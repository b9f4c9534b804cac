/**
 * S3CheckpointStorage against a real S3 server (S3Proxy, started by scripts/kafka/with-broker.ts:
 * KSTATE_TEST_S3_ENDPOINT and AWS_* credentials). The storage conformance suite every storage passes,
 * then what an object store adds: multipart and ranged reads, no listing on the hot path, and the
 * errors of a missing bucket, refused credentials and an unreachable endpoint.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import {
  bytesOf,
  checkpointMeta,
  rejectsWith,
  storageConformance,
} from '../../../framework/testing/index.ts';
import { S3CheckpointStorage, type S3StorageOptions } from '../s3-storage.ts';

const endpoint = process.env.KSTATE_TEST_S3_ENDPOINT;
const skip =
  endpoint === undefined
    ? 'KSTATE_TEST_S3_ENDPOINT is not set (run under scripts/kafka/with-broker.ts)'
    : false;
const SCOPE = { jobId: 'job', taskId: 's0-p0' };
const MIB = 1024 * 1024;

/** A client of the test store, for setting up and for reading behind the storage's back. */
function rawClient(): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

let bucketSeq = 0;
/** A new, empty bucket for one test. */
async function freshBucket(client: S3Client): Promise<string> {
  const bucket = `kstate-${process.pid}-${Date.now().toString(36)}-${bucketSeq++}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

async function keys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (res.Contents ?? []).map((o) => o.Key ?? '').sort();
}

describe('S3 checkpoint storage', { skip }, () => {
  const client = rawClient();
  after(() => client.destroy());
  const open = async (o: Partial<S3StorageOptions> = {}) => {
    const bucket = await freshBucket(client);
    const storage = new S3CheckpointStorage({ bucket, prefix: 'ck', endpoint, ...o });
    return { storage, bucket };
  };

  describe('conformance', () => {
    let bucket = '';
    before(async () => {
      bucket = await freshBucket(client);
    });
    let n = 0;
    storageConformance('s3 (S3Proxy)', async ({ retain }) => {
      // Every storage under test gets its own prefix of one bucket: fresh and empty.
      const prefix = `conformance/${n++}`;
      const storage = new S3CheckpointStorage({ bucket, prefix, endpoint, retain });
      const rewrite = async (path: string, change: (b: Uint8Array) => Uint8Array) => {
        const key = `${prefix}/${path}`;
        const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        const bytes = change(await got.Body!.transformToByteArray());
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
      };
      return {
        storage,
        corrupt: (path) =>
          rewrite(path, (b) => {
            const c = b.slice();
            c[c.length - 1] = (c[c.length - 1] ?? 0) ^ 0xff;
            return c;
          }),
        truncate: (path, length) => rewrite(path, (b) => b.slice(0, length)),
        close: async () => storage.close(),
      };
    });
  });

  test('a file above the part size is a parallel multipart upload, read back in ranged parts', async () => {
    const { storage, bucket } = await open({ partSizeBytes: 5 * MIB, concurrency: 4 });
    const bytes = randomBytes(12 * MIB + 123);
    const ref = await storage.writeFile(SCOPE, 1, 'big', bytes);
    // create + 3 parts + complete
    assert.equal(storage.requests.multipart, 5);
    await storage.commit(checkpointMeta(SCOPE, 1, [ref]));
    const before = storage.requests.get;
    const back = await storage.readFile(ref);
    assert.equal(storage.requests.get - before, 3, 'three ranged GETs of 5 MiB');
    assert.ok(Buffer.from(back).equals(bytes));
    assert.deepEqual(await keys(client, bucket, 'ck/'), ['ck/job/s0-p0/chk-1.json', `ck/${ref.path}`].sort());
    storage.close();
  });

  test('an empty file and a file of exactly one part read back', async () => {
    const { storage } = await open({ partSizeBytes: 5 * MIB });
    const empty = await storage.writeFile(SCOPE, 1, 'empty', new Uint8Array(0));
    const exact = await storage.writeFile(SCOPE, 1, 'exact', randomBytes(5 * MIB));
    await storage.commit(checkpointMeta(SCOPE, 1, [empty, exact]));
    assert.equal((await storage.readFile(empty)).byteLength, 0);
    assert.equal((await storage.readFile(exact)).byteLength, 5 * MIB);
    storage.close();
  });

  test('the hot path never lists files: 20 checkpoints after a restore, retention done from what was written', async () => {
    const { storage, bucket } = await open({ retain: 2 });
    assert.equal(await storage.latest(SCOPE), undefined); // a restore lists
    const base = await storage.writeFile(SCOPE, 1, 'base', bytesOf('base'));
    await storage.commit(checkpointMeta(SCOPE, 1, [base]));
    const listed = storage.requests.list;
    for (let id = 2; id <= 20; id++) {
      const delta = await storage.writeFile(SCOPE, id, 'delta', bytesOf(`d${id}`));
      await storage.commit(checkpointMeta(SCOPE, id, [base, delta], { type: 'incremental' }));
    }
    // One listing of the task's metadata names per commit that deletes (another process may have
    // committed there), never of its files.
    assert.ok(storage.requests.list - listed <= 19, `${storage.requests.list - listed} LIST requests`);
    // What is left in the bucket: the last two checkpoints and the files they list, nothing else.
    assert.deepEqual(await keys(client, bucket, 'ck/'), [
      'ck/job/s0-p0/chk-19.json',
      'ck/job/s0-p0/chk-20.json',
      'ck/job/s0-p0/files/1-base',
      'ck/job/s0-p0/files/19-delta',
      'ck/job/s0-p0/files/20-delta',
    ]);
    storage.close();
  });

  test('a restart collects what a crashed attempt left, and lists tasks and jobs', async () => {
    const { storage, bucket } = await open({ retain: 1 });
    const ref = await storage.writeFile(SCOPE, 1, 'state', bytesOf('one'));
    await storage.commit(checkpointMeta(SCOPE, 1, [ref]));
    await storage.writeFile(SCOPE, 2, 'state', bytesOf('orphan')); // crashed before commit 2
    storage.close();
    const restarted = new S3CheckpointStorage({ bucket, prefix: 'ck', endpoint, retain: 1 });
    assert.equal((await restarted.latest(SCOPE))?.checkpointId, 1);
    await restarted.commit(checkpointMeta(SCOPE, 3, [ref]));
    assert.deepEqual(await keys(client, bucket, 'ck/'), [
      'ck/job/s0-p0/chk-3.json',
      'ck/job/s0-p0/files/1-state',
    ]);
    assert.deepEqual(await restarted.tasks('job'), ['s0-p0']);
    assert.deepEqual(await restarted.jobs(), ['job']);
    restarted.close();
  });

  test('why conditionalWrites is off by default: S3Proxy accepts If-None-Match and overwrites anyway', async () => {
    const bucket = await freshBucket(client);
    const put = (body: string) =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: body, IfNoneMatch: '*' }));
    await put('first');
    await put('second'); // AWS S3 answers 412 here
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'k' }));
    assert.equal(await got.Body!.transformToString(), 'second');
    // The default (HEAD before PUT) keeps the guarantee on such a store: the conformance suite above.
  });

  test('fromUri takes s3://bucket/prefix; malformed addresses are CONFIG_INVALID', async () => {
    const bucket = await freshBucket(client);
    const storage = S3CheckpointStorage.fromUri(`s3://${bucket}/a/b/`, { endpoint });
    assert.equal(storage.prefix, 'a/b');
    const ref = await storage.writeFile(SCOPE, 1, 'x', bytesOf('x'));
    assert.equal(storage.uriOf(ref.path), `s3://${bucket}/a/b/job/s0-p0/files/1-x`);
    storage.close();
    for (const bad of ['s3://', 's3://A_B/x', 'http://bucket/x', 's3://ab/x', 's3://bucket/a/../b']) {
      assert.throws(() => S3CheckpointStorage.fromUri(bad, { endpoint }), { code: 'CONFIG_INVALID' }, bad);
    }
    assert.throws(
      () => S3CheckpointStorage.fromUri('s3://bucket/x', { endpoint: 'ftp://x' }),
      /http\(s\):\/\//,
    );
    assert.throws(
      () => S3CheckpointStorage.fromUri('s3://bucket/x', { partSizeBytes: MIB }),
      /partSizeBytes/,
    );
  });

  test('a missing bucket is CHECKPOINT_NOT_FOUND at the start check, naming it and what to do', async () => {
    const storage = new S3CheckpointStorage({ bucket: 'no-such-bucket-kstate', endpoint });
    await rejectsWith(
      storage.check(),
      'CHECKPOINT_NOT_FOUND',
      /bucket "no-such-bucket-kstate" does not exist/,
      /aws s3 mb/,
    );
    await rejectsWith(storage.writeFile(SCOPE, 1, 'x', bytesOf('x')), 'CHECKPOINT_NOT_FOUND');
    storage.close();
  });

  test('refused credentials are CHECKPOINT_STORAGE_DENIED, and nothing is written', async () => {
    const bucket = await freshBucket(client);
    const storage = new S3CheckpointStorage({
      bucket,
      endpoint,
      credentials: { accessKeyId: 'kstate', secretAccessKey: 'wrong-secret' },
      maxAttempts: 2,
    });
    await rejectsWith(storage.check(), 'CHECKPOINT_STORAGE_DENIED', /refused/, /AWS_ACCESS_KEY_ID/);
    await rejectsWith(storage.writeFile(SCOPE, 1, 'x', bytesOf('x')), 'CHECKPOINT_STORAGE_DENIED');
    assert.deepEqual(await keys(client, bucket, ''), []);
    storage.close();
  });

  test('an unreachable endpoint is CHECKPOINT_STORAGE_FAILED naming it, after bounded retries', async () => {
    const storage = new S3CheckpointStorage({
      bucket: 'some-bucket',
      endpoint: 'http://127.0.0.1:9', // discard port: nothing listens
      maxAttempts: 2,
      requestTimeoutMs: 2_000,
    });
    await rejectsWith(storage.check(), 'CHECKPOINT_STORAGE_FAILED', /127\.0\.0\.1:9/, /cannot be reached/);
    storage.close();
  });
});
