import type { Serializer } from './serializer.ts';
import type {
  AggregateFunction,
  AggregatingStateDescriptor,
  ListStateDescriptor,
  MapStateDescriptor,
  ReducingStateDescriptor,
  StateTtlConfig,
  TimeIndexedStateDescriptor,
  ValueStateDescriptor,
} from './state.ts';

/** Factories for state descriptors: `ctx.getState(valueState<number>('count'))`. */
interface Options<S> {
  readonly ttl?: StateTtlConfig;
  readonly serializer?: Serializer<S>;
}

// Without options, no spread: jobs often make a descriptor per record (`ctx.getState(valueState(...))`).
export const valueState = <T>(name: string, o?: Options<T>): ValueStateDescriptor<T> =>
  o === undefined ? { kind: 'value', name } : { kind: 'value', name, ...o };
export const listState = <T>(name: string, o?: Options<T>): ListStateDescriptor<T> =>
  o === undefined ? { kind: 'list', name } : { kind: 'list', name, ...o };
export const mapState = <K, V>(name: string, o?: Options<[K, V]>): MapStateDescriptor<K, V> =>
  o === undefined ? { kind: 'map', name } : { kind: 'map', name, ...o };
export const reducingState = <T>(
  name: string,
  reduce: (a: T, b: T) => T,
  o: Options<T> = {},
): ReducingStateDescriptor<T> => ({
  kind: 'reducing',
  name,
  reduce,
  ...o,
});
export const aggregatingState = <IN, ACC, OUT>(
  name: string,
  aggregate: AggregateFunction<IN, ACC, OUT>,
  o: Options<ACC> = {},
): AggregatingStateDescriptor<IN, ACC, OUT> => ({ kind: 'aggregating', name, aggregate, ...o });
/** `ctx.getTimeIndexedState(timeIndexedState<Price>('prices', { retentionMs: 86_400_000 }))`. */
export const timeIndexedState = <V>(
  name: string,
  o: { readonly retentionMs?: number; readonly serializer?: Serializer<V> } = {},
): TimeIndexedStateDescriptor<V> => ({ kind: 'timeIndexed', name, ...o });
