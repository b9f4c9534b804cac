/**
 * A fault-injecting HTTP proxy for S3 tests: clients address the proxy (`endpoint`) instead of the store,
 * and every request is forwarded to the upstream store as it came (method, path and query, raw headers
 * in their order and case, the body as a stream) and its response back the same way, unless the current
 * plan says otherwise. The Host header is passed on unchanged: a SigV4 signature covers the Host the
 * client addressed, i.e. the proxy's, and S3Proxy checks the signature against the Host it receives (it
 * does not compare it with its own endpoint), so signed requests pass through.
 *
 * Faults, switchable at run time with `set(plan)` and `clear()`:
 * - `fail`: answer a selection of matching requests with an S3 error (503 SlowDown, the throttling answer
 *   SDKs retry with backoff, or 500 InternalError) without forwarding them; the request body is read first.
 * - `delay`: hold matching responses (forwarded or injected) for `ms` before answering.
 * - `reset`: forward a selection of matching requests but cut them: a request with a body has its first
 *   `afterBytes` (default half its Content-Length) forwarded, then the upstream request and the client's
 *   connection are destroyed; a request without a body gets half of the response body, then the same.
 * - `loseResponse`: forward a selection of matching requests whole, read the store's answer, then cut the
 *   client's connection instead of answering: the write happened but the client sees a connection error
 *   (what a retry after a lost response meets).
 * - `refuse()` closes the listener (and every open connection), so connections are refused until `accept()`.
 *
 * A selection is `every: n` (the n-th, 2n-th ... matching request; 1 = all) or `fraction: f` (each matching
 * request with probability f, drawn from a PRNG seeded with `seed`). Every `set` restarts the counters and
 * the PRNGs, so the same plan over the same sequence of requests picks the same ones.
 *
 * Counts (`counts()`) are by method, by outcome (forwarded, failed, reset, response-lost, upstream-error)
 * and by both, plus how many responses were delayed, so a test can assert that the faults it asked for
 * really happened.
 */
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type InjectedError = 'SlowDown' | 'InternalError';

export type Outcome = 'forwarded' | 'failed' | 'reset' | 'response-lost' | 'upstream-error';

export interface RequestMatch {
  /** HTTP methods (PUT and POST are the uploads: PutObject, UploadPart, Create/CompleteMultipartUpload); default all. */
  readonly methods?: readonly string[];
  /** Tested against the request's path and query; default all. */
  readonly path?: RegExp;
}

export interface Selection {
  /** Each matching request with this probability (seeded). */
  readonly fraction?: number;
  /** Every n-th matching request (1 = all). */
  readonly every?: number;
}

export interface FaultPlan {
  readonly fail?: RequestMatch & Selection & { readonly error?: InjectedError };
  readonly delay?: RequestMatch & { readonly ms: number };
  /** `afterBytes`: of the request body; default half its Content-Length (0 for a chunked body: headers only). */
  readonly reset?: RequestMatch & Selection & { readonly afterBytes?: number };
  /** Forward the whole request, let the store answer, then cut the client's connection instead of answering. */
  readonly loseResponse?: RequestMatch & Selection;
}

export interface FaultCounts {
  /** Requests received (`byMethod` summed); one still in flight has no outcome yet. */
  readonly total: number;
  readonly byMethod: Readonly<Record<string, number>>;
  readonly byOutcome: Readonly<Record<Outcome, number>>;
  /** e.g. `{ PUT: { forwarded: 5, failed: 4, reset: 0, 'response-lost': 0, 'upstream-error': 0 } }` */
  readonly byMethodOutcome: Readonly<Record<string, Readonly<Record<Outcome, number>>>>;
  readonly delayed: number;
}

export interface HandledRequest {
  readonly method: string;
  readonly path: string;
  readonly outcome: Outcome;
  readonly delayedMs: number;
}

export interface FaultProxyOptions {
  /** The store, e.g. `http://127.0.0.1:9000`. */
  readonly upstream: string;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0: a free port. */
  readonly port?: number;
  /** PRNG seed of the `fraction` selections; default 1. */
  readonly seed?: number;
  /** A first plan; default none (a transparent proxy). */
  readonly plan?: FaultPlan;
}

export interface FaultProxy {
  /** `http://host:port`: give this to the client as its endpoint. */
  readonly endpoint: string;
  readonly port: number;
  /** Replaces the plan (and restarts its selections' counters). */
  set(plan: FaultPlan): void;
  /** No faults: a transparent proxy. */
  clear(): void;
  /** Closes the listener and every open connection: new connections are refused. */
  refuse(): Promise<void>;
  /** Listens again, on the same port. */
  accept(): Promise<void>;
  counts(): FaultCounts;
  /** Every handled request in order (the last 10000). */
  history(): readonly HandledRequest[];
  resetCounts(): void;
  close(): Promise<void>;
}

