import type { KeyId } from '../api/keys.ts';
import { keyId } from '../state/keys.ts';
import type { ServiceRoute } from './http.ts';

/**
 * The HTTP side of interactive queries (docs/queries.md): the requests as they arrive (query
 * parameters, all strings), their parsing into checked values, the answers (`{ status, body }`, 503
 * with Retry-After) and the routes `/query` and `/query/keys` that carry them. Nothing here knows
 * the job, the routing or the state.
 */

/** One query. `key` is a string key; `keyJson` a JSON key (number, array, object). */
export interface StateQuery {
  readonly operator: string;
  readonly state: string;
  readonly key?: string;
  readonly keyJson?: string;
  /** As of this event time (time-indexed states). */
  readonly at?: string;
  /** History over [from, to) (time-indexed states). */
  readonly from?: string;
  readonly to?: string;
  readonly limit?: string;
  readonly consistency?: string;
  /** Set on a forwarded query: the owner it was sent to. */
  readonly owner?: string;
}

/** A key-range query over every partition: key ids in [fromKey, toKey), sorted, at most `limit`. */
export interface KeyRangeQuery {
  readonly operator: string;
  readonly state: string;
  readonly fromKey?: string;
  readonly toKey?: string;
  readonly limit?: string;
  readonly partition?: string;
  readonly owner?: string;
}

export interface QueryAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
  /** Seconds, with 503. */
  readonly retryAfter?: number;
}

/** A query that cannot be answered (now): its status and message; `retry` marks a transient one. */
export class Refusal {
  readonly status: number;
  readonly error: string;
  /** Transient (the job starting, a task restoring): retried for a while, then answered 503. */
  readonly retry: boolean;
  constructor(status: number, error: string, retry: boolean) {
    this.status = status;
    this.error = error;
    this.retry = retry;
  }
}

/** A key query's parameters, checked (400 refusals otherwise). Which operator it names is not checked here. */
export interface KeyQueryParams {
  readonly operator: string;
  readonly state: string;
  readonly id: KeyId;
  readonly at: number | undefined;
  readonly from: number | undefined;
  readonly to: number | undefined;
  readonly limit: number;
}

export const MAX_LIMIT = 10_000;

/** Checks a key query's parameters; throws a 400 `Refusal` saying what is wrong and how to fix it. */
export function parseKeyQuery(q: StateQuery): KeyQueryParams {
  if (typeof q.operator !== 'string' || q.operator === '')
    throw new Refusal(400, 'operator is required', false);
  if (typeof q.state !== 'string' || q.state === '') throw new Refusal(400, 'state is required', false);
  if ((q.key === undefined) === (q.keyJson === undefined)) {
    throw new Refusal(400, 'give exactly one of key (a string key) and keyJson (a JSON key)', false);
  }
  if (q.consistency !== undefined && q.consistency !== 'live') {
    throw new Refusal(
      400,
      `consistency '${q.consistency}' is not offered: queries read live state (see docs/queries.md); omit it or use consistency=live`,
      false,
    );
  }
  let id: KeyId;
  try {
    id = q.key !== undefined ? keyId(q.key) : keyId(JSON.parse(q.keyJson!));
  } catch (e) {
    throw new Refusal(
      400,
      `keyJson is not a valid key: ${e instanceof Error ? e.message : String(e)}`,
      false,
    );
  }
  const at = parseTime('at', q.at);
  const from = parseTime('from', q.from);
  const to = parseTime('to', q.to);
  if ((from === undefined) !== (to === undefined)) throw new Refusal(400, 'give both from and to', false);
  if (from !== undefined && to !== undefined && from > to) {
    throw new Refusal(400, `from (${from}) must not be after to (${to})`, false);
  }
  if (at !== undefined && from !== undefined)
    throw new Refusal(400, 'give at, or from and to, not both', false);
  return { operator: q.operator, state: q.state, id, at, from, to, limit: parseLimit(q.limit, 1000) };
}

