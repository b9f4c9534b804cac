import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { checkServerIdentity, rootCertificates } from 'node:tls';
import { CommandError } from './command-error.ts';
import type { ServiceConfig } from './config.ts';
import { EXIT } from './exit-codes.ts';
import { adminToken, tlsCertificate } from './http-access.ts';

/**
 * `kstate savepoint <name> [--port n]`: asks the running service for a savepoint (POST
 * /savepoint?name=, framework/service/http.ts) with the admin token of the same configuration
 * (KSTATE_ADMIN_TOKEN or KSTATE_ADMIN_TOKEN_FILE) as `Authorization: Bearer`. It connects to the
 * configured httpHost (127.0.0.1 when that is a wildcard). With TLS configured (httpTlsCert) it speaks
 * HTTPS, trusting that certificate besides the usual roots, and checks that the certificate names
 * advertisedHost when set (else the address it connects to). Returns the service's answer (one JSON
 * line); a refusal is a CommandError with the exit code of its cause.
 */
export async function triggerSavepoint(
  name: string,
  port: number,
  config: ServiceConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const token = adminToken(config, env);
  const cert = tlsCertificate(config);
  const wildcard = config.httpHost === '0.0.0.0' || config.httpHost === '::';
  const host = wildcard ? '127.0.0.1' : config.httpHost;
  const named = config.advertisedHost;
  const path = `/savepoint?name=${encodeURIComponent(name)}`;
  const options = {
    host,
    port,
    path,
    method: 'POST',
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  };
  let res: IncomingMessage;
  let body: string;
  try {
    res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req =
        cert === undefined
          ? httpRequest(options, resolve)
          : httpsRequest(
              {
                ...options,
                ca: [...rootCertificates, cert.toString()],
                ...(named === undefined
                  ? {}
                  : {
                      servername: named,
                      checkServerIdentity: (_: string, peer) => checkServerIdentity(named, peer),
                    }),
              },
              resolve,
            );
      req.on('error', reject);
      req.end();
    });
    body = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8').trim()));
      res.on('error', reject);
    });
  } catch (e) {
    throw new CommandError(
      EXIT.UNAVAILABLE,
      `no service answers on port ${port}: is the job running (kstate run) on ${host}, and is --port its httpPort${cert === undefined ? '' : ', and is httpTlsCert the certificate it serves'}? (${(e as Error).message})`,
      { cause: e },
    );
  }
  const status = res.statusCode ?? 0;
  if (status >= 200 && status < 300) return body;
  const said = errorOf(body);
  const refused = (exit: number, what: string) =>
    new CommandError(exit, `the service refused the savepoint (${status}): ${what}`);
  switch (status) {
    case 400:
      throw refused(EXIT.USAGE, said);
    case 401:
      throw refused(
        EXIT.NO_PERMISSION,
        token === undefined
          ? `${said}. Set KSTATE_ADMIN_TOKEN (or KSTATE_ADMIN_TOKEN_FILE) as for the service`
          : said,
      );
    case 403:
      throw refused(EXIT.NO_PERMISSION, said);
    case 404:
      throw refused(EXIT.UNAVAILABLE, said);
    case 409:
      throw refused(EXIT.DATA_ERROR, said);
    case 503:
      throw refused(EXIT.UNAVAILABLE, said);
    default:
      throw refused(EXIT.JOB_FAILED, said);
  }
}

/** The `error` of a JSON answer, else the body as it is. */
function errorOf(body: string): string {
  try {
    const v = JSON.parse(body) as { error?: unknown };
    if (typeof v.error === 'string') return v.error;
  } catch {
    // not JSON
  }
  return body;
}
