import type { KeyId, Partitioner } from '../api/keys.ts';
import type { Scope } from '../checkpoint/storage/storage.ts';
import type { JobPlan } from '../graph/plan.ts';
import type { JobListener } from '../runtime/job.ts';
import { taskScope } from '../runtime/task.ts';
import type { KeyedStateBackend, StateMeta } from '../state/backend.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';
import { checkTime, readAsOf, readLatest, readRange, versionStore } from '../state/time-index.ts';
import type { TtlValue } from '../state/value-codec.ts';

/**
 * Interactive queries of keyed state: the live state of the tasks running in this process, and the
 * routing of a query to the instance that owns the key's partition.
 *
 * - `StateQueryRegistry` tracks the keyed backend of every task here (by wrapping the job's backend
 *   factory) and whether the task is live: restored and not stopped (from job listener events).
 * - `StateQueries.query(request)` answers one request: it computes the key's partition (its key
 *   group under its stage's partitioner: `keyGroupOf(keyId(key), partitions, partitioner)`, the
 *   Kafka partition its producers put the key in), answers from the local task
 *   when this instance owns it and the task is live, and otherwise forwards it once to the owner that
 *   `QueryRouting` names (the forwarded request carries the owner it was meant for; an instance that
 *   is not that owner, or whose task is not live, refuses it with 503 instead of answering from stale
 *   state). Transient refusals are retried for `retryMs`, then answered 503 with Retry-After.
 *
 * Consistency: live state, i.e. every record the task has processed, including records after the
 * last completed checkpoint (which a failure may roll back and replay). See docs/queries.md.
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

interface TaskEntry {
  backend: KeyedStateBackend;
  live: boolean;
}

/** The keyed backends of the tasks in this process, and which of them are live. */
export class StateQueryRegistry {
  readonly #tasks = new Map<string, TaskEntry>();

  /** Wraps a job's backend factory (default: heap) so that every task's backend is known here. */
  track(
    factory: ((scope: Scope) => KeyedStateBackend | Promise<KeyedStateBackend>) | undefined,
  ): (scope: Scope) => Promise<KeyedStateBackend> {
    const make = factory ?? (() => new HeapKeyedStateBackend());
    return async (scope) => {
      const backend = await make(scope);
      const entry: TaskEntry = { backend, live: false };
      this.#tasks.set(scope.taskId, entry);
      const close = backend.close.bind(backend);
      backend.close = async () => {
        if (this.#tasks.get(scope.taskId) === entry) this.#tasks.delete(scope.taskId);
        entry.live = false;
        await close();
      };
      return backend;
    };
  }

  /** Job listener events that make a task live (restored) and not live (stopped, failed). */
  listener(): JobListener {
    const set = (taskId: string, live: boolean) => {
      const e = this.#tasks.get(taskId);
      if (e !== undefined) e.live = live;
    };
    return {
      restored: (r) => set(r.taskId, true),
      taskStopped: (t) => set(t.taskId, false),
      taskFailed: (f) => set(f.taskId, false),
    };
  }

  /** The task's backend when the task is live. */
  live(taskId: string): KeyedStateBackend | undefined {
    const e = this.#tasks.get(taskId);
    return e?.live ? e.backend : undefined;
  }
}

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

export interface StateQueriesOptions {
  readonly jobId: string;
  readonly plan: () => JobPlan | undefined;
  readonly registry: StateQueryRegistry;
  readonly routing: QueryRouting;
  /** How long transient refusals (rebalance, restore, unreachable owner) are retried. Default 2000. */
  readonly retryMs?: number;
  /** How this instance calls another one: GET `url`, JSON answer. Default `fetch`. */
  readonly forward?: (url: string) => Promise<QueryAnswer>;
  readonly self?: string;
}

const MAX_LIMIT = 10_000;

interface Parsed {
  readonly q: StateQuery;
  readonly id: KeyId;
  readonly at: number | undefined;
  readonly from: number | undefined;
  readonly to: number | undefined;
  readonly limit: number;
  readonly stage: number;
  readonly partition: number;
}

class Refusal {
  readonly status: number;
  readonly error: string;
  /** Transient: retried, then 503. */
  readonly retry: boolean;
  constructor(status: number, error: string, retry: boolean) {
    this.status = status;
    this.error = error;
    this.retry = retry;
  }
}

export class StateQueries {
  readonly #o: StateQueriesOptions;
  readonly #forward: (url: string) => Promise<QueryAnswer>;

