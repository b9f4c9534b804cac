import { AssignerProtocol, type PartitionAssigner } from '../internal/kafkajs.ts';

/**
 * A member's protocol user data: the partitions it owns now, and the host:port where it answers
 * state queries (interactive queries, docs/queries.md). Older members sent the bare array.
 */
export interface MemberInfo {
  readonly owned: number[];
  readonly endpoint: string | undefined;
}

/**
 * Assigns partition p of *every* subscribed topic to the same member, so co-partitioned topics
 * (a stage's inputs) land in one task. Sticky: a member keeps the partitions it reported owning (in
 * its user data) as long as that keeps the spread even; the rest go round robin to the members with
 * the fewest. `ownedNow` tells what this member owns at the time it joins.
 */
export const coPartitionedAssigner =
  (ownedNow: () => readonly number[], endpoint?: string): PartitionAssigner =>
  ({ cluster }) => ({
    name: 'kstate-copartitioned',
    version: 1,
    async assign({ members, topics }) {
      const counts = topics.map((t) => cluster.findTopicPartitionMetadata(t).length);
      const partitions = Math.max(0, ...counts);
      const ids = members.map((m) => m.memberId).sort();
      const owned = new Map<string, number[]>(ids.map((id) => [id, []]));
      const cap = Math.ceil(partitions / Math.max(1, ids.length));
      const taken = new Set<number>();
      // Keep what members owned before (from their user data), up to an even share.
      for (const m of members) {
        const meta = AssignerProtocol.MemberMetadata.decode(m.memberMetadata);
        const previous = parseMemberInfo(meta?.userData).owned;
        for (const p of previous) {
          const mine = owned.get(m.memberId)!;
          if (p < partitions && !taken.has(p) && mine.length < cap) {
            mine.push(p);
            taken.add(p);
          }
        }
      }
      for (let p = 0; p < partitions; p++) {
        if (taken.has(p)) continue;
        const id = ids.reduce((a, b) => (owned.get(b)!.length < owned.get(a)!.length ? b : a));
        owned.get(id)!.push(p);
      }
      return ids.map((id) => ({
        memberId: id,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 1,
          assignment: Object.fromEntries(
            topics.map((t, i) => [
              t,
              owned
                .get(id)!
                .filter((p) => p < (counts[i] ?? 0))
                .sort((a, b) => a - b),
            ]),
          ),
          userData: Buffer.alloc(0),
        }),
      }));
    },
    protocol({ topics }) {
      return {
        name: 'kstate-copartitioned',
        metadata: AssignerProtocol.MemberMetadata.encode({
          version: 1,
          topics,
          userData: Buffer.from(
            JSON.stringify(endpoint === undefined ? ownedNow() : { owned: ownedNow(), endpoint }),
          ),
        }),
      };
    },
  });

/** A member's user data (either form); nothing owned and no endpoint when unreadable. */
export function parseMemberInfo(userData: Buffer | undefined | null): MemberInfo {
  const none: MemberInfo = { owned: [], endpoint: undefined };
  if (!userData || userData.length === 0) return none;
  try {
    const v = JSON.parse(userData.toString('utf8'));
    const ints = (a: unknown): number[] =>
      Array.isArray(a) ? a.filter((x): x is number => Number.isInteger(x)) : [];
    if (Array.isArray(v)) return { owned: ints(v), endpoint: undefined };
    if (typeof v === 'object' && v !== null) {
      return { owned: ints(v.owned), endpoint: typeof v.endpoint === 'string' ? v.endpoint : undefined };
    }
    return none;
  } catch {
    return none;
  }
}
