/**
 * An admin's first coordinator call after `connect` (a task's restore reading its committed
 * checkpoint: `fetchOffsets`) goes out at once instead of failing on an empty broker pool and waiting
 * for kafkajs's retry (./admin-connect.ts). Against the test broker; the failure case with a fake.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually, kafkaClient } from '../test/support/kafka.ts';
import { uniqueName } from '../test/support/names.ts';
import { withMetadataOnConnect } from './admin-connect.ts';
import { logLevel } from './kafkajs.ts';

test("a connected admin's first fetchOffsets finds the group coordinator without a retry", async () => {
  const logged: string[] = [];
  const kafka = kafkaClient('admin-connect', {
    logLevel: logLevel.DEBUG,
    logCreator: () => (entry) => {
      logged.push(String(entry.log.message));
    },
  });
  const setup = kafkaClient('admin-connect-setup').admin();
  const topic = uniqueName('admin-connect');
  await setup.connect();
  const admin = kafka.admin();
  try {
    await setup.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.connect();
    // A fresh broker may answer NOT_COORDINATOR while it loads the offsets topic: retried (retriable).
    const groupId = uniqueName('admin-connect-group');
    const offsets = await eventually(
      () => admin.fetchOffsets({ groupId, topics: [topic] }),
      60_000,
      () => `fetchOffsets of ${groupId}`,
    );
    assert.deepEqual(
      offsets.map((t) => t.partitions.map((p) => p.offset)),
      [['-1']],
      'a new group has no committed offset',
    );
    // kafkajs logs this (at debug level) when a coordinator lookup found no broker in its pool, before
    // it loads the metadata and retries (a coordinator not available yet is logged otherwise).
    const retried = logged.filter((m) => /No brokers in the broker pool/.test(m));
    assert.deepEqual(retried, [], 'the coordinator lookup was retried');
  } finally {
    await admin.disconnect();
    await setup.deleteTopics({ topics: [topic] }).catch(() => {});
    await setup.disconnect();
  }
});

test('an admin whose metadata cannot be loaded is disconnected and its connect rejects', async () => {
  const calls: string[] = [];
  const admin = withMetadataOnConnect({
    connect: async () => {
      calls.push('connect');
    },
    disconnect: async () => {
      calls.push('disconnect');
    },
    fetchTopicMetadata: async () => {
      calls.push('metadata');
      throw new Error('broker went away');
    },
  });
  await assert.rejects(admin.connect(), /broker went away/);
  assert.deepEqual(calls, ['connect', 'metadata', 'disconnect']);
});
