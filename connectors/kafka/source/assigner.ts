import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';

/**
 * Assigns partition p of *every* subscribed topic to the same member, so co-partitioned topics
 * (a stage's inputs) land in one task. Sticky: a member keeps the partitions it reported owning (in
 * its user data) as long as that keeps the spread even; the rest go round robin to the members with
 * the fewest. `ownedNow` tells what this member owns at the time it joins.
 */
export const coPartitionedAssigner =
  (ownedNow: () => readonly number[]): PartitionAssigner =>
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
        const previous = parseOwned(meta?.userData);
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
          userData: Buffer.from(JSON.stringify(ownedNow())),
        }),
      };
    },
  });

function parseOwned(userData: Buffer | undefined | null): number[] {
  if (!userData || userData.length === 0) return [];
  try {
    const v = JSON.parse(userData.toString('utf8'));
    return Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : [];
  } catch {
    return [];
  }
}