const OUTCOMES: readonly Outcome[] = ['forwarded', 'failed', 'reset', 'response-lost', 'upstream-error'];
const noOutcomes = (): Record<Outcome, number> => ({
  forwarded: 0,
  failed: 0,
  reset: 0,
  'response-lost': 0,
  'upstream-error': 0,
});
const HISTORY_LIMIT = 10_000;

/** mulberry32: a small, fast, seedable PRNG with values in [0, 1). */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Decides, per matching request, whether a selection picks it. */
function selector(selection: Selection, random: () => number): () => boolean {
  const { fraction, every } = selection;
  if ((fraction === undefined) === (every === undefined)) {
    throw new Error('a fault selection needs exactly one of fraction (0..1) or every (n >= 1)');
  }
  if (every !== undefined) {
    if (!Number.isInteger(every) || every < 1) throw new Error(`every must be an integer >= 1, got ${every}`);
    let seen = 0;
    return () => ++seen % every === 0;
  }
  if (fraction === undefined || !(fraction >= 0 && fraction <= 1)) {
    throw new Error(`fraction must be in [0, 1], got ${fraction}`);
  }
  return () => random() < fraction;
}

function matches(match: RequestMatch, method: string, path: string): boolean {
  if (match.methods !== undefined && !match.methods.some((m) => m.toUpperCase() === method)) return false;
  return match.path === undefined || match.path.test(path);
}

const ERRORS: Readonly<Record<InjectedError, { status: number; message: string }>> = {
  SlowDown: { status: 503, message: 'Please reduce your request rate.' },
  InternalError: { status: 500, message: 'We encountered an internal error. Please try again.' },
};

interface ActivePlan {
  readonly plan: FaultPlan;
  readonly pickFail: (() => boolean) | undefined;
  readonly pickReset: (() => boolean) | undefined;
  readonly pickLose: (() => boolean) | undefined;
}

