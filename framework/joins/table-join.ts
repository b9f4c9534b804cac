import { valueState } from '../api/descriptors.ts';
import type { Collector, KeyedContext, KeyedCoProcessFunction } from '../api/functions.ts';
import type { Key } from '../api/keys.ts';

/**
 * One change of a table read from a compacted topic: the latest value of `key`, or `null` for a
 * tombstone (the key was deleted). `tableRecord` in connectors/kafka decodes Kafka records to this.
 */
export interface TableUpdate<V> {
  readonly key: string;
  readonly value: V | null;
}

export interface TableJoinOptions<S, V, OUT, K extends Key = Key> {
  /** Called for each stream record with the table's current value for its key. */
  readonly join: (record: S, value: V, key: K) => OUT;
  /** `inner` (default): records whose key has no table value are dropped; `left`: joined with undefined. */
  readonly kind?: 'inner' | 'left';
}

/**
 * Lookup join of a stream against a table (Kafka Streams' KStream-KTable join): input 2 is the
 * table's changelog (a compacted topic keyed like the stream, so co-partitioned with it), whose
 * latest value per key lives in keyed state; input 1 is the stream, joined with the value the
 * table has when the record is processed. Table updates produce no output. The table's state is
 * one value per live key (a tombstone removes it), checkpointed with the job like any state, so a
 * restart neither re-reads the whole topic nor loses an update.
 *
 * Order between the two inputs is arrival order, as in Kafka Streams without timestamp
 * synchronisation: a record processed before the table update of its key sees the older value.
 */
export class TableJoin<K extends Key, S, V, OUT>
  implements KeyedCoProcessFunction<K, S, TableUpdate<V>, OUT>
{
  readonly #o: TableJoinOptions<S, V, OUT, K>;
  readonly #table = valueState<V>('table-join.value');

  constructor(o: TableJoinOptions<S, V, OUT, K>) {
    this.#o = o;
  }

  processElement1(record: S, ctx: KeyedContext<K>, out: Collector<OUT>): void {
    const value = ctx.getState(this.#table).value();
    if (value !== undefined) out.collect(this.#o.join(record, value, ctx.key));
    else if (this.#o.kind === 'left') out.collect(this.#o.join(record, undefined as V, ctx.key));
  }

  processElement2(update: TableUpdate<V>, ctx: KeyedContext<K>): void {
    const state = ctx.getState(this.#table);
    if (update.value === null) state.clear();
    else state.update(update.value);
  }
}
