/**
 * The S3 test store (connectors/s3/local): the S3Proxy with-broker.ts exports serves what the storage
 * needs through the AWS SDK (buckets, put/get/list/delete, multipart, 403 on wrong credentials); a store
 * of our own can be killed like a crashed server and restarted on its data; bad input gets one clear
 * error; and no java process or temp dir outlives the harness, even one that is SIGKILLed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { formatHarnessError, HarnessError } from '../../kafka/local/errors.ts';
import { javaBinary, REPO_ROOT } from '../../kafka/local/install.ts';
import { isAlive } from '../../kafka/local/processes.ts';
import { ensureS3ProxyInstalled, S3PROXY } from '../local/install.ts';
import { startS3Proxy } from '../local/s3proxy.ts';
import { NO_TEST_S3, s3ClientConfig, testS3Store, uniqueBucketName } from '../local/test-store.ts';

const store = testS3Store();
const skip = store === undefined ? NO_TEST_S3 : false;
const CLI = join(REPO_ROOT, 'connectors/s3/local/cli.ts');
const MiB = 1024 * 1024;

const temps: string[] = [];
after(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});
function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `kstate-s3-harness-test-${label}-`));
  temps.push(dir);
  return dir;
}

/** Polls `check` until it returns a value; fails after `ms` naming `what`. (Kept here: the Kafka tests' helper loads the whole framework.) */
async function eventually<T>(
  check: () => Promise<T | undefined>,
  ms: number,
  what: () => string,
): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what()}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

type SdkError = Error & { code?: string; $metadata?: { httpStatusCode?: number } };

function failureOf(promise: Promise<unknown>): Promise<SdkError> {
  return promise.then(
    () => assert.fail('the request should fail'),
    (error: unknown) => error as SdkError,
  );
}

async function bytes(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

describe('the S3 store with-broker.ts starts', { skip }, () => {
  test('the AWS SDK creates a bucket, puts, gets, lists and deletes objects', async () => {
    assert.ok(store !== undefined);
    assert.match(store.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(store.region, 'us-east-1');
    const client = new S3Client({ ...s3ClientConfig(store), maxAttempts: 1 });
    const bucket = uniqueBucketName('harness-basic');
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      const a = randomBytes(100_000);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'job/task/a', Body: a }));
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'job/task/b', Body: 'b' }));
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'other', Body: 'o' }));
      assert.deepEqual(await bytes(client, bucket, 'job/task/a'), a);
      const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'job/' }));
      assert.deepEqual(
        listed.Contents?.map((c) => [c.Key, c.Size]),
        [
          ['job/task/a', 100_000],
          ['job/task/b', 1],
        ],
      );
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'job/task/a' }));
      const head = await failureOf(client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'job/task/a' })));
      assert.equal(head.$metadata?.httpStatusCode, 404);
      const after = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
      assert.deepEqual(
        after.Contents?.map((c) => c.Key),
        ['job/task/b', 'other'],
      );
    } finally {
      client.destroy();
    }
  });

  test('multipart upload: a 5 MiB part and a tail part make one object', async () => {
    assert.ok(store !== undefined);
    const client = new S3Client({ ...s3ClientConfig(store), maxAttempts: 1 });
    const bucket = uniqueBucketName('harness-multipart');
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      const first = randomBytes(5 * MiB);
      const tail = randomBytes(12_345);
      const key = 'big/object';
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      assert.ok(UploadId !== undefined);
      const parts = [];
      for (const [i, body] of [first, tail].entries()) {
        const part = await client.send(
          new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: i + 1, Body: body }),
        );
        parts.push({ PartNumber: i + 1, ETag: part.ETag });
      }
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.ContentLength, 5 * MiB + 12_345);
      assert.deepEqual(await bytes(client, bucket, key), Buffer.concat([first, tail]));

      // An aborted upload leaves nothing behind.
      const aborted = await client.send(
        new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'big/aborted' }),
      );
      await client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: 'big/aborted',
          UploadId: aborted.UploadId,
          PartNumber: 1,
          Body: first,
        }),
      );
      await client.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'big/aborted', UploadId: aborted.UploadId }),
      );
      const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'big/' }));
      assert.deepEqual(
        listed.Contents?.map((c) => c.Key),
        ['big/object'],
      );
    } finally {
      client.destroy();
    }
  });

  test('wrong credentials get 403', async () => {
    assert.ok(store !== undefined);
    const bucket = uniqueBucketName('harness-denied');
    const good = new S3Client({ ...s3ClientConfig(store), maxAttempts: 1 });
    const wrong = new S3Client({
      ...s3ClientConfig({ ...store, secretAccessKey: `${store.secretAccessKey}-wrong` }),
      maxAttempts: 1,
    });
    const unknown = new S3Client({ ...s3ClientConfig({ ...store, accessKeyId: 'nobody' }), maxAttempts: 1 });
    try {
      await good.send(new CreateBucketCommand({ Bucket: bucket }));
      for (const client of [wrong, unknown]) {
        const put = await failureOf(
          client.send(new PutObjectCommand({ Bucket: bucket, Key: 'x', Body: 'x' })),
        );
        assert.equal(put.$metadata?.httpStatusCode, 403, String(put));
        const list = await failureOf(client.send(new ListObjectsV2Command({ Bucket: bucket })));
        assert.equal(list.$metadata?.httpStatusCode, 403, String(list));
      }
      const listed = await good.send(new ListObjectsV2Command({ Bucket: bucket }));
      assert.equal(listed.KeyCount, 0, 'nothing was written with wrong credentials');
    } finally {
      for (const c of [good, wrong, unknown]) c.destroy();
    }
  });
});

