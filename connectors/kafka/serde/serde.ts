/**
 * The serde contract: how the Kafka source turns a record's key or value bytes into a value, and the
 * sink turns a value into bytes.
 *
 * Contract:
 * - `deserialize` returns the value itself when it can (every simple serde, and a registry serde whose
 *   schema is cached), and a Promise only when it must ask the schema registry. Callers await only a
 *   Promise (`isPromise`), so the per-record path allocates no Promise in the steady state.
 * - Null is Kafka's "no bytes" (a tombstone, a record without key): `deserialize(null)` is `null` and
 *   `serialize(null)` is `null`, for every serde.
 * - A record whose bytes cannot be read throws (or rejects with) a `DeserializationError`: a poison
 *   record, which the source handles by its policy (fail, skip, dead-letter), naming the record's
 *   partition and offset itself (the serde knows only the topic).
 * - A registry that cannot be reached, after the retries of the serde's registry client, throws
 *   `RegistryUnavailableError`: retryable, never a reason to skip a record. Any other error is a bug or a
 *   configuration problem (`RegistryRequestError` for a refused request) and fails the task.
 * - `serialize` throws `SerializationError` for a value that does not fit (a bug upstream, not a poison
 *   record), and the registry errors above.
 * - Serdes are stateless apart from caches, so one instance may serve every partition and topic.
 */
export type MaybePromise<T> = T | Promise<T>;

export interface Serde<T> {
  /** The wire format, for logs, errors and dead-letter headers: `string`, `json`, `bytes`, `avro` ... */
  readonly format: string;
  serialize(value: T | null, topic: string): MaybePromise<Buffer | null>;
  deserialize(bytes: Buffer | null, topic: string): MaybePromise<T | null>;
}

/** True when a serde call returned a Promise (it had to ask the registry) rather than the value. */
export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}
