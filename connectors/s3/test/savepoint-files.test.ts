/**
 * S3SavepointFiles (savepoint exports in an object store) against S3Proxy, started by
 * scripts/kafka/with-broker.ts: the savepoint-files conformance suite the directory passes, then what
 * an object store adds: a large file is a multipart upload with parts in flight at once, retried
 * through throttling, aborted (nothing visible) when a part fails for good; the errors of a missing
 * bucket, refused credentials, an unreachable endpoint and a malformed address, each naming the
 * setting that gave the location.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { S3Client } from '@aws-sdk/client-s3';
import { rejectsWith, savepointFilesConformance } from '../../../framework/testing/index.ts';
import { NO_TEST_S3, s3ClientConfig, testS3Store } from '../local/test-store.ts';
import { S3SavepointFiles, type S3SavepointFilesOptions } from '../savepoint-files.ts';
import { createTestBucket, listTestObjects } from './buckets.ts';
import { type FaultProxy, startFaultProxy } from './fault-proxy.ts';

const store = testS3Store();
const MIB = 1024 * 1024;

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('S3 savepoint files', { skip: store === undefined ? NO_TEST_S3 : false }, () => {
  let bucket = '';
  let n = 0;
  const open = (prefix: string, o: S3SavepointFilesOptions = {}) =>
    S3SavepointFiles.fromUri(`s3://${bucket}/${prefix}`, {
      endpoint: store!.endpoint,
      partSizeBytes: 5 * MIB,
      setting: '--out',
      ...o,
    });
  before(async () => {
    bucket = await createTestBucket(store!, 'sp-files');
  });

  savepointFilesConformance('s3 (S3Proxy)', async () => open(`conformance/${n++}`), {
    largeBytes: 12 * MIB, // three parts of 5 MiB
    atomicWrite: true,
  });

  test('a prefix of the bucket root and a nested prefix do not see each other', async () => {
    const a = open('nest/a');
    const ab = open('nest/a/b');
    const ab2 = open('nest/ab');
    await ab.write('x.ndjson', ['1\n']);
    await ab2.write('y.ndjson', ['2\n']);
    assert.deepEqual(await a.list(), ['b/x.ndjson']);
    assert.deepEqual(await ab.list(), ['x.ndjson']);
    assert.deepEqual(await ab2.list(), ['y.ndjson']);
    assert.equal(ab.describe('x.ndjson'), `s3://${bucket}/nest/a/b/x.ndjson`);
    assert.equal(ab.location, `s3://${bucket}/nest/a/b`);
    for (const f of [a, ab, ab2]) f.close();
  });

  describe('through a fault-injecting proxy', () => {
    let proxy: FaultProxy;
    before(async () => {
      proxy = await startFaultProxy({ upstream: store!.endpoint, seed: 3 });
    });
    after(() => proxy?.close());

    test('a large file is a multipart upload with up to `concurrency` parts in flight; small ones are one PUT', async () => {
      // Each PUT held 400 ms, so that parts overlap whenever the bound lets them.
      proxy.set({ delay: { methods: ['PUT'], ms: 400 } });
      let inFlight = 0;
      let most = 0;
      const client = new S3Client({ ...s3ClientConfig(store!, proxy.endpoint) });
      client.middlewareStack.add(
        (next) => async (args) => {
          most = Math.max(most, ++inFlight);
          try {
            return await next(args);
          } finally {
            inFlight--;
          }
        },
        { step: 'finalizeRequest' },
      );
      const files = open('multipart', { client, concurrency: 3 });
      const mib = `${'y'.repeat(MIB - 1)}\n`;
      await files.write(
        'big.ndjson',
        (function* () {
          for (let i = 0; i < 23; i++) yield mib; // 23 MiB: parts 5+5+5+5+3
        })(),
      );
      await files.write('small.ndjson', ['{"k":1}\n']);
      proxy.clear();
      assert.equal(most, 3, 'parts in flight at once: the bound, reached');
      assert.deepEqual(files.requests, { put: 1, get: 0, head: 2, list: 0, multipart: 1 + 5 + 1 });
      assert.deepEqual(await listTestObjects(store!, bucket, 'multipart'), [
        { key: 'big.ndjson', bytes: 23 * MIB },
        { key: 'small.ndjson', bytes: 8 },
      ]);
      let lines = 0;
      for await (const l of files.readLines('big.ndjson')) {
        assert.equal(l.length, MIB - 1);
        lines++;
      }
      assert.equal(lines, 23);
      client.destroy();
    });

    test('throttled parts are retried and the file completes', async () => {
      proxy.set({ fail: { methods: ['PUT'], every: 2, error: 'SlowDown' } });
      const files = open('throttled', { endpoint: proxy.endpoint, concurrency: 2 });
      const text = `${'z'.repeat(MIB - 1)}\n`;
      await files.write(
        'big.ndjson',
        (function* () {
          for (let i = 0; i < 12; i++) yield text;
        })(),
      );
      const puts = proxy.counts().byMethodOutcome.PUT!;
      proxy.clear();
      assert.ok(puts.failed >= 1, JSON.stringify(puts));
      assert.deepEqual(await listTestObjects(store!, bucket, 'throttled'), [
        { key: 'big.ndjson', bytes: 12 * MIB },
      ]);
      files.close();
    });

    test('a part that fails for good aborts the upload: no object appears, the error names it', async () => {
      proxy.set({ fail: { methods: ['PUT'], path: /partNumber=2/, every: 1, error: 'InternalError' } });
      const files = open('failed', { endpoint: proxy.endpoint, maxAttempts: 2 });
      const text = `${'w'.repeat(MIB - 1)}\n`;
      await rejectsWith(
        files.write(
          'big.ndjson',
          (function* () {
            for (let i = 0; i < 12; i++) yield text;
          })(),
        ),
        'CHECKPOINT_STORAGE_FAILED',
        new RegExp(`cannot write s3://${bucket}/failed/big\\.ndjson: .*InternalError \\(HTTP 500\\)`),
        /Run the command again once the store answers\./,
      );
      const deletes = proxy.counts().byMethod.DELETE ?? 0;
      proxy.clear();
      assert.ok(deletes >= 1, 'the multipart upload was aborted');
      assert.deepEqual(await listTestObjects(store!, bucket, 'failed'), []);
      files.close();
    });
  });

  test('a missing bucket is CHECKPOINT_NOT_FOUND naming it and the setting', async () => {
    const files = S3SavepointFiles.fromUri('s3://kstate-no-such-bucket-here/x', {
      endpoint: store!.endpoint,
      setting: '--out',
    });
    const named = [/bucket "kstate-no-such-bucket-here" does not exist/, /fix the bucket in --out/];
    await rejectsWith(files.isEmpty(), 'CHECKPOINT_NOT_FOUND', ...named);
    await rejectsWith(files.readText('savepoint.json'), 'CHECKPOINT_NOT_FOUND', ...named);
    await rejectsWith(files.write('a.ndjson', ['1\n']), 'CHECKPOINT_NOT_FOUND', ...named);
    files.close();
  });

  test('refused credentials are CHECKPOINT_STORAGE_DENIED; nothing is written', async () => {
    const files = open('denied', {
      credentials: { accessKeyId: store!.accessKeyId, secretAccessKey: 'wrong-secret' },
    });
    await rejectsWith(files.isEmpty(), 'CHECKPOINT_STORAGE_DENIED', /refused it/, /AWS_ACCESS_KEY_ID/);
    await rejectsWith(files.write('a.ndjson', ['1\n']), 'CHECKPOINT_STORAGE_DENIED');
    await rejectsWith(files.readText('savepoint.json'), 'CHECKPOINT_STORAGE_DENIED');
    assert.deepEqual(await listTestObjects(store!, bucket, 'denied'), []);
    files.close();
  });

  test('an unreachable endpoint is CHECKPOINT_STORAGE_FAILED naming it', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const files = open('x', { endpoint, maxAttempts: 2 });
    await rejectsWith(
      files.isEmpty(),
      'CHECKPOINT_STORAGE_FAILED',
      new RegExp(`${endpoint} cannot be reached`),
      /KSTATE_S3_ENDPOINT/,
    );
    files.close();
  });

  test('a malformed address is CONFIG_INVALID naming the setting', () => {
    for (const uri of ['s3://Bad_Bucket/x', 's3://ab', 'https://bucket/x']) {
      assert.throws(
        () => S3SavepointFiles.fromUri(uri, { setting: '--out' }),
        (e: Error & { code?: string }) =>
          e.code === 'CONFIG_INVALID' && e.message.startsWith(`--out ${JSON.stringify(uri)}`),
      );
    }
  });
});
