/**
 * Puts a linear `groupMessagesPerPartition` in place of kafkajs 2.2.4's
 * (`src/producer/groupMessagesPerPartition.js`), which builds each partition's list with
 * `Object.assign(result, { [partition]: [...current, message] })`: a copy of the partition's list per
 * message, quadratic in the records one send carries to one partition. It was the top function of
 * the exactly-once job's CPU profile (issue 15: 12 % of the main thread's self time with the sink's
 * sends of up to 2000 records, and 14 % in the raw transactional loop's sends of 500), plus the
 * garbage of the copies. Same input, same output: partitions in the order the partitioner gives, the
 * messages of each in send order.
 *
 * `src/producer/sendMessages.js` takes the function with `require` when it is first loaded, so this
 * module must run before kafkajs is loaded: ./kafkajs.ts imports it first. Import it for its effect.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const groupingPath = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
const sendMessagesPath = require.resolve('kafkajs/src/producer/sendMessages.js');

/** kafkajs's call: `groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner })`. */
export function groupMessagesPerPartition<M>(o: {
  readonly topic: string;
  readonly partitionMetadata: readonly unknown[];
  readonly messages: readonly M[];
  readonly partitioner: (a: { topic: string; partitionMetadata: readonly unknown[]; message: M }) => number;
}): Record<number, M[]> {
  const { topic, partitionMetadata, messages, partitioner } = o;
  const result: Record<number, M[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    const current = result[partition];
    if (current === undefined) result[partition] = [message];
    else current.push(message);
  }
  return result;
}

/** Whether the producer uses this module's function (kafkajs was not loaded before it). */
export function groupingInstalled(): boolean {
  const cache = require.cache as Record<string, { exports: unknown } | undefined>;
  return cache[groupingPath]?.exports === groupMessagesPerPartition && cache[sendMessagesPath] !== undefined;
}

const cache = require.cache as Record<string, { exports: unknown } | undefined>;
if (cache[sendMessagesPath] === undefined) {
  require(groupingPath);
  const entry = cache[groupingPath];
  if (entry !== undefined) entry.exports = groupMessagesPerPartition;
}
