/**
 * The HTTP access settings (./http-access.ts, ./config.ts): where the admin token comes from, what is
 * refused at start (CONFIG_INVALID naming the setting, never printing the token), TLS files, and the
 * broker-loss timeout. No broker.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isStreamError } from '../../../framework/index.ts';
import { NO_OPENSSL, selfSignedFiles } from '../../../framework/testing/index.ts';
import { loadConfig } from './config.ts';
import { adminAccess, adminToken, tlsCertificate, tlsFiles } from './http-access.ts';

const dir = mkdtempSync(join(tmpdir(), 'http-access-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const BROKERS = { KSTATE_BROKERS: '127.0.0.1:9092' };
const TOKEN = 'a-token-of-thirty-two-characters';

const refused = (pattern: RegExp) => (e: unknown) => {
  assert.ok(isStreamError(e, 'CONFIG_INVALID'), String(e));
  assert.match(e.message, pattern);
  assert.ok(!e.message.includes(TOKEN), 'the message shows the token');
  return true;
};

test('the admin token: none (actions off), from KSTATE_ADMIN_TOKEN, or from a file; never both', () => {
  const config = loadConfig(undefined, BROKERS);
  assert.equal(adminAccess(config, {}), undefined);
  assert.deepEqual(adminAccess(config, { KSTATE_ADMIN_TOKEN: TOKEN }), { token: TOKEN, extraHosts: [] });
  const file = join(dir, 'token');
  writeFileSync(file, `${TOKEN}\n`);
  const fromFile = loadConfig(undefined, { ...BROKERS, KSTATE_ADMIN_TOKEN_FILE: file });
  assert.equal(adminToken(fromFile, {}), TOKEN);
  assert.throws(
    () => adminToken(fromFile, { KSTATE_ADMIN_TOKEN: TOKEN }),
    refused(/both KSTATE_ADMIN_TOKEN and/),
  );
  const missing = loadConfig(undefined, { ...BROKERS, KSTATE_ADMIN_TOKEN_FILE: join(dir, 'nope') });
  assert.throws(() => adminToken(missing, {}), refused(/admin token file .*nope .* cannot be read/));
  assert.throws(
    () => adminToken(config, { KSTATE_ADMIN_TOKEN: 'short' }),
    refused(/KSTATE_ADMIN_TOKEN does not hold a usable token: give at least 16/),
  );
  assert.throws(
    () => adminToken(config, { KSTATE_ADMIN_TOKEN: `${TOKEN} ${TOKEN}` }),
    refused(/does not hold a usable token/),
  );
  const hosts = loadConfig(undefined, { ...BROKERS, KSTATE_HTTP_ALLOWED_HOSTS: 'lb.example, fwd:8080' });
  assert.deepEqual(adminAccess(hosts, { KSTATE_ADMIN_TOKEN: TOKEN })?.extraHosts, ['lb.example', 'fwd:8080']);
  assert.throws(
    () => loadConfig(undefined, { ...BROKERS, KSTATE_HTTP_ALLOWED_HOSTS: 'http://lb.example/' }),
    refused(/KSTATE_HTTP_ALLOWED_HOSTS is "http:\/\/lb.example\/"; allowed: host or host:port/),
  );
});

test('the token in the config file is refused with where it goes instead', () => {
  const file = join(dir, 'service.json');
  writeFileSync(file, JSON.stringify({ brokers: ['127.0.0.1:9092'], adminToken: TOKEN }));
  assert.throws(
    () => loadConfig(file, {}),
    refused(
      /unknown field 'adminToken'.*never read from the config file: set KSTATE_ADMIN_TOKEN, or adminTokenFile/,
    ),
  );
});

test('TLS files: both or neither; unreadable or unusable is CONFIG_INVALID naming them', (t) => {
  const none = loadConfig(undefined, BROKERS);
  assert.equal(tlsFiles(none), undefined);
  const half = loadConfig(undefined, { ...BROKERS, KSTATE_HTTP_TLS_CERT: join(dir, 'x.crt') });
  assert.throws(
    () => tlsFiles(half),
    refused(/KSTATE_HTTP_TLS_CERT is set without httpTlsKey \/ KSTATE_HTTP_TLS_KEY/),
  );
  const gone = loadConfig(undefined, {
    ...BROKERS,
    KSTATE_HTTP_TLS_CERT: join(dir, 'gone.crt'),
    KSTATE_HTTP_TLS_KEY: join(dir, 'gone.key'),
  });
  assert.throws(
    () => tlsFiles(gone),
    refused(/HTTP TLS certificate \(httpTlsCert \/ KSTATE_HTTP_TLS_CERT\) .*gone\.crt cannot be read/),
  );
  const files = selfSignedFiles(dir, 'a');
  if (files === undefined) return t.skip(NO_OPENSSL);
  const { cert, key } = files;
  // A client (kstate savepoint) needs only the certificate.
  assert.throws(() => tlsCertificate(half), refused(/KSTATE_HTTP_TLS_CERT\) .*x\.crt cannot be read/));
  const certOnly = loadConfig(undefined, { ...BROKERS, KSTATE_HTTP_TLS_CERT: cert });
  assert.match(tlsCertificate(certOnly)?.toString() ?? '', /BEGIN CERTIFICATE/);
  const good = loadConfig(undefined, { ...BROKERS, KSTATE_HTTP_TLS_CERT: cert, KSTATE_HTTP_TLS_KEY: key });
  assert.ok(tlsFiles(good)?.cert.toString().includes('BEGIN CERTIFICATE'));
  const garbage = join(dir, 'garbage.crt');
  writeFileSync(garbage, 'not a certificate\n');
  const bad = loadConfig(undefined, { ...BROKERS, KSTATE_HTTP_TLS_CERT: garbage, KSTATE_HTTP_TLS_KEY: key });
  assert.throws(
    () => tlsFiles(bad),
    refused(/the HTTP TLS certificate .*garbage\.crt and key .*a\.key .* cannot be used: /),
  );
});

test('brokerLossTimeoutMs: 15 s by default, 0 turns it off, under 1 s refused', () => {
  assert.equal(loadConfig(undefined, BROKERS).brokerLossTimeoutMs, 15_000);
  assert.equal(
    loadConfig(undefined, { ...BROKERS, KSTATE_BROKER_LOSS_TIMEOUT_MS: '0' }).brokerLossTimeoutMs,
    0,
  );
  assert.equal(
    loadConfig(undefined, { ...BROKERS, KSTATE_BROKER_LOSS_TIMEOUT_MS: '3000' }).brokerLossTimeoutMs,
    3000,
  );
  assert.throws(
    () => loadConfig(undefined, { ...BROKERS, KSTATE_BROKER_LOSS_TIMEOUT_MS: '500' }),
    refused(/KSTATE_BROKER_LOSS_TIMEOUT_MS is "500"; allowed: an integer >= 1000, or 0/),
  );
});
