/**
 * The service configuration's checkpoint storage and S3 settings (config.ts): where checkpoints go
 * (a directory or s3://bucket/prefix), its older name, which source wins, and the refusals, each
 * naming the variable or field it came from. No broker, no S3 store: parsing only.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isStreamError } from '../../../framework/index.ts';
import { CONFIG_DEFAULTS, loadConfig } from './config.ts';

const BROKERS = { KSTATE_BROKERS: 'localhost:9092' };

/** The CONFIG_INVALID message of loading with `env` (and the file), or a failed assertion. */
function refusal(env: Record<string, string>, file?: string): string {
  try {
    loadConfig(file, { ...BROKERS, ...env });
  } catch (e) {
    assert.ok(isStreamError(e, 'CONFIG_INVALID'), String(e));
    return e.message;
  }
  assert.fail(`accepted: ${JSON.stringify(env)}${file ? ` with ${file}` : ''}`);
}

describe('service configuration: checkpoint storage and S3 settings', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kstate-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  let n = 0;
  const file = async (fields: Record<string, unknown>) => {
    const path = join(dir, `c${n++}.json`);
    await writeFile(path, JSON.stringify(fields));
    return path;
  };

  test('defaults: ./checkpoints, 8 requests in flight, 8 MiB parts, the rest from the SDK', () => {
    const c = loadConfig(undefined, BROKERS);
    assert.equal(c.checkpointStorage, './checkpoints');
    assert.equal(CONFIG_DEFAULTS.checkpointStorage, './checkpoints');
    assert.deepEqual(
      [c.s3Endpoint, c.s3Region, c.s3ForcePathStyle, c.s3Concurrency, c.s3PartSizeMb],
      [undefined, undefined, undefined, 8, 8],
    );
  });

  test('a directory or s3://bucket/prefix, from the environment or the file', async () => {
    const cases = ['/var/lib/kstate/checkpoints', 'rel/dir', 's3://my-bucket', 's3://my.bucket-1/a/b/'];
    for (const v of cases) {
      assert.equal(loadConfig(undefined, { ...BROKERS, KSTATE_CHECKPOINT_STORAGE: v }).checkpointStorage, v);
      assert.equal(loadConfig(await file({ checkpointStorage: v }), BROKERS).checkpointStorage, v);
    }
    const c = loadConfig(undefined, {
      ...BROKERS,
      KSTATE_S3_ENDPOINT: 'http://127.0.0.1:9000',
      KSTATE_S3_REGION: 'eu-west-1',
      KSTATE_S3_FORCE_PATH_STYLE: 'false',
      KSTATE_S3_CONCURRENCY: '16',
      KSTATE_S3_PART_SIZE_MB: '5',
    });
    assert.deepEqual(
      [c.s3Endpoint, c.s3Region, c.s3ForcePathStyle, c.s3Concurrency, c.s3PartSizeMb],
      ['http://127.0.0.1:9000', 'eu-west-1', false, 16, 5],
    );
    const f = loadConfig(
      await file({ s3Endpoint: 'https://s3.example.com', s3ForcePathStyle: true, s3PartSizeMb: 64 }),
      BROKERS,
    );
    assert.deepEqual(
      [f.s3Endpoint, f.s3ForcePathStyle, f.s3PartSizeMb],
      ['https://s3.example.com', true, 64],
    );
  });

  test('the older name checkpointDir / KSTATE_CHECKPOINT_DIR is still read; the new name wins, and the environment wins over the file', async () => {
    const env = (e: Record<string, string>, path?: string) =>
      loadConfig(path, { ...BROKERS, ...e }).checkpointStorage;
    assert.equal(env({ KSTATE_CHECKPOINT_DIR: '/old' }), '/old');
    assert.equal(env({}, await file({ checkpointDir: '/old-file' })), '/old-file');
    // Both names in one place: the new one.
    assert.equal(
      env({ KSTATE_CHECKPOINT_DIR: '/old', KSTATE_CHECKPOINT_STORAGE: 's3://new-b/p' }),
      's3://new-b/p',
    );
    assert.equal(env({}, await file({ checkpointDir: '/old', checkpointStorage: '/new' })), '/new');
    // The environment (either name) over the file (either name).
    assert.equal(
      env({ KSTATE_CHECKPOINT_DIR: '/env-old' }, await file({ checkpointStorage: '/file-new' })),
      '/env-old',
    );
    assert.equal(
      env({ KSTATE_CHECKPOINT_STORAGE: '/env-new' }, await file({ checkpointDir: '/file-old' })),
      '/env-new',
    );
  });

  test('an invalid bucket or address is CONFIG_INVALID naming the variable or field it came from', async () => {
    for (const v of [
      's3://Bad_Bucket',
      's3://Bad_Bucket/prefix',
      's3://ab',
      's3://',
      's3:///p',
      's3://a..b/p',
      's3:/bucket/p', // a slash short: not a local directory named "s3:"
      's3:bucket',
    ]) {
      const m = refusal({ KSTATE_CHECKPOINT_STORAGE: v });
      assert.match(m, /^environment variable KSTATE_CHECKPOINT_STORAGE is /, m);
      assert.ok(m.includes(JSON.stringify(v)), m);
      assert.match(m, /3-63 characters: lower-case letters, digits/, m);
    }
    for (const v of ['file:///tmp/x', 'gs://bucket/p', 'http://host/x']) {
      assert.match(
        refusal({ KSTATE_CHECKPOINT_STORAGE: v }),
        /KSTATE_CHECKPOINT_STORAGE .*allowed: a directory path, or s3:\/\//,
      );
    }
    // Given under the older name, the older name is the one named.
    assert.match(
      refusal({ KSTATE_CHECKPOINT_DIR: 's3://Bad_Bucket' }),
      /^environment variable KSTATE_CHECKPOINT_DIR is "s3:\/\/Bad_Bucket"/,
    );
    const path = await file({ checkpointDir: 's3://Bad_Bucket' });
    assert.match(
      refusal({}, path),
      new RegExp(`^field 'checkpointDir' of ${path.replace(/[.\\/]/g, '\\$&')} is`),
    );
  });

  test('a bad KSTATE_S3_ENDPOINT is CONFIG_INVALID naming it', () => {
    const bad = [
      'localhost:9000',
      '127.0.0.1:9000',
      'ftp://127.0.0.1:9000',
      'http://',
      'http://127.0.0.1:99999',
      'http://127.0.0.1:port',
      'http://key:secret@127.0.0.1:9000',
      'http://127.0.0.1 :9000',
    ];
    for (const v of bad) {
      const m = refusal({ KSTATE_S3_ENDPOINT: v });
      assert.match(
        m,
        /^environment variable KSTATE_S3_ENDPOINT is .*allowed: an http\(s\):\/\/ URL/,
        `${v}: ${m}`,
      );
    }
    for (const v of [
      'http://127.0.0.1:9000',
      'https://s3.eu-west-1.amazonaws.com',
      'http://[::1]:9000',
      'http://minio:9000/',
    ]) {
      assert.equal(loadConfig(undefined, { ...BROKERS, KSTATE_S3_ENDPOINT: v }).s3Endpoint, v);
    }
  });

  test('other S3 settings out of range are refused, naming them', () => {
    const cases: [string, string][] = [
      ['KSTATE_S3_PART_SIZE_MB', '4'],
      ['KSTATE_S3_PART_SIZE_MB', '8.5'],
      ['KSTATE_S3_CONCURRENCY', '0'],
      ['KSTATE_S3_FORCE_PATH_STYLE', 'yes'],
      ['KSTATE_S3_REGION', 'eu west 1'],
    ];
    for (const [name, v] of cases)
      assert.match(refusal({ [name]: v }), new RegExp(`^environment variable ${name} is "${v}"`));
  });

  test('credentials are never read from the config file: such a field is refused, saying where they go', async () => {
    for (const field of ['s3AccessKeyId', 's3SecretAccessKey', 'awsSecretAccessKey', 's3Credentials']) {
      const m = refusal({}, await file({ [field]: 'x' }));
      assert.match(m, new RegExp(`unknown field '${field}'`), m);
      assert.match(m, /AWS_ACCESS_KEY_ID.*AWS_SECRET_ACCESS_KEY.*AWS_PROFILE/, m);
    }
  });
});

describe('service configuration: the group instance id', () => {
  test('KSTATE_GROUP_INSTANCE_ID is the static member id; unset by default; an invalid one is refused naming it', () => {
    assert.equal(loadConfig(undefined, BROKERS).groupInstanceId, undefined);
    assert.equal(
      loadConfig(undefined, { ...BROKERS, KSTATE_GROUP_INSTANCE_ID: 'orders-0.eu_1' }).groupInstanceId,
      'orders-0.eu_1',
    );
    for (const v of ['orders 0', 'orders/0', 'x'.repeat(250), 'ördres']) {
      assert.match(
        refusal({ KSTATE_GROUP_INSTANCE_ID: v }),
        /^environment variable KSTATE_GROUP_INSTANCE_ID is .*allowed: 1-249 of the characters/,
        v,
      );
    }
  });
});
