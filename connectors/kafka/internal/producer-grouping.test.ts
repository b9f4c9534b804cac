import assert from 'node:assert/strict';
import { test } from 'node:test';
import './kafkajs.ts';
import { groupingInstalled, groupMessagesPerPartition } from './producer-grouping.ts';

/** kafkajs 2.2.4's src/producer/groupMessagesPerPartition.js, as it is. */
const upstream = <M>({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: Parameters<typeof groupMessagesPerPartition<M>>[0]): Record<number, M[]> => {
  if (partitionMetadata.length === 0) return {};
  return messages.reduce(
    (result, message) => {
      const partition = partitioner({ topic, partitionMetadata, message });
      const current = result[partition] || [];
      return Object.assign(result, { [partition]: [...current, message] });
    },
    {} as Record<number, M[]>,
  );
};

test('the grouping gives what kafkajs gives, partition by partition in send order', () => {
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  for (let round = 0; round < 200; round++) {
    const partitions = 1 + Math.floor(random() * 12);
    const partitionMetadata =
      round % 50 === 0 ? [] : Array.from({ length: partitions }, (_, i) => ({ partitionId: i }));
    const messages = Array.from({ length: Math.floor(random() * 300) }, (_, i) => ({
      key: `k${Math.floor(random() * 40)}`,
      i,
    }));
    const partitioner = ({ message }: { message: { key: string } }) =>
      Number.parseInt(message.key.slice(1), 10) % partitions;
    const o = { topic: 't', partitionMetadata, messages, partitioner };
    const ours = groupMessagesPerPartition(o);
    assert.deepEqual(ours, upstream(o));
    assert.deepEqual(Object.keys(ours), Object.keys(upstream(o)));
  }
});

test("kafkajs's producer uses it (kafkajs was loaded after it, through ./kafkajs.ts)", () => {
  assert.equal(groupingInstalled(), true);
});
