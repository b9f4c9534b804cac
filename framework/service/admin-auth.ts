/**
 * Who may use the service's actions (`POST /savepoint`, and anything else that changes state), as
 * pure checks over a request's headers; the HTTP server (./http.ts) applies them in this order:
 *
 * 1. `Host` must name this server: one of `allowedHosts(...)` (the loopback names, the bound address,
 *    the advertised host, this machine's names when bound to every interface, and any extra host the
 *    operator lists), at the server's port. A page served from another name that resolves to this
 *    machine (DNS rebinding) sends its own name in `Host` and is refused.
 * 2. `Origin`, when present, must be this server too (scheme, host and port): a browser sends it on
 *    every cross-origin POST, including the "simple" `text/plain` ones that need no CORS preflight.
 *    `Origin: null` (sandboxed frames, file://) is refused.
 * 3. `Authorization: Bearer <token>` must carry the configured token, compared in constant time
 *    (SHA-256 of both, then `timingSafeEqual`, so neither the length nor a prefix leaks).
 *
 * A refusal is a value: 403 for 1 and 2, 401 (with `WWW-Authenticate: Bearer`) for 3. Its message
 * says what to fix, never the token or anything of the server's files.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** How actions are allowed: the token and the extra host names requests may use. */
export interface AdminAccess {
  /** The bearer token actions require (KSTATE_ADMIN_TOKEN, or the file KSTATE_ADMIN_TOKEN_FILE). */
  readonly token: string;
  /**
   * More names requests may use in `Host` and `Origin`: `host` (any port) or `host:port` (a load
   * balancer's or a port-forward's address). The defaults are in `allowedHosts`.
   */
  readonly extraHosts?: readonly string[];
}

/** One allowed host: a lower-case name or address (IPv6 without brackets); `port` undefined: any. */
export interface HostRule {
  readonly host: string;
  readonly port: number | undefined;
}

export type ActionVerdict =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly status: 401 | 403;
      readonly error: string;
      readonly headers?: Readonly<Record<string, string>>;
    };

const LOOPBACK = ['localhost', '127.0.0.1', '::1'];
const WILDCARD = new Set(['0.0.0.0', '::', '']);

/** A host as compared: lower case, no IPv6 brackets, no trailing dot. */
function normal(host: string): string {
  const h = host.trim().toLowerCase().replace(/\.$/, '');
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/**
 * The hosts a request to this server may name: the loopback names, the bound address (unless it is
 * a wildcard: then `machineNames`, this machine's host name and interface addresses), the advertised
 * host, all at `port`; and `extra` (`host` or `host:port`).
 */
export function allowedHosts(o: {
  readonly bound: string;
  readonly port: number;
  readonly advertised?: string | undefined;
  readonly machineNames?: readonly string[];
  readonly extra?: readonly string[];
}): HostRule[] {
  const names = [
    ...LOOPBACK,
    ...(WILDCARD.has(o.bound) ? (o.machineNames ?? []) : [o.bound]),
    ...(o.advertised === undefined ? [] : [o.advertised]),
  ];
  const rules: HostRule[] = names.map((n) => ({ host: normal(n), port: o.port }));
  for (const e of o.extra ?? []) {
    const parsed = parseHost(e, undefined);
    if (parsed !== undefined) rules.push(parsed);
  }
  return rules;
}

/**
 * `host`, `host:port`, `[v6]` or `[v6]:port` as in a Host header; `port` is `defaultPort` when absent.
 * Undefined for anything else (a path, credentials, spaces, a port out of range).
 */
export function parseHost(raw: string, defaultPort: number | undefined): HostRule | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(raw.trim());
  if (m === null) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return undefined;
  return { host: normal(m[1]!), port };
}

function matches(h: HostRule, rules: readonly HostRule[]): boolean {
  return rules.some((r) => r.host === h.host && (r.port === undefined || r.port === h.port));
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** True when `authorization` is `Bearer <token>` with this token; constant time in the token. */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
  // Compared even without a match, so a missing header takes the time of a wrong one.
  const equal = timingSafeEqual(digest(m?.[1] ?? ''), digest(token));
  return m !== null && equal;
}

/**
 * May this request use an action? `scheme` is the server's ('https' with TLS); `rules` from
 * `allowedHosts`.
 */
export function checkAction(
  headers: {
    readonly host?: string | undefined;
    readonly origin?: string | undefined;
    readonly authorization?: string | undefined;
  },
  o: { readonly scheme: 'http' | 'https'; readonly rules: readonly HostRule[]; readonly token: string },
): ActionVerdict {
  const defaultPort = o.scheme === 'https' ? 443 : 80;
  const host = headers.host === undefined ? undefined : parseHost(headers.host, defaultPort);
  if (host === undefined || !matches(host, o.rules)) {
    return {
      ok: false,
      status: 403,
      error:
        'Host does not name this server: actions answer only requests to its bound or advertised address (or one listed in KSTATE_HTTP_ALLOWED_HOSTS)',
    };
  }
  if (headers.origin !== undefined) {
    let origin: HostRule | undefined;
    try {
      const url = new URL(headers.origin);
      const scheme = url.protocol.replace(/:$/, '');
      origin =
        scheme === o.scheme && url.username === '' && url.password === '' && url.pathname === '/'
          ? parseHost(url.host, defaultPort)
          : undefined;
    } catch {
      origin = undefined; // 'null', or not a URL
    }
    if (origin === undefined || !matches(origin, o.rules)) {
      return {
        ok: false,
        status: 403,
        error:
          'cross-origin request refused: actions are not for web pages of other origins; send them from a command line or script (kstate savepoint), without an Origin header or with this server as the origin',
      };
    }
  }
  if (!bearerMatches(headers.authorization, o.token)) {
    return {
      ok: false,
      status: 401,
      error:
        headers.authorization === undefined
          ? 'actions need "Authorization: Bearer <admin token>" (the KSTATE_ADMIN_TOKEN the service was started with)'
          : 'the admin token is not the one the service was started with',
      headers: { 'www-authenticate': 'Bearer realm="kstate"' },
    };
  }
  return { ok: true };
}
