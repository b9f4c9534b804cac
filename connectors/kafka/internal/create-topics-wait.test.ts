import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withTopicCreationWait } from './create-topics-wait.ts';

const unknown = () =>
  Object.assign(new Error('This server does not host this topic-partition'), {
    type: 'UNKNOWN_TOPIC_OR_PARTITION',
  });

function fakeAdmin(createError: Error | undefined, metadataAnswers: (Error | number)[], existed = false) {
  let calls = 0;
  return {
    metadataCalls: () => calls,
    createTopics: async (_o: unknown) => {
      if (createError) throw createError;
      return !existed;
    },
    fetchTopicMetadata: async ({ topics }: { topics: string[] }) => {
      const a = metadataAnswers[Math.min(calls++, metadataAnswers.length - 1)]!;
      if (a instanceof Error) throw a;
      return {
        topics: topics.map((name) => ({
          name,
          partitions: [
            { partitionId: 0, leader: a },
            { partitionId: 1, leader: 1 },
          ],
        })),
      };
    },
  };
}

const fast = { sleep: async () => {} };

test('UNKNOWN_TOPIC_OR_PARTITION after the creation: waits until every partition has a leader', async () => {
  const admin = withTopicCreationWait(fakeAdmin(unknown(), [unknown(), -1, 1]), fast);
  assert.equal(await admin.createTopics({ topics: [{ topic: 't' }], waitForLeaders: true }), true);
  assert.equal(admin.metadataCalls(), 3);
});

test('other errors, and calls that do not wait for leaders, are kafkajs own', async () => {
  const other = Object.assign(new Error('denied'), { type: 'TOPIC_AUTHORIZATION_FAILED' });
  await assert.rejects(
    withTopicCreationWait(fakeAdmin(other, [1]), fast).createTopics({
      topics: [{ topic: 't' }],
      waitForLeaders: true,
    }),
    /denied/,
  );
  await assert.rejects(
    withTopicCreationWait(fakeAdmin(unknown(), [1]), fast).createTopics({ topics: [{ topic: 't' }] }),
    /does not host/,
  );
  const failing = Object.assign(new Error('broken'), { type: 'CLUSTER_AUTHORIZATION_FAILED' });
  await assert.rejects(
    withTopicCreationWait(fakeAdmin(unknown(), [failing]), fast).createTopics({
      topics: [{ topic: 't' }],
      waitForLeaders: true,
    }),
    /broken/,
  );
});

test('no leader by the deadline: the original error', async () => {
  let t = 0;
  const admin = withTopicCreationWait(fakeAdmin(unknown(), [-1]), {
    sleep: async () => {},
    now: () => (t += 1000),
  });
  await assert.rejects(
    admin.createTopics({ topics: [{ topic: 't' }], waitForLeaders: true }),
    /does not host/,
  );
});

test('the topics existed (another client created them a moment before): false once every partition has a leader', async () => {
  const admin = withTopicCreationWait(fakeAdmin(undefined, [unknown(), -1, 1], true), fast);
  assert.equal(await admin.createTopics({ topics: [{ topic: 't' }], waitForLeaders: true }), false);
  assert.equal(admin.metadataCalls(), 3);
  // Without waitForLeaders, at once, as kafkajs.
  const direct = fakeAdmin(undefined, [-1], true);
  assert.equal(await withTopicCreationWait(direct, fast).createTopics({ topics: [{ topic: 't' }] }), false);
  assert.equal(direct.metadataCalls(), 0);
  // No leader by the deadline: false, for the caller's own check.
  let t = 0;
  const late = withTopicCreationWait(fakeAdmin(undefined, [-1], true), {
    sleep: async () => {},
    now: () => (t += 1000),
  });
  assert.equal(await late.createTopics({ topics: [{ topic: 't' }], waitForLeaders: true }), false);
});
