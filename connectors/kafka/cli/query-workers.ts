import cluster from 'node:cluster';
import {
  type KeyRangeQuery,
  type QueryAnswer,
  type QueryAnswerer,
  queryRoutes,
  type ServiceRoute,
  type StateQuery,
} from '../../../framework/index.ts';
import { answerPrimary, askWorkers } from './worker-ipc.ts';

/**
 * Interactive queries under `kstate run --workers n` (docs/queries.md). The workers run no HTTP
 * server: the primary serves /query and /query/keys, and every worker advertises the primary's
 * endpoint in the group (`workerQueryEndpoint`), each under its own member id. So:
 *
 * 1. A client's query goes over IPC to one worker (taking turns among the ready ones), which
 *    routes it as a single instance does (query-routing.ts): its own partition is answered from its
 *    task; another instance's is forwarded over HTTP to that instance; a sibling worker's is
 *    forwarded to this primary, tagged with the sibling's member id.
 * 2. A forwarded query (it carries `owner`) goes to every worker: only the one that is that member and
 *    still holds the partition answers, the others refuse with 503; the primary passes on the
 *    answer that is not a 503 (else a 503).
 *
 * An answer served by a worker names it (`worker`: its slot).
 * A worker that does not answer within `timeoutMs` counts as a 503 with Retry-After.
 */

/** IPC request kind of queries. */
const KIND = 'query';

/** Environment variable by which the primary tells its workers its query endpoint. */
export const WORKER_QUERY_ENDPOINT_ENV = 'KSTATE_WORKER_QUERY_ENDPOINT';

/** In a worker: the endpoint to advertise (the primary's), else undefined. */
export function workerQueryEndpoint(): string | undefined {
  return cluster.isWorker ? process.env[WORKER_QUERY_ENDPOINT_ENV] : undefined;
}

/**
 * Worker side: answer the primary's queries with `queries`. An answer served here (its `servedBy` is
 * the primary's `endpoint`) names this worker (`slot`) unless the sibling it came from did; one from
 * another instance names none.
 */
export function answerQueryRequests(
  queries: QueryAnswerer,
  slot: string | undefined,
  endpoint: string | undefined,
): void {
  answerPrimary(KIND, async (m) => {
    const request = m.request as StateQuery & KeyRangeQuery;
    const a = m.path === 'keys' ? await queries.keys(request) : await queries.query(request);
    const mine = slot !== undefined && a.body.servedBy === endpoint && a.body.worker === undefined;
    return { answer: mine ? { ...a, body: { ...a.body, worker: Number(slot) } } : a };
  });
}

/**
 * Primary side: the answerer behind its /query and /query/keys. A client's query goes to a worker
 * that `ready` says is ready when there is one (a worker still restoring would only answer 503).
 */
export function workersQueryAnswerer(timeoutMs: number, ready: (workerId: number) => boolean): QueryAnswerer {
  const ask = async (path: 'query' | 'keys', request: StateQuery | KeyRangeQuery): Promise<QueryAnswer> => {
    const forwarded = request.owner !== undefined;
    const { answers, asked } = await askWorkers(
      KIND,
      { path, request },
      timeoutMs,
      (a) => a.answer as QueryAnswer | undefined,
      { one: !forwarded, prefer: (w) => ready(w.id) },
    );
    const answer = answers.find((a) => a.status !== 503) ?? answers[0];
    if (answer !== undefined && (answers.length === asked || answer.status !== 503)) return answer;
    const error =
      asked === 0
        ? 'no worker is running (starting or restarting); retry'
        : `${asked - answers.length} of ${asked} workers did not answer within ${timeoutMs} ms; retry`;
    return { status: 503, body: { error }, retryAfter: 1 };
  };
  return { query: (q) => ask('query', q), keys: (q) => ask('keys', q) };
}

/** /query and /query/keys of the primary. */
export function workersQueryRoutes(
  timeoutMs: number,
  ready: (workerId: number) => boolean,
): Record<string, ServiceRoute> {
  return queryRoutes(workersQueryAnswerer(timeoutMs, ready));
}