describe('an S3Proxy of our own', { skip }, () => {
  test('kill() fails requests with a connection error; restart() on the same data dir serves the old objects', {
    timeout: 180_000,
  }, async () => {
    const dataDir = tempDir('data');
    const s3 = await startS3Proxy({
      dataDir,
      exitOnSignal: false,
      identity: 'own-id',
      credential: 'own-secret',
    });
    const runDir = join(s3.logFile, '..');
    const client = new S3Client({ ...s3ClientConfig(s3), maxAttempts: 1 });
    let lastPid = s3.pid;
    try {
      assert.equal(s3.dataDir, dataDir);
      assert.equal(s3.accessKeyId, 'own-id');
      assert.match(
        readFileSync(join(runDir, 's3proxy.properties'), 'utf8'),
        /jclouds\.provider=filesystem-nio2/,
      );
      const bucket = uniqueBucketName('harness-restart');
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      const body = randomBytes(50_000);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'kept', Body: body }));

      const firstPid = s3.pid;
      await s3.kill();
      assert.equal(isAlive(firstPid), false, 'the java process is gone after kill()');
      // The client's kept-alive connection may be the one that fails (reset) if its close is not seen yet;
      // a new connection is refused.
      const failed = await failureOf(client.send(new GetObjectCommand({ Bucket: bucket, Key: 'kept' })));
      assert.match(failed.code ?? '', /^(ECONNREFUSED|ECONNRESET|EPIPE)$/, String(failed));
      assert.equal(failed.$metadata?.httpStatusCode, undefined, 'no HTTP answer at all');
      const fresh = new S3Client({ ...s3ClientConfig(s3), maxAttempts: 1 });
      const refused = await failureOf(fresh.send(new GetObjectCommand({ Bucket: bucket, Key: 'kept' })));
      fresh.destroy();
      assert.equal(refused.code, 'ECONNREFUSED', String(refused));

      await s3.restart();
      assert.notEqual(s3.pid, firstPid);
      assert.ok(isAlive(s3.pid));
      assert.deepEqual(await bytes(client, bucket, 'kept'), body);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'after-restart', Body: 'x' }));
      lastPid = s3.pid;
    } finally {
      client.destroy();
      await s3.stop();
    }
    await s3.stop(); // idempotent
    assert.equal(s3.pid, -1, 'no process after stop()');
    assert.equal(isAlive(lastPid), false);
    assert.equal(existsSync(runDir), false, 'the run dir is removed');
    assert.ok(existsSync(dataDir), 'a given data dir is kept');
  });

  test('stop() removes a default data dir; the store no longer answers', { timeout: 120_000 }, async () => {
    const s3 = await startS3Proxy({ exitOnSignal: false });
    const pid = s3.pid;
    assert.ok(s3.dataDir.startsWith(join(s3.logFile, '..')), 'the default data dir is in the run dir');
    assert.ok(s3.startMs > 0);
    await s3.stop();
    assert.equal(isAlive(pid), false);
    assert.equal(existsSync(s3.dataDir), false);
    const client = new S3Client({ ...s3ClientConfig(s3), maxAttempts: 1 });
    const error = await failureOf(client.send(new ListObjectsV2Command({ Bucket: 'any-bucket' })));
    assert.equal(error.code, 'ECONNREFUSED', String(error));
    client.destroy();
  });

  test('a SIGKILLed parent leaves no S3Proxy: the watchdog stops it and removes its files', {
    timeout: 120_000,
  }, async () => {
    const cli = spawn(process.execPath, [CLI, 'start'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    cli.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const { pid, dataDir } = await eventually(
      async () => {
        if (cli.exitCode !== null) throw new Error(`cli start exited early: ${stderr}`);
        const started = /answers on \S+ \(pid (\d+)\)/.exec(stderr);
        const dir = /data: (\S+);/.exec(stderr);
        return started?.[1] !== undefined && dir?.[1] !== undefined
          ? { pid: Number(started[1]), dataDir: dir[1] }
          : undefined;
      },
      90_000,
      () => `cli start to report S3Proxy: ${stderr}`,
    );
    assert.match(stdout, /^KSTATE_TEST_S3_ENDPOINT=http:\/\/127\.0\.0\.1:\d+$/m);
    assert.match(stdout, /^AWS_ACCESS_KEY_ID=\S+$/m);
    assert.match(stdout, /^AWS_REGION=us-east-1$/m);
    cli.kill('SIGKILL');
    await eventually(
      async () => (!isAlive(pid) && !existsSync(dataDir) ? true : undefined),
      30_000,
      () =>
        `java ${pid} gone (alive: ${isAlive(pid)}) and ${dataDir} removed (exists: ${existsSync(dataDir)})`,
    );
  });
});