  constructor(o: StateQueriesOptions) {
    this.#o = o;
    this.#forward = o.forward ?? fetchAnswer;
  }

  /** Answers a query for one key: its current value, value as of `at`, or history over [from, to). */
  async query(q: StateQuery): Promise<QueryAnswer> {
    try {
      const parsed = this.#parse(q);
      return await this.#route(parsed.partition, q.owner, 'query', q, () => this.#local(parsed));
    } catch (e) {
      return refusal(e);
    }
  }

  /** Key ids of a state in [fromKey, toKey) over every partition (or one), sorted, with values. */
  async keys(q: KeyRangeQuery): Promise<QueryAnswer> {
    try {
      const { stage, partitions } = this.#stage(q.operator);
      const limit = parseLimit(q.limit, 100);
      const from = q.fromKey ?? '';
      const to = q.toKey;
      if (to !== undefined && to <= from) throw new Refusal(400, `toKey must be greater than fromKey`, false);
      const only = q.partition === undefined ? undefined : parsePartition(q.partition, partitions);
      const parts = only === undefined ? [...Array(partitions).keys()] : [only];
      const rows: { key: unknown; keyId: KeyId; partition: number; value: unknown }[] = [];
      for (const p of parts) {
        const a = await this.#route(p, q.owner, 'keys', { ...q, partition: String(p) }, () => {
          const backend = this.#backend(stage, p);
          const meta = this.#meta(backend, q.operator, q.state);
          const name = `${q.operator}/${q.state}`;
          const ids: KeyId[] = [];
          const all =
            meta.kind === 'timeIndexed'
              ? versionStore(backend, name).keys()
              : backend.entries(name).map(([k]) => k);
          for (const k of all) if (k >= from && (to === undefined || k < to)) ids.push(k);
          ids.sort();
          const out = ids.slice(0, limit).map((k) => ({
            key: keyOf(k),
            keyId: k,
            partition: p,
            value: currentValue(backend, meta, name, k),
          }));
          return { status: 200, body: { rows: out } };
        });
        if (a.status !== 200) return a;
        rows.push(...(a.body.rows as typeof rows));
      }
      rows.sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));
      return {
        status: 200,
        body: { operator: q.operator, state: q.state, consistency: 'live', rows: rows.slice(0, limit) },
      };
    } catch (e) {
      return refusal(e);
    }
  }

  #parse(q: StateQuery): Parsed {
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
    const time = (name: string, v: string | undefined): number | undefined => {
      if (v === undefined) return undefined;
      const n = v.trim() === '' ? Number.NaN : Number(v);
      if (!Number.isFinite(n))
        throw new Refusal(400, `${name} must be a finite number (event-time ms), got '${v}'`, false);
      return n;
    };
    const at = time('at', q.at);
    const from = time('from', q.from);
    const to = time('to', q.to);
    if ((from === undefined) !== (to === undefined)) throw new Refusal(400, 'give both from and to', false);
    if (from !== undefined && to !== undefined && from > to) {
      throw new Refusal(400, `from (${from}) must not be after to (${to})`, false);
    }
    if (at !== undefined && from !== undefined)
      throw new Refusal(400, 'give at, or from and to, not both', false);
    const { stage, partitions, partitioner } = this.#stage(q.operator);
    const limit = parseLimit(q.limit, 1000);
    return { q, id, at, from, to, limit, stage, partition: keyGroupOf(id, partitions, partitioner) };
  }

  #local(p: Parsed): QueryAnswer {
    const { q, id, at, from, to, limit, stage, partition } = p;
    const backend = this.#backend(stage, partition);
    const meta = this.#meta(backend, q.operator, q.state);
    const name = `${q.operator}/${q.state}`;
    const base = {
      operator: q.operator,
      state: q.state,
      key: keyOf(id),
      partition,
      consistency: 'live',
      ...(this.#o.self === undefined ? {} : { servedBy: this.#o.self }),
    };
    if (meta.kind !== 'timeIndexed') {
      if (at !== undefined || from !== undefined) {
        throw new Refusal(
          400,
          `state '${q.state}' is a ${meta.kind} state: at, from and to need a time-indexed state`,
          false,
        );
      }
      const value = currentValue(backend, meta, name, id);
      if (value === undefined)
        throw new Refusal(404, `no value for key ${JSON.stringify(keyOf(id))} in state '${q.state}'`, false);
      return { status: 200, body: { ...base, value } };
    }
    const store = versionStore(backend, name);
    if (store.times(id).length === 0) {
      throw new Refusal(404, `no value for key ${JSON.stringify(keyOf(id))} in state '${q.state}'`, false);
    }
    if (from !== undefined && to !== undefined) {
      return { status: 200, body: { ...base, from, to, versions: readRange(store, id, from, to, limit) } };
    }
    if (at !== undefined) {
      const v = readAsOf(store, id, checkTime('at', at));
      if (v === undefined) {
        throw new Refusal(
          404,
          `key ${JSON.stringify(keyOf(id))} of state '${q.state}' has no version at or before ${at}`,
          false,
        );
      }
      return { status: 200, body: { ...base, at, version: v } };
    }
    return { status: 200, body: { ...base, version: readLatest(store, id) } };
  }

  /** Answers locally, or forwards once; retries transient refusals for `retryMs`. */
  async #route(
    partition: number,
    forwardedTo: string | undefined,
    path: 'query' | 'keys',
    q: StateQuery | KeyRangeQuery,
    answer: () => QueryAnswer,
  ): Promise<QueryAnswer> {
    const deadline = Date.now() + (this.#o.retryMs ?? 2000);
    let fresh = false;
    let last = 'the partition is moving';
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        if (Date.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 400)));
      }
      if (forwardedTo !== undefined) {
        // A forwarded query: answer only as the owner it was meant for, from a live task.
        if (!this.#o.routing.isSelf(forwardedTo, partition)) {
          return unavailable(`this instance no longer owns partition ${partition} (a rebalance moved it)`);
        }
        try {
          return answer();
        } catch (e) {
          if (e instanceof Refusal && e.retry) return unavailable(e.error);
          throw e;
        }
      }
      const owner = await this.#o.routing.owner(partition, fresh);
      fresh = true;
      if (owner.kind === 'moving') {
        last = owner.reason;
        continue;
      }
      if (owner.kind === 'self') {
        try {
          return answer();
        } catch (e) {
          if (e instanceof Refusal && e.retry) {
            last = e.error;
            continue;
          }
          throw e;
        }
      }
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(q)) if (v !== undefined && k !== 'owner') params.set(k, String(v));
      params.set('owner', owner.owner);
      try {
        const a = await this.#forward(
          `http://${owner.endpoint}/${path === 'query' ? 'query' : 'query/keys'}?${params}`,
        );
        if (a.status !== 503) return a;
        last = `owner ${owner.endpoint}: ${String(a.body.error)}`;
      } catch (e) {
        last = `owner ${owner.endpoint} did not answer: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    return unavailable(`partition ${partition}: ${last}; retry`);
  }

  #stage(operator: string): { stage: number; partitions: number; partitioner: Partitioner } {
    const plan = this.#o.plan();
    if (plan === undefined) throw new Refusal(503, 'the job is still starting', true);
    const node = plan.graph.nodes.find((n) => n.uid === operator);
    if (node === undefined) {
      throw new Refusal(
        404,
        `no operator '${operator}' in job '${this.#o.jobId}'; operators: ${plan.graph.nodes.map((n) => n.uid).join(', ')}`,
        false,
      );
    }
    const stage = plan.stages.find((s) => s.nodes.includes(node.id))!;
    return { stage: stage.index, partitions: stage.partitions, partitioner: stage.partitioner };
  }

  #backend(stage: number, partition: number): KeyedStateBackend {
    const plan = this.#o.plan()!;
    const taskId = taskScope(this.#o.jobId, plan, plan.stages[stage]!, partition).taskId;
    const backend = this.#o.registry.live(taskId);
    if (backend === undefined) {
      throw new Refusal(503, `task ${taskId} is not running here (starting, restoring or stopped)`, true);
    }
    return backend;
  }

  #meta(backend: KeyedStateBackend, operator: string, state: string): StateMeta {
    const name = `${operator}/${state}`;
    const metas = backend.states?.() ?? [];
    const meta = metas.find((m) => m.name === name);
    if (meta === undefined) {
      const mine = metas
        .filter((m) => m.name.startsWith(`${operator}/`))
        .map((m) => m.name.slice(operator.length + 1));
      throw new Refusal(
        404,
        `operator '${operator}' has no keyed state '${state}' (yet)${mine.length > 0 ? `; its states: ${mine.join(', ')}` : ''}`,
        false,
      );
    }
    // A restored state nobody registered yet: register it (built-in serializers only) to read it.
    try {
      backend.register(meta);
    } catch (e) {
      throw new Refusal(
        503,
        `state '${state}' is restored but not opened by its operator yet (${e instanceof Error ? e.message : String(e)})`,
        true,
      );
    }
    return meta;
  }
}

function currentValue(backend: KeyedStateBackend, meta: StateMeta, name: string, id: KeyId): unknown {
  if (meta.kind === 'timeIndexed') return readLatest(versionStore(backend, name), id);
  const stored = backend.get(name, id);
  if (stored === undefined || meta.ttl === undefined) return jsonSafe(stored);
  if (meta.kind === 'list') return (stored as TtlValue<unknown>[]).map((w) => w.v);
  if (meta.kind === 'map') return [...(stored as Map<unknown, TtlValue<unknown>>)].map(([k, w]) => [k, w.v]);
  return jsonSafe((stored as TtlValue<unknown>).v);
}

function jsonSafe(v: unknown): unknown {
  return v instanceof Map ? [...v] : v;
}

function keyOf(id: KeyId): unknown {
  if (id.charCodeAt(0) !== 0) return id;
  try {
    return JSON.parse(id.slice(1));
  } catch {
    return id;
  }
}

function parseLimit(v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT) {
    throw new Refusal(400, `limit must be an integer 1..${MAX_LIMIT}, got '${v}'`, false);
  }
  return n;
}

function parsePartition(v: string, partitions: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n >= partitions) {
    throw new Refusal(400, `partition must be an integer 0..${partitions - 1}, got '${v}'`, false);
  }
  return n;
}

function unavailable(error: string): QueryAnswer {
  return { status: 503, body: { error }, retryAfter: 1 };
}

function refusal(e: unknown): QueryAnswer {
  if (e instanceof Refusal) {
    return e.status === 503 ? unavailable(e.error) : { status: e.status, body: { error: e.error } };
  }
  return { status: 500, body: { error: e instanceof Error ? e.message : String(e) } };
}

async function fetchAnswer(url: string): Promise<QueryAnswer> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  const body = (await res.json()) as Record<string, unknown>;
  return { status: res.status, body };
}

/** The HTTP routes over `queries`: `/query` and `/query/keys` (GET). */
export function queryRoutes(queries: StateQueries) {
  const send = (a: QueryAnswer) => ({
    status: a.status,
    type: 'application/json; charset=utf-8',
    body: `${JSON.stringify(a.body)}\n`,
    ...(a.retryAfter === undefined ? {} : { headers: { 'retry-after': String(a.retryAfter) } }),
  });
  const params = (query: URLSearchParams): Record<string, string> => Object.fromEntries(query.entries());
  const get = (method: string) =>
    method === 'GET' || method === 'HEAD'
      ? undefined
      : {
          status: 405,
          type: 'application/json',
          body: `${JSON.stringify({ error: `method ${method} not allowed: use GET` })}\n`,
        };
  return {
    '/query': async ({ method, query }: { method: string; query: URLSearchParams }) =>
      get(method) ?? send(await queries.query(params(query) as unknown as StateQuery)),
    '/query/keys': async ({ method, query }: { method: string; query: URLSearchParams }) =>
      get(method) ?? send(await queries.keys(params(query) as unknown as KeyRangeQuery)),
  };
}
