import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createSecureContext } from 'node:tls';
import { type AdminAccess, StreamError } from '../../../framework/index.ts';
import type { ServiceConfig } from './config.ts';

/**
 * Who may do what over the service's HTTP port, from the configuration (docs/service.md, "Exposing
 * the HTTP port"): the admin token that turns actions on (KSTATE_ADMIN_TOKEN, or the file
 * adminTokenFile / KSTATE_ADMIN_TOKEN_FILE; never the config file itself), and the TLS certificate and
 * key (httpTlsCert / httpTlsKey). Read at start by `kstate run`, and by `kstate savepoint` (the
 * token it sends, the certificate it trusts). Every problem is CONFIG_INVALID naming the setting; the
 * token never appears in a message.
 */

type AccessSettings = Pick<
  ServiceConfig,
  'adminTokenFile' | 'httpAllowedHosts' | 'httpTlsCert' | 'httpTlsKey'
>;

/** A token: at least 16 visible ASCII characters, no spaces (it travels as `Bearer <token>`). */
const TOKEN_SHAPE = /^[\x21-\x7e]{16,}$/;

/** The admin token, or undefined when none is configured (actions off). */
export function adminToken(config: AccessSettings, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env.KSTATE_ADMIN_TOKEN;
  if (fromEnv !== undefined && config.adminTokenFile !== undefined) {
    throw new StreamError(
      'CONFIG_INVALID',
      'both KSTATE_ADMIN_TOKEN and an admin token file (adminTokenFile / KSTATE_ADMIN_TOKEN_FILE) are set: set one',
    );
  }
  let token: string;
  let where: string;
  if (fromEnv !== undefined) {
    token = fromEnv.trim();
    where = 'environment variable KSTATE_ADMIN_TOKEN';
  } else if (config.adminTokenFile !== undefined) {
    where = `admin token file ${config.adminTokenFile} (adminTokenFile / KSTATE_ADMIN_TOKEN_FILE)`;
    try {
      token = readFileSync(config.adminTokenFile, 'utf8').trim();
    } catch (e) {
      throw new StreamError('CONFIG_INVALID', `${where} cannot be read: ${(e as Error).message}`, {
        cause: e,
      });
    }
  } else {
    return undefined;
  }
  if (!TOKEN_SHAPE.test(token)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${where} does not hold a usable token: give at least 16 visible ASCII characters without spaces (e.g. openssl rand -hex 32)`,
    );
  }
  return token;
}

/** Actions on (the token, extra host names), or undefined: off. */
export function adminAccess(
  config: AccessSettings,
  env: NodeJS.ProcessEnv = process.env,
): AdminAccess | undefined {
  const token = adminToken(config, env);
  return token === undefined ? undefined : { token, extraHosts: config.httpAllowedHosts };
}

/** The certificate file's contents (what a client trusts), or undefined without TLS. */
export function tlsCertificate(config: AccessSettings): Buffer | undefined {
  if (config.httpTlsCert === undefined) return undefined;
  try {
    return readFileSync(config.httpTlsCert);
  } catch (e) {
    throw new StreamError(
      'CONFIG_INVALID',
      `the HTTP TLS certificate (httpTlsCert / KSTATE_HTTP_TLS_CERT) ${config.httpTlsCert} cannot be read: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/** The certificate and key files' contents, or undefined without TLS. */
export function tlsFiles(config: AccessSettings): { cert: Buffer; key: Buffer } | undefined {
  if (config.httpTlsCert === undefined && config.httpTlsKey === undefined) return undefined;
  if (config.httpTlsCert === undefined || config.httpTlsKey === undefined) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${config.httpTlsCert === undefined ? 'httpTlsKey / KSTATE_HTTP_TLS_KEY is set without httpTlsCert / KSTATE_HTTP_TLS_CERT' : 'httpTlsCert / KSTATE_HTTP_TLS_CERT is set without httpTlsKey / KSTATE_HTTP_TLS_KEY'}: HTTPS needs both the certificate and its private key`,
    );
  }
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new StreamError('CONFIG_INVALID', `${what} ${path} cannot be read: ${(e as Error).message}`, {
        cause: e,
      });
    }
  };
  const files = {
    cert: read(config.httpTlsCert, 'the HTTP TLS certificate (httpTlsCert / KSTATE_HTTP_TLS_CERT)'),
    key: read(config.httpTlsKey, 'the HTTP TLS key (httpTlsKey / KSTATE_HTTP_TLS_KEY)'),
  };
  try {
    createSecureContext(files); // what node:https does at start: not PEM, or a key of another certificate
  } catch (e) {
    throw new StreamError(
      'CONFIG_INVALID',
      `the HTTP TLS certificate ${config.httpTlsCert} and key ${config.httpTlsKey} (KSTATE_HTTP_TLS_CERT / KSTATE_HTTP_TLS_KEY) cannot be used: ${(e as Error).message}; give a PEM certificate and the PEM private key that belongs to it`,
      { cause: e },
    );
  }
  return files;
}

/**
 * Where other instances forward queries to a server bound at `http`: the advertised host, else the
 * bound address (this machine's name when bound to every interface, which is no address to connect
 * to); with the scheme when it is TLS, so that they do not speak plain HTTP to it.
 */
export function queryEndpointOf(
  http: { readonly host: string; readonly port: number; readonly url: string },
  advertisedHost: string | undefined,
): string {
  const wildcard = http.host === '0.0.0.0' || http.host === '::';
  const advertised = advertisedHost ?? (wildcard ? hostname() : http.host);
  const scheme = http.url.startsWith('https:') ? 'https://' : '';
  return `${scheme}${advertised.includes(':') ? `[${advertised}]` : advertised}:${http.port}`;
}
