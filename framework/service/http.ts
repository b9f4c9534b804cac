/**
 * The service's HTTP endpoints over node:http: `GET /metrics` (the metrics exposition), `/livez`
 * (200 while the process answers) and `/readyz` (200 only when the job is ready, else 503 with a
 * JSON body saying why). Anything else is 404; other methods than GET and HEAD are 405.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamError } from '../api/errors.ts';
import type { Metrics } from '../metrics/metrics.ts';

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
   * More endpoints by path (e.g. the status page, a savepoint trigger). A route answers any method;
   * it returns the status, content type and body.
   */
  readonly routes?: Readonly<Record<string, ServiceRoute>>;
}

export type ServiceRoute = (request: {
  readonly method: string;
  readonly query: URLSearchParams;
}) => Promise<{
  readonly status: number;
  readonly type: string;
  readonly body: string;
  /** Extra response headers (e.g. `retry-after`). */
  readonly headers?: Readonly<Record<string, string>>;
}>;

export interface ServiceHttp {
  readonly port: number;
  readonly host: string;
  /** `http://host:port` */
  readonly url: string;
  /** Stop listening and close open connections. */
  close(): Promise<void>;
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
    send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`, head);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const route = options.routes?.[path];
    if (route) {
      const r = await route({ method: req.method ?? 'GET', query: url.searchParams });
      return send(res, r.status, r.type, r.body, req.method === 'HEAD', r.headers);
    }
    const known = path === '/metrics' || path === '/livez' || path === '/readyz';
    if (!known) return json(res, 404, { error: `no such endpoint: ${path}` }, req.method === 'HEAD');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(res, 405, { error: `method ${req.method} not allowed` }, false);
    }
    const head = req.method === 'HEAD';
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

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) json(res, 500, { error: e instanceof Error ? e.message : String(e) }, false);
      else res.destroy();
    });
  });
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
  return {
    port: address.port,
    host: address.address,
    url: `http://${shownHost}:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}