describe('the S3 harness on bad input', { skip }, () => {
  test('java missing: one line that says what to install', async () => {
    const saved = process.env.JAVA_HOME;
    process.env.JAVA_HOME = '/nonexistent-jdk';
    try {
      const error = await startS3Proxy({ exitOnSignal: false }).then(
        () => assert.fail('no java, no start'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof HarnessError, String(error));
      assert.equal(error.code, 'JAVA_MISSING');
      assert.match(
        formatHarnessError(error, 's3 harness'),
        /^s3 harness: java not found or not runnable \(\/nonexistent-jdk\/bin\/java.*install a JDK 17 or newer/,
      );
    } finally {
      if (saved === undefined) delete process.env.JAVA_HOME;
      else process.env.JAVA_HOME = saved;
    }
    assert.ok(spawnSync(javaBinary(), ['-version']).status === 0);
  });

  test('mvn missing: MVN_MISSING, nothing cached', async () => {
    const cacheDir = tempDir('nomvn');
    const error = await ensureS3ProxyInstalled({ cacheDir, mvn: '/nonexistent/mvn' }).then(
      () => assert.fail('no mvn, no fetch'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof HarnessError, String(error));
    assert.equal(error.code, 'MVN_MISSING');
    assert.match(error.message, /mvn not found or not runnable \(\/nonexistent\/mvn.*install Maven/);
    assert.deepEqual(readdirSync(join(cacheDir, S3PROXY.version)), [], 'no jar, no marker, no work dir');
  });

  test('Maven Central unreachable: MVN_FAILED with the end of mvn output, nothing cached', {
    timeout: 120_000,
  }, async () => {
    const dir = tempDir('offline');
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const address = server.address();
    assert.ok(typeof address === 'object' && address !== null);
    await new Promise<void>((done) => server.close(() => done()));
    const settings = join(dir, 'settings.xml');
    writeFileSync(
      settings,
      `<settings><mirrors><mirror><id>nowhere</id><mirrorOf>*</mirrorOf><url>http://127.0.0.1:${address.port}/maven2</url></mirror></mirrors></settings>`,
    );
    const cacheDir = join(dir, 'cache');
    const error = await ensureS3ProxyInstalled({
      cacheDir,
      mvnArgs: ['-s', settings, `-Dmaven.repo.local=${join(dir, 'repo')}`],
    }).then(
      () => assert.fail('the fetch should fail'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof HarnessError, String(error));
    assert.equal(error.code, 'MVN_FAILED');
    assert.match(error.message, /mvn could not fetch S3Proxy 2\.6\.0 from Maven Central .*reachable mirror/);
    assert.match(
      error.details ?? '',
      /127\.0\.0\.1/,
      'the tail of mvn output names the unreachable repository',
    );
    assert.deepEqual(readdirSync(join(cacheDir, S3PROXY.version)), [], 'nothing half-fetched in the cache');
  });

  test('a port that is taken: PORT_IN_USE before java starts', async () => {
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const address = server.address();
    assert.ok(typeof address === 'object' && address !== null);
    try {
      const error = await startS3Proxy({ port: address.port, exitOnSignal: false }).then(
        () => assert.fail('the port is taken'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof HarnessError, String(error));
      assert.equal(error.code, 'PORT_IN_USE');
      assert.match(
        error.message,
        new RegExp(`cannot listen on 127\\.0\\.0\\.1:${address.port} \\(EADDRINUSE\\)`),
      );
    } finally {
      server.close();
    }
  });

  test('a restart whose port was taken meanwhile: PORT_IN_USE with the log', {
    timeout: 120_000,
  }, async () => {
    const s3 = await startS3Proxy({ exitOnSignal: false });
    const server = createServer();
    try {
      await s3.kill();
      await new Promise<void>((done, reject) => {
        server.once('error', reject);
        server.listen(s3.port, '127.0.0.1', done);
      });
      const error = await s3.restart().then(
        () => assert.fail('the port is taken'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof HarnessError, String(error));
      assert.equal(error.code, 'PORT_IN_USE');
      assert.match(error.details ?? '', /Failed to bind/);
      assert.ok(error.pid !== undefined && !isAlive(error.pid));
    } finally {
      server.close();
      await s3.stop();
    }
  });

  test('a JVM that dies before it answers: S3PROXY_EXITED with the end of its log', {
    timeout: 120_000,
  }, async () => {
    const saved = process.env.S3PROXY_JVM_OPTS;
    process.env.S3PROXY_JVM_OPTS = '-Xmx1m';
    try {
      const error = await startS3Proxy({ exitOnSignal: false }).then(
        () => assert.fail('1 MB of heap cannot start'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof HarnessError, String(error));
      assert.equal(error.code, 'S3PROXY_EXITED');
      assert.match(
        error.message,
        /S3Proxy 2\.6\.0 exited with code 1 before it answered on http:\/\/127\.0\.0\.1:\d+/,
      );
      assert.match(error.details ?? '', /heap/i);
      assert.ok(error.dataDir !== undefined && !existsSync(error.dataDir), 'its files are removed');
    } finally {
      if (saved === undefined) delete process.env.S3PROXY_JVM_OPTS;
      else process.env.S3PROXY_JVM_OPTS = saved;
    }
  });

  test('no answer in time: START_TIMEOUT, and the process is stopped', { timeout: 120_000 }, async () => {
    const error = await startS3Proxy({ timeoutMs: 1, exitOnSignal: false }).then(
      () => assert.fail('a 1 ms start should time out'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof HarnessError, String(error));
    assert.equal(error.code, 'START_TIMEOUT');
    assert.match(error.message, /raise S3PROXY_START_TIMEOUT_MS/);
    assert.ok(error.pid !== undefined && !isAlive(error.pid));
    assert.ok(error.dataDir !== undefined && !existsSync(error.dataDir));
  });
});
