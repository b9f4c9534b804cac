/**
 * kafkajs 2.2.4's `admin.connect()` connects to a seed broker and loads no cluster metadata, so the
 * admin's broker pool is empty: its first coordinator call (`fetchOffsets`, `describeGroups`, ...)
 * fails with KafkaJSBrokerNotFound, loads the metadata, and is retried after the retry's initial
 * wait (about 100 ms). Every task's restore reads its committed checkpoint that way (through the
 * instance's shared admin), so every start and restart waited for it. kafkajs's producer and
 * consumer load the metadata in their own `connect`; with this wrapper the admin does too: `connect`
 * resolves once the broker pool is known (`fetchTopicMetadata` with no topics: two Metadata requests,
 * which kafkajs sends for every topic when given none, as its producers' `connect` does). Should that
 * fail, the admin is disconnected again and `connect` rejects with its error.
 */

interface ConnectingAdmin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  fetchTopicMetadata(o: { topics: string[] }): Promise<unknown>;
}

/** Replaces `admin.connect` with one that also loads the cluster's metadata (returns the same admin). */
export function withMetadataOnConnect<A extends ConnectingAdmin>(admin: A): A {
  const connect = admin.connect.bind(admin);
  admin.connect = async () => {
    await connect();
    try {
      await admin.fetchTopicMetadata({ topics: [] });
    } catch (e) {
      await admin.disconnect().catch(() => {});
      throw e;
    }
  };
  return admin;
}
