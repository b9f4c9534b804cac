import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** Why a test that needs a certificate skips when openssl is missing. */
export const NO_OPENSSL = 'openssl is not installed: no certificate to test HTTPS with';

/**
 * A self-signed certificate for 127.0.0.1 and localhost, made by openssl in `dir` as
 * `<name>.crt` and `<name>.key` (PEM); undefined when openssl is not installed.
 */
export function selfSignedFiles(dir: string, name: string): { cert: string; key: string } | undefined {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return { cert, key };
}
