/**
 * The fault-injecting S3 proxy (fault-proxy.ts) between the AWS SDK and the S3Proxy with-broker.ts
 * started: signed requests pass through unchanged, and each fault is really injected (the proxy's counts
 * and what the client sees agree) and does what the storage tests rely on.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { NO_TEST_S3, s3ClientConfig, testS3Store, uniqueBucketName } from '../local/test-store.ts';
import { type FaultProxy, startFaultProxy } from './fault-proxy.ts';

const store = testS3Store();
const skip = store === undefined ? NO_TEST_S3 : false;

function errorOf(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; $metadata?: { httpStatusCode?: number } }> {
  return promise.then(
    () => assert.fail('the request should fail'),
    (error: unknown) => error as Error,
  );
}

/** A client without retries, so each fault reaches the caller. */
function client(endpoint: string, maxAttempts = 1): S3Client {
  assert.ok(store !== undefined);
  return new S3Client({ ...s3ClientConfig(store, endpoint), maxAttempts });
}

async function exists(direct: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (error) {
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404)
      return false;
    throw error;
  }
}

describe('fault proxy for S3', { skip }, () => {
  let proxy: FaultProxy;
  let direct: S3Client;
  let bucket: string;

  before(async () => {
    assert.ok(store !== undefined);
    direct = client(store.endpoint);
    bucket = uniqueBucketName('fault-proxy');
    await direct.send(new CreateBucketCommand({ Bucket: bucket }));
    proxy = await startFaultProxy({ upstream: store.endpoint, seed: 7 });
  });
  after(async () => {
    await proxy?.close();
    direct?.destroy();
  });

  test('without faults it is transparent: SigV4 over the client Host passes, bodies arrive whole', async () => {
    proxy.clear();
    proxy.resetCounts();
    const viaProxy = client(proxy.endpoint);
    const body = randomBytes(300_000);
    await viaProxy.send(new PutObjectCommand({ Bucket: bucket, Key: 'clear/a', Body: body }));
    const got = await viaProxy.send(new GetObjectCommand({ Bucket: bucket, Key: 'clear/a' }));
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body);
    const listed = await viaProxy.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'clear/' }));
    assert.deepEqual(
      listed.Contents?.map((c) => c.Key),
      ['clear/a'],
    );
    const counts = proxy.counts();
    assert.equal(counts.total, 3);
    assert.deepEqual(counts.byOutcome, {
      forwarded: 3,
      failed: 0,
      reset: 0,
      'response-lost': 0,
      'upstream-error': 0,
    });
    assert.deepEqual(counts.byMethod, { PUT: 1, GET: 2 });
    viaProxy.destroy();
  });

  test('50% of PUTs fail: a client without retries sees each injected 503 SlowDown, and only those', {
    timeout: 120_000,
  }, async () => {
    proxy.set({ fail: { methods: ['PUT', 'POST'], fraction: 0.5, error: 'SlowDown' } });
    proxy.resetCounts();
    const viaProxy = client(proxy.endpoint, 1);
    const puts = 40;
    const failedKeys: string[] = [];
    for (let i = 0; i < puts; i++) {
      const key = `half/${i}`;
      try {
        await viaProxy.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `value ${i}` }));
      } catch (error) {
        const e = error as Error & { $metadata?: { httpStatusCode?: number } };
        assert.equal(e.name, 'SlowDown', String(error));
        assert.equal(e.$metadata?.httpStatusCode, 503);
        failedKeys.push(key);
      }
    }
    const counts = proxy.counts();
    assert.equal(counts.byMethod.PUT, puts);
    assert.equal(
      counts.byMethodOutcome.PUT?.failed,
      failedKeys.length,
      'every injected failure reached the client',
    );
    assert.equal(counts.byMethodOutcome.PUT?.forwarded, puts - failedKeys.length);
    // Seeded: the same 40 PUTs always fail the same way; about half of them.
    assert.ok(failedKeys.length >= 10 && failedKeys.length <= 30, `failed ${failedKeys.length} of ${puts}`);
    for (const key of failedKeys)
      assert.equal(await exists(direct, bucket, key), false, `${key} was never stored`);
    process.stderr.write(
      `# ${puts} PUTs through 50% SlowDown without retries: ${failedKeys.length} failed\n`,
    );
    viaProxy.destroy();
  });

  // InternalError: the SDK backs off from 100 ms on it, from 500 ms on SlowDown (throttling), which would
  // make this test take about 20 s for the same retries.
  test('50% of PUTs fail with 500 InternalError: a client with retries (maxAttempts 6) stores every object', {
    timeout: 180_000,
  }, async () => {
    proxy.set({ fail: { methods: ['PUT', 'POST'], fraction: 0.5, error: 'InternalError' } });
    proxy.resetCounts();
    const viaProxy = client(proxy.endpoint, 6);
    const puts = 20;
    const started = performance.now();
    for (let i = 0; i < puts; i++) {
      await viaProxy.send(new PutObjectCommand({ Bucket: bucket, Key: `retried/${i}`, Body: `value ${i}` }));
    }
    const ms = Math.round(performance.now() - started);
    const counts = proxy.counts();
    assert.ok(
      (counts.byMethodOutcome.PUT?.failed ?? 0) >= 5,
      `faults were injected: ${JSON.stringify(counts)}`,
    );
    assert.equal(counts.byMethodOutcome.PUT?.forwarded, puts, 'each PUT got through once');
    for (let i = 0; i < puts; i++) {
      const got = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: `retried/${i}` }));
      assert.equal(await got.Body!.transformToString(), `value ${i}`);
    }
    process.stderr.write(
      `# ${puts} PUTs through 50% InternalError: ${counts.byMethodOutcome.PUT?.failed} injected failures retried, ${ms} ms\n`,
    );
    viaProxy.destroy();
  });

  test('every n-th selection and InternalError', async () => {
    proxy.set({ fail: { methods: ['GET'], every: 2, error: 'InternalError' } });
    proxy.resetCounts();
    const viaProxy = client(proxy.endpoint, 1);
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'nth', Body: 'x' }));
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) {
      try {
        await viaProxy.send(new GetObjectCommand({ Bucket: bucket, Key: 'nth' }));
        outcomes.push('ok');
      } catch (error) {
        const e = error as Error & { $metadata?: { httpStatusCode?: number } };
        outcomes.push(`${e.name} ${e.$metadata?.httpStatusCode}`);
      }
    }
    assert.deepEqual(outcomes, ['ok', 'InternalError 500', 'ok', 'InternalError 500']);
    viaProxy.destroy();
  });

  test('delay mode slows each matching response by at least the delay', async () => {
    const delayMs = 400;
    proxy.set({ delay: { methods: ['GET'], ms: delayMs } });
    proxy.resetCounts();
    const viaProxy = client(proxy.endpoint, 1);
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'slow', Body: 'x' }));
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      const got = await viaProxy.send(new GetObjectCommand({ Bucket: bucket, Key: 'slow' }));
      await got.Body!.transformToString();
      const ms = performance.now() - started;
      assert.ok(ms >= delayMs, `GET took ${Math.round(ms)} ms with a ${delayMs} ms delay`);
    }
    const started = performance.now();
    await viaProxy.send(new PutObjectCommand({ Bucket: bucket, Key: 'fast', Body: 'x' }));
    const putMs = performance.now() - started;
    assert.equal(proxy.counts().delayed, 3, 'only the GETs were delayed');
    process.stderr.write(`# delayed GETs >= ${delayMs} ms; an undelayed PUT took ${Math.round(putMs)} ms\n`);
    viaProxy.destroy();
  });

  test('reset mode: a PUT cut after half its body fails and leaves no object', async () => {
    proxy.set({ reset: { methods: ['PUT'], every: 1 } });
    proxy.resetCounts();
    const viaProxy = client(proxy.endpoint, 1);
    const body = randomBytes(2 * 1024 * 1024);
    const error = await errorOf(
      viaProxy.send(new PutObjectCommand({ Bucket: bucket, Key: 'cut', Body: body })),
    );
    assert.match(
      `${error.code ?? ''} ${error.message}`,
      /ECONNRESET|socket hang up|EPIPE|aborted/i,
      String(error),
    );
    assert.equal(proxy.counts().byMethodOutcome.PUT?.reset, 1);
    // Absence cannot be waited for, so it is checked for a while: a store that finished the write after
    // the cut (as it does when the whole body got through) shows the object within milliseconds.
    const until = performance.now() + 1_000;
    while (performance.now() < until) {
      assert.equal(await exists(direct, bucket, 'cut'), false, 'no object, not even a partial one');
      const listed = await direct.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'cut' }));
      assert.equal(listed.KeyCount, 0);
      await new Promise((done) => setTimeout(done, 100));
    }

    proxy.clear();
    await viaProxy.send(new PutObjectCommand({ Bucket: bucket, Key: 'cut', Body: body }));
    const got = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: 'cut' }));
    assert.deepEqual(
      Buffer.from(await got.Body!.transformToByteArray()),
      body,
      'the proxy works again after clear()',
    );
    viaProxy.destroy();
  });

  test('lost responses: the PUT is stored but the client sees a connection error; a retry succeeds', async () => {
    proxy.set({ loseResponse: { methods: ['PUT'], every: 1 } });
    proxy.resetCounts();
    const once = client(proxy.endpoint, 1);
    const error = await errorOf(once.send(new PutObjectCommand({ Bucket: bucket, Key: 'lost', Body: 'v1' })));
    assert.match(`${error.code ?? ''} ${error.message}`, /ECONNRESET|socket hang up|aborted/i, String(error));
    const got = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: 'lost' }));
    assert.equal(
      await got.Body!.transformToString(),
      'v1',
      'the store has the object the client thinks failed',
    );

    proxy.set({ loseResponse: { methods: ['PUT'], every: 2 } });
    const retrying = client(proxy.endpoint, 3);
    await retrying.send(new PutObjectCommand({ Bucket: bucket, Key: 'lost-retried', Body: 'v2' }));
    await retrying.send(new PutObjectCommand({ Bucket: bucket, Key: 'lost-retried', Body: 'v3' }));
    const counts = proxy.counts();
    assert.equal(counts.byMethodOutcome.PUT?.['response-lost'], 2);
    // v2 was answered; v3 lost its answer, and its retry was answered.
    assert.equal(
      counts.byMethodOutcome.PUT?.forwarded,
      2,
      'the PUT of v3 was retried after its lost response',
    );
    const latest = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: 'lost-retried' }));
    assert.equal(await latest.Body!.transformToString(), 'v3');
    proxy.clear();
    once.destroy();
    retrying.destroy();
  });

  test('reset mode on a GET cuts the response body', async () => {
    await direct.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'read-cut', Body: randomBytes(1024 * 1024) }),
    );
    proxy.set({ reset: { methods: ['GET'], every: 1 } });
    const viaProxy = client(proxy.endpoint, 1);
    const error = await errorOf(
      viaProxy
        .send(new GetObjectCommand({ Bucket: bucket, Key: 'read-cut' }))
        .then((got) => got.Body!.transformToByteArray()),
    );
    assert.match(
      `${error.code ?? ''} ${error.message}`,
      /ECONNRESET|aborted|socket hang up|premature/i,
      String(error),
    );
    proxy.clear();
    viaProxy.destroy();
  });

  test('refuse(): connections are refused until accept()', async () => {
    proxy.clear();
    const viaProxy = client(proxy.endpoint, 1);
    await proxy.refuse();
    const error = await errorOf(viaProxy.send(new HeadObjectCommand({ Bucket: bucket, Key: 'fast' })));
    assert.equal(error.code, 'ECONNREFUSED', String(error));
    await proxy.accept();
    await viaProxy.send(new HeadObjectCommand({ Bucket: bucket, Key: 'fast' }));
    viaProxy.destroy();
  });

  test('the same seed picks the same requests', async () => {
    const picks = async (seed: number): Promise<string[]> => {
      assert.ok(store !== undefined);
      const p = await startFaultProxy({
        upstream: store.endpoint,
        seed,
        plan: { fail: { methods: ['HEAD'], fraction: 0.5 } },
      });
      const c = client(p.endpoint, 1);
      try {
        for (let i = 0; i < 16; i++) {
          await c.send(new HeadObjectCommand({ Bucket: bucket, Key: 'fast' })).catch(() => undefined);
        }
        return p.history().map((h) => h.outcome);
      } finally {
        c.destroy();
        await p.close();
      }
    };
    proxy.clear();
    const a = await picks(42);
    assert.deepEqual(await picks(42), a);
    assert.ok(a.includes('failed') && a.includes('forwarded'), a.join(' '));
    assert.notDeepEqual(await picks(43), a);
  });
});
