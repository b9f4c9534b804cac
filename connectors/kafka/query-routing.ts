import type { PartitionOwner, QueryRouting } from '../../framework/index.ts';
import { AssignerProtocol } from './internal/kafkajs.ts';
import { parseMemberInfo } from './source/assigner.ts';
import type { ConsumerHub, MembershipView } from './source/hub.ts';

/**
 * Who owns which partition, from the consumer group itself: `describeGroups` gives every member's
 * protocol metadata (its query endpoint, advertised by the co-partitioned assignor) and its current
 * assignment. So the routing table is the group's own assignment, with no registry to keep in step.
 *
 * - This instance's own partitions come from its last join (no broker call): `self`, unless a
 *   rebalance is under way (then `moving`).
 * - Another partition: the member whose assignment holds it, when the group is `Stable`; its
 *   endpoint and member id go with the forwarded query, and that member answers only while its own
 *   last join still gives it the partition (`isSelf`), so a stale owner refuses instead of
 *   answering. A group that is rebalancing, a partition nobody holds, or a member without an
 *   endpoint are `moving`: the query is retried, then answered 503 with Retry-After.
 * - The description is cached for `cacheMs` (default 1000); `fresh` (after a failed forward)
 *   bypasses the cache.
 */
export class GroupQueryRouting implements QueryRouting {
  readonly #hub: ConsumerHub;
  readonly #cacheMs: number;
  #cached: { at: number; table: Promise<Table> } | undefined;

  constructor(hub: ConsumerHub, o: { cacheMs?: number } = {}) {
    this.#hub = hub;
    this.#cacheMs = o.cacheMs ?? 1000;
  }

  async owner(partition: number, fresh: boolean): Promise<PartitionOwner> {
    const me = this.#hub.membership();
    if (me.memberId === undefined || me.rebalancing) {
      return { kind: 'moving', reason: 'this instance is joining the group or rebalancing' };
    }
    if (me.owned.includes(partition)) return { kind: 'self' };
    const now = Date.now();
    if (fresh || this.#cached === undefined || now - this.#cached.at > this.#cacheMs) {
      const table = this.#describe();
      table.catch(() => {});
      this.#cached = { at: now, table };
    }
    let table: Table;
    try {
      table = await this.#cached.table;
    } catch (e) {
      this.#cached = undefined;
      return {
        kind: 'moving',
        reason: `describing the group failed: ${e instanceof Error ? e.message : String(e)}`,
      };
    }
    if (table.state !== 'Stable') return { kind: 'moving', reason: `the group is ${table.state}` };
    const owner = table.owners.get(partition);
    if (owner === undefined) return { kind: 'moving', reason: `no member holds partition ${partition}` };
    if (owner.memberId === me.memberId) {
      return { kind: 'moving', reason: 'the group assigned this partition here; the join is not seen yet' };
    }
    if (owner.endpoint === undefined) {
      return { kind: 'moving', reason: `member ${owner.memberId} advertises no query endpoint` };
    }
    return { kind: 'remote', endpoint: owner.endpoint, owner: owner.memberId };
  }

  /** This instance in the group: its member id once joined, its partitions, a rebalance under way (the status page). */
  membership(): MembershipView {
    return this.#hub.membership();
  }

  isSelf(owner: string, partition: number): boolean {
    const me = this.#hub.membership();
    return !me.rebalancing && me.memberId === owner && me.owned.includes(partition);
  }

  async #describe(): Promise<Table> {
    const { groups } = await this.#hub.admin.describeGroups([this.#hub.groupId]);
    const g = groups[0];
    const owners = new Map<number, { memberId: string; endpoint: string | undefined }>();
    if (g === undefined) return { state: 'Dead', owners };
    for (const m of g.members) {
      const endpoint = parseMemberInfo(
        AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.userData,
      ).endpoint;
      const assignment = AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment ?? {};
      for (const parts of Object.values(assignment)) {
        for (const p of parts) owners.set(p, { memberId: m.memberId, endpoint });
      }
    }
    return { state: g.state, owners };
  }
}

interface Table {
  readonly state: string;
  readonly owners: Map<number, { memberId: string; endpoint: string | undefined }>;
}
