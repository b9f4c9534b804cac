import {
  fetchAnswer,
  forwardUrl,
  type KeyRangeQuery,
  type QueryAnswer,
  Refusal,
  type StateQuery,
  unavailable,
} from './query-http.ts';

/**
 * Routing a query to the instance whose task owns the key's partition, with retries.
 *
 * `routeQuery` answers locally when `routing` names this instance (and the local task answers), and
 * otherwise forwards the query **once** to the owner `routing` names, tagged with that owner's id: an
 * instance receiving a forwarded query answers only while `routing.isSelf` still gives it the
 * partition and its task answers, else 503, so a stale owner refuses instead of answering from state
 * that is no longer current. Transient outcomes (the partition moving, a task restoring, an owner
 * refusing with 503 or not answering) are retried with backoff (100, 200, 400, 400 ... ms) for
 * `retryMs`, asking `routing` afresh after each failure; then the answer is 503 with Retry-After.
 */

/** Where a partition's state lives: this process, another instance, or nowhere right now. */
export type PartitionOwner =
  | { readonly kind: 'self' }
  | { readonly kind: 'remote'; readonly endpoint: string; readonly owner: string }
  | { readonly kind: 'moving'; readonly reason: string };

export interface QueryRouting {
  /** The owner of `partition` now; `fresh` asks to bypass any cache (after a failed forward). */
  owner(partition: number, fresh: boolean): Promise<PartitionOwner>;
  /** Whether this instance owns `partition` now, as `owner` of a forwarded request names it. */
  isSelf(owner: string, partition: number): boolean;
}

/** Every partition is local (a single instance, or a test). */
export const localRouting: QueryRouting = {
  owner: async () => ({ kind: 'self' }),
  isSelf: () => true,
};

export interface RouteOptions {
  readonly routing: QueryRouting;
  /** How long transient refusals are retried, ms. */
  readonly retryMs: number;
  /** How this instance calls another one: GET `url`, JSON answer. Default `fetchAnswer`. */
  readonly forward?: (url: string) => Promise<QueryAnswer>;
}

export interface RoutedQuery {
  readonly partition: number;
  /** The `owner` parameter of a forwarded query (undefined: it came from a client). */
  readonly forwardedTo: string | undefined;
  readonly path: 'query' | 'keys';
  /** The request as received, forwarded as it is. */
  readonly request: StateQuery | KeyRangeQuery;
  /** The answer from the local task; throws a `Refusal` (`retry` for a transient one). */
  readonly local: () => QueryAnswer;
}

/** Answers locally, or forwards once; retries transient refusals for `retryMs`. */
export async function routeQuery(o: RouteOptions, q: RoutedQuery): Promise<QueryAnswer> {
  const { routing } = o;
  const forward = o.forward ?? fetchAnswer;
  const { partition, forwardedTo } = q;
  const deadline = Date.now() + o.retryMs;
  let fresh = false;
  let last = 'the partition is moving';
  for (let attempt = 0; ; attempt++) {
    if (attempt > 0) {
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 400)));
    }
    if (forwardedTo !== undefined) {
      // A forwarded query: answer only as the owner it was meant for, from a live task.
      if (!routing.isSelf(forwardedTo, partition)) {
        return unavailable(`this instance no longer owns partition ${partition} (a rebalance moved it)`);
      }
      try {
        return q.local();
      } catch (e) {
        if (e instanceof Refusal && e.retry) return unavailable(e.error);
        throw e;
      }
    }
    const owner = await routing.owner(partition, fresh);
    fresh = true;
    if (owner.kind === 'moving') {
      last = owner.reason;
      continue;
    }
    if (owner.kind === 'self') {
      try {
        return q.local();
      } catch (e) {
        if (e instanceof Refusal && e.retry) {
          last = e.error;
          continue;
        }
        throw e;
      }
    }
    try {
      const a = await forward(forwardUrl(owner.endpoint, q.path, q.request, owner.owner));
      if (a.status !== 503) return a;
      last = `owner ${owner.endpoint}: ${String(a.body.error)}`;
    } catch (e) {
      last = `owner ${owner.endpoint} did not answer: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  return unavailable(`partition ${partition}: ${last}; retry`);
}
