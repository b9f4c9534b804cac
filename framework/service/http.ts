/**
 * The service's HTTP endpoints over node:http (node:https with `tls`): `GET /metrics` (the metrics
 * exposition), `/livez` (200 while the process answers) and `/readyz` (200 only when the job is
 * ready, else 503 with a JSON body saying why), more read-only `routes`, and `actions` (endpoints that
 * change state, POST only). Anything else is 404; other methods than GET and HEAD are 405.
 *
 * Read-only endpoints answer anyone who reaches the bound address. Actions are off (404) unless
 * `admin` is given; then each request must pass ./admin-auth.ts (Host and Origin name this server, the
 * bearer token matches) before the action runs. A thrown error is a 500 whose body names no detail
 * (the message goes to `onError`): bodies never carry server paths.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { StreamError } from '../api/errors.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { type AdminAccess, allowedHosts, checkAction } from './admin-auth.ts';

/** A readiness answer: a boolean, or a verdict with the reason (shown in the 503 body). */
export type ReadyVerdict = boolean | { readonly ready: boolean; readonly reason?: string };

export interface ServiceHttpOptions {
  /** TCP port; 0 picks a free one (see `ServiceHttp.port`). */
  readonly port: number;
  /** Default 127.0.0.1; '0.0.0.0' (or '::') to be scraped from other hosts. */
  readonly host?: string;
  readonly metrics: Pick<Metrics, 'render' | 'contentType'>;
  /** Readiness, e.g. `() => instrumented.readiness()`. */
  readonly ready: () => ReadyVerdict;
  /** Liveness; default: always live (the endpoint answering proves the event loop turns). */
  readonly live?: () => boolean;
  /**
   * More read-only endpoints by path (e.g. the status page, queries): open to anyone who reaches the
   * port, so nothing that changes state (that is `actions`). A route answers any method;
   * it returns the status, content type and body.
   */
  readonly routes?: Readonly<Record<string, ServiceRoute>>;
  /**
   * Endpoints that change state (e.g. POST /savepoint), by path: POST only, and answered only with
   * `admin` set and the request passing its checks (./admin-auth.ts); otherwise 404.
   */
  readonly actions?: Readonly<Record<string, ServiceRoute>>;
  /** Turns actions on: their bearer token and extra allowed host names. */
  readonly admin?: AdminAccess;
  /** The host other instances and clients use for this server (allowed in Host and Origin). */
  readonly advertisedHost?: string;
  /** Serve HTTPS with this certificate and key (PEM); a bad pair is CONFIG_INVALID at start. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Errors a route threw (answered 500 without detail): for the log. */
  readonly onError?: (e: unknown, path: string) => void;
}

export type ServiceRoute = (request: {
  readonly method: string;
  readonly query: URLSearchParams;
}) => Promise<ServiceAnswer>;

export interface ServiceAnswer {
  readonly status: number;
  readonly type: string;
  readonly body: string;
  /** Extra response headers (e.g. `retry-after`). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ServiceHttp {
  readonly port: number;
  readonly host: string;
  /** `http://host:port` (`https://` with TLS) */
  readonly url: string;
  /** Stop listening and close open connections. */
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** This machine's host name and interface addresses: how other hosts reach a wildcard-bound server. */
function machineNames(): string[] {
  const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
  return [hostname(), ...addresses];
}

export async function startServiceHttp(options: ServiceHttpOptions): Promise<ServiceHttp> {
  const host = options.host ?? '127.0.0.1';
  const { port, metrics, ready, live } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new StreamError('CONFIG_INVALID', `HTTP port ${String(port)} is invalid: use an integer 0..65535`);
  }

