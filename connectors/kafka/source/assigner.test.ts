import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AssignerProtocol } from '../internal/kafkajs.ts';
import { coPartitionedAssigner } from './assigner.ts';

const counts: Record<string, number> = { a: 6, b: 6, r: 4 };
const cluster = {
  findTopicPartitionMetadata: (t: string) =>
    Array.from({ length: counts[t] ?? 0 }, (_, i) => ({ partitionId: i })),
};

function member(memberId: string, owned: number[]) {
  return {
    memberId,
    memberMetadata: AssignerProtocol.MemberMetadata.encode({
      version: 1,
      topics: ['a', 'b', 'r'],
      userData: Buffer.from(JSON.stringify(owned)),
    }),
  };
}

async function assign(members: ReturnType<typeof member>[]) {
  const assigner = coPartitionedAssigner(() => [])({ cluster } as never);
  const result = await assigner.assign({ members, topics: ['a', 'b', 'r'] } as never);
  return new Map(
    result.map((r) => [
      r.memberId,
      AssignerProtocol.MemberAssignment.decode(r.memberAssignment as Buffer)!.assignment as Record<
        string,
        number[]
      >,
    ]),
  );
}

test('partition p of every topic goes to the same member; topics with fewer partitions are respected', async () => {
  const a = await assign([member('m1', []), member('m2', [])]);
  for (const [, topics] of a) {
    assert.deepEqual(topics.a, topics.b, 'co-partitioned topics split');
    assert.ok(topics.r!.every((p) => p < 4));
  }
  const all = [...a.values()].flatMap((t) => t.a!).sort();
  assert.deepEqual(all, [0, 1, 2, 3, 4, 5]);
});

test('sticky: members keep what they owned when the spread stays even; a new member takes only the surplus', async () => {
  const before = await assign([member('m1', []), member('m2', [])]);
  const m1 = before.get('m1')!.a!;
  const m2 = before.get('m2')!.a!;
  const after = await assign([member('m1', m1), member('m2', m2), member('m3', [])]);
  const keptBy1 = after.get('m1')!.a!.filter((p) => m1.includes(p)).length;
  const keptBy2 = after.get('m2')!.a!.filter((p) => m2.includes(p)).length;
  assert.equal(keptBy1, 2);
  assert.equal(keptBy2, 2);
  assert.equal(after.get('m3')!.a!.length, 2);
  // A member leaving: the survivor keeps its own and takes the rest.
  const shrink = await assign([member('m1', after.get('m1')!.a!)]);
  assert.deepEqual(shrink.get('m1')!.a!.sort(), [0, 1, 2, 3, 4, 5]);
});
