import { StreamError, type TableUpdate } from '../../../framework/index.ts';
import type { Serde } from '../serde/serde.ts';
import { KafkaSource, type KafkaSourceOptions } from './kafka-source.ts';
import type { KafkaRecordIn } from './partition-reader.ts';

/**
 * A compacted topic read as a table's changelog (for `KeyedStream.tableJoin`): each record becomes
 * `{ key, value }` with the record key as a UTF-8 string and the value decoded by `serde` (default
 * JSON), or `value: null` for a tombstone. Key the stream by `u => u.key`; the topic must be
 * partitioned like the stream it is joined with (same key bytes, same partition count).
 */
export function tableSource<V>(
  o: Omit<KafkaSourceOptions<TableUpdate<V>>, 'decode' | 'serde'> & { readonly serde?: Serde<V> },
): KafkaSource<TableUpdate<V>> {
  const { serde, ...rest } = o;
  return new KafkaSource<TableUpdate<V>>({
    ...rest,
    // Synchronous unless the serde answers with a promise (a registry fetching a schema): the reader
    // waits for a decoder's promise record by record, so a table is not decoded through one each.
    decode: (r: KafkaRecordIn): TableUpdate<V> | Promise<TableUpdate<V>> => {
      if (r.key === null) {
        throw new StreamError(
          'RECORD_DESERIALIZATION_FAILED',
          `table topic ${r.topic}: record ${r.partition}@${r.offset} has no key (a table's records are keyed)`,
        );
      }
      const key = r.key.toString('utf8');
      if (r.value === null) return { key, value: null };
      if (!serde) return { key, value: JSON.parse(r.value.toString('utf8')) as V };
      const value = serde.deserialize(r.value, r.topic);
      return value instanceof Promise
        ? value.then((v) => ({ key, value: v as V }))
        : { key, value: value as V };
    },
  });
}