  const send = (
    res: ServerResponse,
    status: number,
    type: string,
    body: string,
    head: boolean,
    headers: Readonly<Record<string, string>> = {},
  ) => {
    res.writeHead(status, {
      ...headers,
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(head ? undefined : body);
  };
  const json = (res: ServerResponse, status: number, value: unknown, head: boolean) =>
    send(res, status, JSON_TYPE, `${JSON.stringify(value)}\n`, head);

  const scheme = options.tls === undefined ? 'http' : 'https';
  /** Set once listening (the rules need the port, which 0 picks). */
  let hostRules: ReturnType<typeof allowedHosts> = [];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const head = req.method === 'HEAD';
    const action = Object.hasOwn(options.actions ?? {}, path) ? options.actions?.[path] : undefined;
    if (action) {
      const admin = options.admin;
      if (admin === undefined) {
        return json(
          res,
          404,
          {
            error: `${path} is an action, and actions are off on this service: it enables them with an admin token (docs/service.md, "Exposing the HTTP port")`,
          },
          head,
        );
      }
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        return json(res, 405, { error: `${path} takes POST, not ${req.method}` }, head);
      }
      const verdict = checkAction(
        { host: req.headers.host, origin: req.headers.origin, authorization: req.headers.authorization },
        { scheme, rules: hostRules, token: admin.token },
      );
      if (!verdict.ok)
        return send(
          res,
          verdict.status,
          JSON_TYPE,
          `${JSON.stringify({ error: verdict.error })}\n`,
          false,
          verdict.headers,
        );
      const r = await action({ method: 'POST', query: url.searchParams });
      return send(res, r.status, r.type, r.body, false, r.headers);
    }
    const route = Object.hasOwn(options.routes ?? {}, path) ? options.routes?.[path] : undefined;
    if (route) {
      const r = await route({ method: req.method ?? 'GET', query: url.searchParams });
      return send(res, r.status, r.type, r.body, head, r.headers);
    }
    const known = path === '/metrics' || path === '/livez' || path === '/readyz';
    if (!known) return json(res, 404, { error: `no such endpoint: ${path}` }, head);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(res, 405, { error: `method ${req.method} not allowed` }, false);
    }
    if (path === '/metrics') return send(res, 200, metrics.contentType, await metrics.render(), head);
    if (path === '/livez') {
      const ok = live?.() ?? true;
      return json(res, ok ? 200 : 503, { status: ok ? 'live' : 'not live' }, head);
    }
    const v = ready();
    const verdict = typeof v === 'boolean' ? { ready: v, reason: v ? 'ready' : 'not ready' } : v;
    return json(
      res,
      verdict.ready ? 200 : 503,
      { status: verdict.ready ? 'ready' : 'not ready', reason: verdict.reason ?? '', ...verdict },
      head,
    );
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e: unknown) => {
      options.onError?.(e, req.url ?? '');
      // No detail: a message may name files of the server (the log has it).
      if (!res.headersSent)
        json(res, 500, { error: 'internal error (the service log has the details)' }, false);
      else res.destroy();
    });
  };
  let server: ReturnType<typeof createServer>;
  if (options.tls === undefined) server = createServer(onRequest);
  else {
    try {
      server = createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, onRequest);
    } catch (e) {
      throw new StreamError(
        'CONFIG_INVALID',
        `the HTTP TLS certificate and key cannot be used (${e instanceof Error ? e.message : String(e)}): give a PEM certificate and the PEM private key that belongs to it`,
        { cause: e },
      );
    }
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      reject(
        e.code === 'EADDRINUSE'
          ? new StreamError(
              'CONFIG_INVALID',
              `HTTP port ${port} on ${host} is already in use: choose another port for /metrics, /livez and /readyz`,
              { cause: e },
            )
          : e.code === 'EACCES'
            ? new StreamError(
                'CONFIG_INVALID',
                `HTTP port ${port} on ${host} needs privileges: use a port above 1023`,
                {
                  cause: e,
                },
              )
            : new StreamError('CONFIG_INVALID', `cannot listen on ${host}:${port}: ${e.message}`, {
                cause: e,
              }),
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  if (options.admin !== undefined) {
    hostRules = allowedHosts({
      bound: address.address,
      port: address.port,
      advertised: options.advertisedHost,
      machineNames: machineNames(),
      extra: options.admin.extraHosts ?? [],
    });
  }
  return {
    port: address.port,
    host: address.address,
    url: `${scheme}://${shownHost}:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}