/** Starts the proxy on loopback; see the module comment. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const upstream = new URL(options.upstream);
  if (upstream.protocol !== 'http:')
    throw new Error(`the fault proxy forwards to http:// only, not ${upstream}`);
  const upstreamPort = Number(upstream.port || 80);
  const host = options.host ?? '127.0.0.1';
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const sockets = new Set<Socket>();
  let requestIds = 0;

  const seed = options.seed ?? 1;
  // Each plan draws from fresh PRNGs: the same plan over the same requests picks the same ones.
  const activate = (plan: FaultPlan): ActivePlan => ({
    plan,
    pickFail: plan.fail === undefined ? undefined : selector(plan.fail, prng(seed)),
    pickReset: plan.reset === undefined ? undefined : selector(plan.reset, prng(seed + 1)),
    pickLose: plan.loseResponse === undefined ? undefined : selector(plan.loseResponse, prng(seed + 2)),
  });
  let active = activate(options.plan ?? {});

  let byMethod: Record<string, number> = {};
  let byMethodOutcome: Record<string, Record<Outcome, number>> = {};
  let delayed = 0;
  let handled: HandledRequest[] = [];
  let total = 0;
  const received = (method: string) => {
    total += 1;
    byMethod[method] = (byMethod[method] ?? 0) + 1;
  };
  const record = (method: string, path: string, outcome: Outcome, delayedMs: number) => {
    byMethodOutcome[method] ??= noOutcomes();
    byMethodOutcome[method][outcome] += 1;
    if (delayedMs > 0) delayed += 1;
    handled.push({ method, path, outcome, delayedMs });
    if (handled.length > HISTORY_LIMIT) handled = handled.slice(-HISTORY_LIMIT);
  };

  const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

  const answerWithError = (req: IncomingMessage, res: ServerResponse, error: InjectedError): void => {
    const { status, message } = ERRORS[error];
    const id = `kstate-fault-${++requestIds}`;
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${error}</Code><Message>${message}</Message><Resource>${req.url ?? '/'}</Resource><RequestId>${id}</RequestId></Error>`;
    res.writeHead(status, {
      'content-type': 'application/xml',
      'content-length': Buffer.byteLength(body),
      'x-amz-request-id': id,
    });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = (req.method ?? 'GET').toUpperCase();
    const path = req.url ?? '/';
    received(method);
    const { plan, pickFail, pickReset, pickLose } = active;
    const delayMs = plan.delay !== undefined && matches(plan.delay, method, path) ? plan.delay.ms : 0;

    if (plan.fail !== undefined && pickFail !== undefined && matches(plan.fail, method, path) && pickFail()) {
      // Read the body first, as a store does before it answers; a client still sending would get EPIPE.
      req.resume();
      await new Promise<void>((done) => {
        req.once('end', done);
        req.once('error', () => done());
        req.once('close', done);
      });
      if (delayMs > 0) await sleep(delayMs);
      answerWithError(req, res, plan.fail.error ?? 'SlowDown');
      record(method, path, 'failed', delayMs);
      return;
    }

    const resetPlan =
      plan.reset !== undefined && pickReset !== undefined && matches(plan.reset, method, path) && pickReset()
        ? plan.reset
        : undefined;
    const lose =
      resetPlan === undefined &&
      plan.loseResponse !== undefined &&
      pickLose !== undefined &&
      matches(plan.loseResponse, method, path) &&
      pickLose();
    const contentLength = Number(req.headers['content-length'] ?? '0');
    const hasBody = contentLength > 0 || req.headers['transfer-encoding'] !== undefined;

    const upstreamReq = request({
      host: upstream.hostname,
      port: upstreamPort,
      method,
      path,
      // Raw [name, value, ...] pairs: names, case, order and the client's Host as they came.
      headers: req.rawHeaders,
      agent,
      setHost: false,
    });
    let wasCut = false;
    const cut = () => {
      if (wasCut) return;
      wasCut = true;
      upstreamReq.destroy();
      req.socket.destroy();
      record(method, path, 'reset', delayMs);
    };
    // Let the upstream receive the bytes sent so far before the connection goes.
    const cutSoon = () => setTimeout(cut, 50);

    if (resetPlan !== undefined && hasBody) {
      // Half the declared body; a chunked body of unknown length is cut after the headers.
      const limit = resetPlan.afterBytes ?? Math.floor(contentLength / 2);
      let sent = 0;
      upstreamReq.on('error', () => undefined);
      if (limit <= 0) {
        upstreamReq.flushHeaders();
        cutSoon();
        return;
      }
      req.on('data', (chunk: Buffer) => {
        if (sent >= limit) return;
        const part = chunk.subarray(0, limit - sent);
        sent += part.length;
        upstreamReq.write(part);
        if (sent >= limit) {
          req.pause();
          cutSoon();
        }
      });
      // afterBytes at or beyond the body: cut before the request is complete all the same.
      req.once('end', cutSoon);
      return;
    }

    upstreamReq.once('error', (error: NodeJS.ErrnoException) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const body = `upstream ${options.upstream} failed: ${error.code ?? error.message}`;
      res.writeHead(502, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      record(method, path, 'upstream-error', 0);
    });
    upstreamReq.once('response', (upstreamRes) => {
      if (lose) {
        // The store has done the work (a PUT is stored); the client never hears of it.
        upstreamRes.resume();
        upstreamRes.once('end', () => {
          req.socket.destroy();
          record(method, path, 'response-lost', 0);
        });
        return;
      }
      void (async () => {
        if (delayMs > 0) await sleep(delayMs);
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, upstreamRes.rawHeaders);
        if (resetPlan !== undefined) {
          const limit = Math.floor(Number(upstreamRes.headers['content-length'] ?? '0') / 2);
          let sent = 0;
          upstreamRes.on('data', (chunk: Buffer) => {
            if (sent >= limit) return;
            const part = chunk.subarray(0, limit - sent);
            sent += part.length;
            res.write(part);
            if (sent >= limit) cutSoon();
          });
          if (limit === 0) cutSoon();
          return;
        }
        record(method, path, 'forwarded', delayMs);
        upstreamRes.pipe(res);
        upstreamRes.once('error', () => res.destroy());
      })();
    });
    req.pipe(upstreamReq);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      res.destroy(error instanceof Error ? error : new Error(String(error)));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_error, socket) => socket.destroy());

  const listen = (port: number) =>
    new Promise<number>((done, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        const address = server.address();
        done(typeof address === 'object' && address !== null ? address.port : port);
      });
    });
  const closeListener = () =>
    new Promise<void>((done) => {
      if (!server.listening) {
        done();
        return;
      }
      server.close(() => done());
      for (const socket of sockets) socket.destroy();
    });

  const port = await listen(options.port ?? 0);
  return {
    endpoint: `http://${host}:${port}`,
    port,
    set: (plan) => {
      active = activate(plan);
    },
    clear: () => {
      active = activate({});
    },
    refuse: closeListener,
    accept: async () => {
      if (!server.listening) await listen(port);
    },
    counts: () => {
      const byOutcome = noOutcomes();
      for (const row of Object.values(byMethodOutcome)) for (const o of OUTCOMES) byOutcome[o] += row[o];
      return {
        total,
        byMethod: { ...byMethod },
        byOutcome,
        byMethodOutcome: Object.fromEntries(
          Object.entries(byMethodOutcome).map(([m, row]) => [m, { ...row }]),
        ),
        delayed,
      };
    },
    history: () => [...handled],
    resetCounts: () => {
      total = 0;
      byMethod = {};
      byMethodOutcome = {};
      delayed = 0;
      handled = [];
    },
    close: async () => {
      await closeListener();
      agent.destroy();
    },
  };
}
