/**
 * kafkajs's own transaction manager (producer/eosManager) over a cluster whose transaction
 * coordinator answers EndTxn with retriable errors first: with ./end-txn-retry.ts the commit goes
 * through; kafkajs 2.2.4 alone rejects it and leaves the transaction in COMMITTING.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { installEndTxnRetry } from './end-txn-retry.ts';

const require = createRequire(import.meta.url);
const Cluster = require(require.resolve('kafkajs/src/cluster/index.js')) as {
  prototype: object;
};
const createEosManager = require(require.resolve('kafkajs/src/producer/eosManager/index.js')) as (
  o: object,
) => {
  initProducerId(): Promise<void>;
  beginTransaction(): void;
  addPartitionsToTransaction(topics: unknown): Promise<void>;
  commit(): Promise<void>;
  isInTransaction(): boolean;
};
const createRetry = require(require.resolve('kafkajs/src/retry/index.js')) as (o: object) => unknown;

function protocolError(type: string) {
  return Object.assign(new Error(type), { name: 'KafkaJSProtocolError', type, retriable: true });
}

/** A kafkajs Cluster (its real findGroupCoordinator) over brokers that fail EndTxn `failures` times. */
function cluster(failures: string[]) {
  const calls: string[] = [];
  const broker = (nodeId: number) => ({
    nodeId,
    initProducerId: async () => ({ producerId: 7, producerEpoch: 0 }),
    addPartitionsToTxn: async () => ({}),
    endTxn: async () => {
      const f = failures.shift();
      calls.push(`${nodeId}:${f ?? 'ok'}`);
      // The coordinator moved: the next FindCoordinator names another broker.
      if (f === 'NOT_COORDINATOR_FOR_GROUP') coordinator++;
      if (f) throw protocolError(f);
      return {};
    },
  });
  let coordinator = 1;
  const c = Object.assign(Object.create(Cluster.prototype), {
    retrier: createRetry({ retries: 5, initialRetryTime: 1, maxRetryTime: 5 }),
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    refreshMetadataIfNecessary: async () => {},
    refreshMetadata: async () => {},
    findGroupCoordinatorMetadata: async () => ({ coordinator: { nodeId: coordinator } }),
    findBroker: async ({ nodeId }: { nodeId: number }) => broker(nodeId),
  });
  return { cluster: c, calls };
}

async function commitOnce(failures: string[]) {
  const k = cluster(failures);
  const eos = createEosManager({
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    cluster: k.cluster,
    transactional: true,
    transactionalId: 'job.stage-p0.0',
    transactionTimeout: 60_000,
  });
  await eos.initProducerId();
  eos.beginTransaction();
  await eos.addPartitionsToTransaction([{ topic: 'out', partitions: [{ partition: 0 }] }]);
  return { commit: eos.commit(), calls: k.calls, eos };
}

test('without the fix, kafkajs 2.2.4 rejects a commit on CONCURRENT_TRANSACTIONS and is stuck', async () => {
  // The test loads kafkajs's internals itself; installing is a separate, explicit step below.
  const { commit, eos } = await commitOnce(['CONCURRENT_TRANSACTIONS']);
  await assert.rejects(commit, (e: unknown) => (e as { type?: string }).type === 'CONCURRENT_TRANSACTIONS');
  await assert.rejects(eos.commit(), /Cannot call "commit" in state "COMMITTING"/);
});

test('with the fix, EndTxn is retried on the coordinator’s retriable answers, finding it again', async () => {
  installEndTxnRetry(Cluster as never);
  const { commit, calls, eos } = await commitOnce([
    'CONCURRENT_TRANSACTIONS',
    'GROUP_LOAD_IN_PROGRESS',
    'NOT_COORDINATOR_FOR_GROUP',
    'REQUEST_TIMED_OUT',
  ]);
  await commit;
  assert.deepEqual(calls, [
    '1:CONCURRENT_TRANSACTIONS',
    '1:GROUP_LOAD_IN_PROGRESS',
    '1:NOT_COORDINATOR_FOR_GROUP',
    '2:REQUEST_TIMED_OUT',
    '2:ok',
  ]);
  assert.equal(eos.isInTransaction(), false, 'committed: READY for the next transaction');
});

test('with the fix, a non-retriable EndTxn answer is not retried', async () => {
  installEndTxnRetry(Cluster as never);
  const { commit, calls } = await commitOnce(['INVALID_PRODUCER_EPOCH']);
  await assert.rejects(commit, (e: unknown) => (e as { type?: string }).type === 'INVALID_PRODUCER_EPOCH');
  assert.deepEqual(calls, ['1:INVALID_PRODUCER_EPOCH']);
});
