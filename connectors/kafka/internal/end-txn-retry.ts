/**
 * Makes kafkajs 2.2.4 retry EndTxn (the commit or abort of a transaction) on the transaction
 * coordinator's retriable answers, as the Java client's TransactionManager does.
 *
 * The upstream defect: `producer/eosManager/index.js` moves its state machine to COMMITTING (or
 * ABORTING) and sends EndTxn once. CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS,
 * NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, REQUEST_TIMED_OUT or a lost connection then reject the
 * commit and leave the transaction in COMMITTING for good: it can be neither committed nor aborted
 * again, so a transient coordinator hiccup fails the task. The sink's own retry
 * (sink/internal/coordinator-retry.ts) cannot help there: kafkajs has ended the transaction.
 *
 * The fix: kafkajs finds the transaction coordinator through `Cluster#findGroupCoordinator` before
 * every EndTxn; for the transaction coordinator, the broker it returns here retries `endTxn` with the
 * cluster's own retry policy (exponential backoff; `retry` of the client config), finding the
 * coordinator again before each retry (it may have moved). EndTxn is idempotent for one producer id,
 * epoch and result: a retry of a commit the coordinator already completed answers success, one still
 * being completed answers CONCURRENT_TRANSACTIONS (retried). Any other error passes through at once.
 *
 * ./install-end-txn-retry.ts installs it once kafkajs is loaded; it then applies to every kafkajs
 * client of the process.
 */

interface KafkaJsError {
  name?: string;
  type?: string;
}

interface Broker {
  endTxn(request: unknown): Promise<unknown>;
}

interface ClusterLike {
  retrier<T>(fn: (bail: (e: unknown) => void, retryCount: number) => Promise<T>): Promise<T>;
}

type FindCoordinator = (
  this: ClusterLike,
  args: { groupId: string; coordinatorType?: number },
) => Promise<Broker>;

/** kafkajs/src/protocol/coordinatorTypes.js */
const TRANSACTION_COORDINATOR = 1;

/** Kafka's retriable EndTxn answers, by kafkajs's type names (GROUP_* are the COORDINATOR_* codes). */
const RETRIABLE_TYPES = new Set([
  'CONCURRENT_TRANSACTIONS',
  'GROUP_LOAD_IN_PROGRESS',
  'GROUP_COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR_FOR_GROUP',
  'REQUEST_TIMED_OUT',
  'NETWORK_EXCEPTION',
]);
const RETRIABLE_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
]);

export function isRetriableEndTxnError(e: unknown): boolean {
  const err = (e ?? {}) as KafkaJsError;
  return RETRIABLE_TYPES.has(err.type ?? '') || RETRIABLE_NAMES.has(err.name ?? '');
}

const installed = Symbol.for('kstate.endTxnRetry');

/** Wrap `Cluster.prototype.findGroupCoordinator` of kafkajs (idempotent). Exported for the test. */
export function installEndTxnRetry(Cluster: { prototype: { findGroupCoordinator: FindCoordinator } }): void {
  const proto = Cluster.prototype as { findGroupCoordinator: FindCoordinator; [installed]?: true };
  if (proto[installed]) return;
  const find = proto.findGroupCoordinator;
  proto.findGroupCoordinator = async function (this: ClusterLike, args) {
    const broker = await find.call(this, args);
    if (args.coordinatorType !== TRANSACTION_COORDINATOR) return broker;
    const cluster = this;
    return new Proxy(broker, {
      get(target, prop, receiver) {
        if (prop !== 'endTxn') return Reflect.get(target, prop, receiver);
        return (request: unknown) =>
          cluster.retrier(async (bail, retryCount) => {
            try {
              const coordinator = retryCount === 0 ? target : await find.call(cluster, args);
              return await coordinator.endTxn(request);
            } catch (e) {
              if (!isRetriableEndTxnError(e)) bail(e);
              throw e;
            }
          });
      },
    });
  };
  proto[installed] = true;
}