function parseTime(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = v.trim() === '' ? Number.NaN : Number(v);
  if (!Number.isFinite(n)) {
    throw new Refusal(400, `${name} must be a finite number (event-time ms), got '${v}'`, false);
  }
  return n;
}

export function parseLimit(v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT) {
    throw new Refusal(400, `limit must be an integer 1..${MAX_LIMIT}, got '${v}'`, false);
  }
  return n;
}

export function parsePartition(v: string, partitions: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n >= partitions) {
    throw new Refusal(400, `partition must be an integer 0..${partitions - 1}, got '${v}'`, false);
  }
  return n;
}

/** The user's key of a key id: the string itself, or the JSON key a NUL-prefixed id holds. */
export function keyOf(id: KeyId): unknown {
  if (id.charCodeAt(0) !== 0) return id;
  try {
    return JSON.parse(id.slice(1));
  } catch {
    return id;
  }
}

/** 503 with Retry-After: 1. */
export function unavailable(error: string): QueryAnswer {
  return { status: 503, body: { error }, retryAfter: 1 };
}

/** The answer to a thrown refusal (500 for anything else: a bug, with its message). */
export function refusalAnswer(e: unknown): QueryAnswer {
  if (e instanceof Refusal) {
    return e.status === 503 ? unavailable(e.error) : { status: e.status, body: { error: e.error } };
  }
  return { status: 500, body: { error: e instanceof Error ? e.message : String(e) } };
}

/** What `queryRoutes` serves: anything that answers both kinds of query. */
export interface QueryAnswerer {
  query(q: StateQuery): Promise<QueryAnswer>;
  keys(q: KeyRangeQuery): Promise<QueryAnswer>;
}

/** The HTTP routes over `queries`: `/query` and `/query/keys` (GET; HEAD answers the headers). */
export function queryRoutes(queries: QueryAnswerer): Record<'/query' | '/query/keys', ServiceRoute> {
  const send = (a: QueryAnswer) => ({
    status: a.status,
    type: 'application/json; charset=utf-8',
    body: `${JSON.stringify(a.body)}\n`,
    ...(a.retryAfter === undefined ? {} : { headers: { 'retry-after': String(a.retryAfter) } }),
  });
  const params = (query: URLSearchParams): Record<string, string> => Object.fromEntries(query.entries());
  const notGet = (method: string) =>
    method === 'GET' || method === 'HEAD'
      ? undefined
      : {
          status: 405,
          type: 'application/json',
          body: `${JSON.stringify({ error: `method ${method} not allowed: use GET` })}\n`,
        };
  return {
    '/query': async ({ method, query }) =>
      notGet(method) ?? send(await queries.query(params(query) as unknown as StateQuery)),
    '/query/keys': async ({ method, query }) =>
      notGet(method) ?? send(await queries.keys(params(query) as unknown as KeyRangeQuery)),
  };
}

/** GET `url`, its JSON answer (2 s timeout): how one instance asks another by default. */
export async function fetchAnswer(url: string): Promise<QueryAnswer> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  const body = (await res.json()) as Record<string, unknown>;
  return { status: res.status, body };
}

/**
 * The URL of `q` sent to `endpoint` for `owner`. An endpoint is `host:port` (plain HTTP) or
 * `https://host:port` (an instance that serves TLS advertises its scheme); the forwarding instance
 * must then trust the other's certificate (a public CA, or `NODE_EXTRA_CA_CERTS`: docs/queries.md).
 */
export function forwardUrl(
  endpoint: string,
  path: 'query' | 'keys',
  q: StateQuery | KeyRangeQuery,
  owner: string,
): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && k !== 'owner') params.set(k, String(v));
  params.set('owner', owner);
  const base =
    endpoint.startsWith('https://') || endpoint.startsWith('http://') ? endpoint : `http://${endpoint}`;
  return `${base}/${path === 'query' ? 'query' : 'query/keys'}?${params}`;
}
