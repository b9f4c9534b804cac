/**
 * A serializer turns one value into bytes and back. Every managed state names its serializer in the
 * snapshot by `id` and `version`; restore refuses a snapshot whose serializer id differs, or whose
 * version is newer than the reader's, with a clear error instead of misreading bytes.
 *
 * Contract: `deserialize(serialize(v))` is deep-equal to `v`; `serialize` never returns a buffer that
 * it reuses later (callers may keep it).
 */
export interface Serializer<T> {
  /** Stable identifier written into snapshots, e.g. `msgpack`, `json`, `user:orders-v2`. */
  readonly id: string;
  /** Format version of this serializer's bytes; bump it when the byte layout changes. */
  readonly version: number;
  serialize(value: T): Uint8Array;
  deserialize(bytes: Uint8Array): T;
}
