import type { KeyId, Partitioner } from '../api/keys.ts';
import type { JobPlan } from '../graph/plan.ts';
import { taskScope } from '../runtime/task.ts';
import { keyGroupOf } from '../state/keys.ts';
import { openStateReader, type StateReader } from '../state/read-view.ts';
import {
  type KeyQueryParams,
  type KeyRangeQuery,
  keyOf,
  parseKeyQuery,
  parseLimit,
  parsePartition,
  type QueryAnswer,
  Refusal,
  refusalAnswer,
  type StateQuery,
} from './query-http.ts';
import type { StateQueryRegistry } from './query-registry.ts';
import { type QueryRouting, routeQuery } from './query-routing.ts';

/**
 * Interactive queries of keyed state (docs/queries.md): what a query asks of the job, answered from
 * the live state of the task that owns the key.
 *
 * `StateQueries.query(request)` checks the request (query-http.ts), finds the operator's stage in the
 * job's plan and the key's partition (its key group under the stage's partitioner:
 * `keyGroupOf(keyId(key), partitions, partitioner)`, the Kafka partition its producers put the key
 * in), and has `routeQuery` (query-routing.ts) answer it here or at the owner. Here, the task's
 * backend comes from the `StateQueryRegistry` (only while the task is live) and the value from the
 * state read view (state/read-view.ts), which alone knows how values are stored.
 * `keys(request)` does the same for a key range, partition by partition.
 *
 * Consistency: live state, i.e. every record the task has processed, including records after the
 * last completed checkpoint (which a failure may roll back and replay).
 */

export interface StateQueriesOptions {
  readonly jobId: string;
  readonly plan: () => JobPlan | undefined;
  readonly registry: StateQueryRegistry;
  readonly routing: QueryRouting;
  /** How long transient refusals (rebalance, restore, unreachable owner) are retried. Default 2000. */
  readonly retryMs?: number;
  /** How this instance calls another one: GET `url`, JSON answer. Default `fetch`. */
  readonly forward?: (url: string) => Promise<QueryAnswer>;
  /** This instance's query endpoint (`host:port`, `https://host:port` with TLS), named in every answer as `servedBy`. */
  readonly self?: string;
}

interface StageOf {
  readonly stage: number;
  readonly partitions: number;
  readonly partitioner: Partitioner;
}

export class StateQueries {
  readonly #o: StateQueriesOptions;

  constructor(o: StateQueriesOptions) {
    this.#o = o;
  }

  /** Answers a query for one key: its current value, value as of `at`, or history over [from, to). */
  async query(q: StateQuery): Promise<QueryAnswer> {
    try {
      const p = parseKeyQuery(q);
      const { stage, partitions, partitioner } = this.#stage(p.operator);
      const partition = keyGroupOf(p.id, partitions, partitioner);
      return await this.#route(partition, q.owner, 'query', q, () => this.#answerKey(p, stage, partition));
    } catch (e) {
      return refusalAnswer(e);
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
        const request = { ...q, partition: String(p) };
        const a = await this.#route(p, q.owner, 'keys', request, () => {
          const reader = this.#reader(stage, p, q.operator, q.state);
          const ids: KeyId[] = [];
          for (const k of reader.keys()) if (k >= from && (to === undefined || k < to)) ids.push(k);
          ids.sort();
          const out = ids
            .slice(0, limit)
            .map((k) => ({ key: keyOf(k), keyId: k, partition: p, value: reader.current(k) }));
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
      return refusalAnswer(e);
    }
  }

  #route(
    partition: number,
    forwardedTo: string | undefined,
    path: 'query' | 'keys',
    request: StateQuery | KeyRangeQuery,
    local: () => QueryAnswer,
  ): Promise<QueryAnswer> {
    const { routing, retryMs = 2000, forward } = this.#o;
    return routeQuery(
      { routing, retryMs, ...(forward === undefined ? {} : { forward }) },
      { partition, forwardedTo, path, request, local },
    );
  }

  /** The local answer to a key query (throws a `Refusal`). */
  #answerKey(p: KeyQueryParams, stage: number, partition: number): QueryAnswer {
    const { operator, state, id, at, from, to, limit } = p;
    const reader = this.#reader(stage, partition, operator, state);
    const base = {
      operator,
      state,
      key: keyOf(id),
      partition,
      consistency: 'live',
      ...(this.#o.self === undefined ? {} : { servedBy: this.#o.self }),
    };
    const none = () =>
      new Refusal(404, `no value for key ${JSON.stringify(keyOf(id))} in state '${state}'`, false);
    const versions = reader.versions;
    if (versions === undefined) {
      if (at !== undefined || from !== undefined) {
        throw new Refusal(
          400,
          `state '${state}' is a ${reader.meta.kind} state: at, from and to need a time-indexed state`,
          false,
        );
      }
      const value = reader.current(id);
      if (value === undefined) throw none();
      return { status: 200, body: { ...base, value } };
    }
    if (!versions.has(id)) throw none();
    if (from !== undefined && to !== undefined) {
      return { status: 200, body: { ...base, from, to, versions: versions.range(id, from, to, limit) } };
    }
    if (at !== undefined) {
      const version = versions.asOf(id, at);
      if (version === undefined) {
        throw new Refusal(
          404,
          `key ${JSON.stringify(keyOf(id))} of state '${state}' has no version at or before ${at}`,
          false,
        );
      }
      return { status: 200, body: { ...base, at, version } };
    }
    return { status: 200, body: { ...base, version: versions.latest(id) } };
  }

  #stage(operator: string): StageOf {
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

  /** The read view of `operator/state` in the live task of (stage, partition) here. */
  #reader(stage: number, partition: number, operator: string, state: string): StateReader {
    const plan = this.#o.plan()!;
    const taskId = taskScope(this.#o.jobId, plan, plan.stages[stage]!, partition).taskId;
    const backend = this.#o.registry.live(taskId);
    if (backend === undefined) {
      throw new Refusal(503, `task ${taskId} is not running here (starting, restoring or stopped)`, true);
    }
    const opened = openStateReader(backend, `${operator}/${state}`);
    if (opened.kind === 'unknown') {
      const mine = opened.states
        .filter((n) => n.startsWith(`${operator}/`))
        .map((n) => n.slice(operator.length + 1));
      throw new Refusal(
        404,
        `operator '${operator}' has no keyed state '${state}' (yet)${mine.length > 0 ? `; its states: ${mine.join(', ')}` : ''}`,
        false,
      );
    }
    if (opened.kind === 'unopened') {
      throw new Refusal(
        503,
        `state '${state}' is restored but not opened by its operator yet (${opened.reason})`,
        true,
      );
    }
    return opened.reader;
  }
}
