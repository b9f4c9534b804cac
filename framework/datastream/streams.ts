import { StreamError } from '../api/errors.ts';
import type {
  CoProcessFunction,
  KeyedBroadcastProcessFunction,
  KeyedCoProcessFunction,
  KeyedProcessFunction,
  OutputTag,
  PerTask,
  ProcessFunction,
} from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { Sink } from '../api/sink.ts';
import type { RecordErrorPolicy } from '../api/source.ts';
import type { AggregateFunction } from '../api/state.ts';
import { Deduplicate, type DedupOptions } from '../dedup/dedup.ts';
import type { GraphEdge, KeySelector, OperatorSpec } from '../graph/types.ts';
import {
  IntervalJoin,
  type IntervalJoinOptions,
  TableJoin,
  type TableJoinOptions,
  type TableUpdate,
  WindowJoin,
  type WindowJoinOptions,
} from '../joins/index.ts';
import type { WindowAssigner } from '../windows/assigners.ts';
import type { ProcessWindowFunction, WindowResultFunction } from '../windows/emit.ts';
import {
  aggregateWindows,
  processWindows,
  reduceWindows,
  type WindowFunctionSpec,
  type WindowOptions,
  windowOperator,
} from '../windows/operator.ts';

/**
 * The streams of the DataStream API (see StreamJob): immutable handles on a node of the job's graph;
 * every transformation adds a node and returns a new stream. This is the layer that composes the
 * graph model (framework/graph) with the libraries built on the public API (windows, joins, dedup):
 * they never import it, and the graph imports none of them.
 */

/** What a stream needs of its job: adding nodes to the graph (StreamJob implements it). */
export interface JobNodes {
  addNode(spec: OperatorSpec, inputs: GraphEdge[], uid: string | undefined): number;
  markBroadcast(nodeId: number): void;
}

export interface OperatorOptions {
  /** Stable id of the operator; required for stateful operators, so their state survives code changes. */
  readonly uid?: string;
  /**
   * Records this operator's function (or the key selector of its keyed input) throws on: `fail`,
   * `skip` (counted and logged) or `dead-letter` (on the side output of the source the record came
   * from, with the error, in the task's transaction). Default: the job's `onUserFunctionError`
   * (RuntimeConfig; 'fail' unless set).
   */
  readonly onError?: RecordErrorPolicy;
}

export interface StatefulOptions {
  readonly uid: string;
  /** See OperatorOptions.onError. */
  readonly onError?: RecordErrorPolicy;
}

/** The spec fields of an operator's options (its onError, when set). */
const withPolicy = (o: { readonly onError?: RecordErrorPolicy }) =>
  o.onError === undefined ? {} : { onError: o.onError };

export class DataStream<T> {
  readonly #job: JobNodes;
  /** @internal */
  readonly edge: GraphEdge;

  constructor(job: JobNodes, edge: GraphEdge) {
    this.#job = job;
    this.edge = edge;
  }

  map<R>(fn: (value: T) => R, options: OperatorOptions = {}): DataStream<R> {
    return this.#add<R>({ kind: 'map', fn, ...withPolicy(options) }, options.uid);
  }

  filter(fn: (value: T) => boolean, options: OperatorOptions = {}): DataStream<T> {
    return this.#add<T>({ kind: 'filter', fn, ...withPolicy(options) }, options.uid);
  }

  flatMap<R>(fn: (value: T) => Iterable<R>, options: OperatorOptions = {}): DataStream<R> {
    return this.#add<R>({ kind: 'flatMap', fn, ...withPolicy(options) }, options.uid);
  }

  /**
   * Partition by key. By default the input must already be partitioned by this key (a topic produced
   * with it as the record key): no shuffle, and a record of another key group fails the task with
   * KEY_GROUP_MISMATCH. With `{ repartition: true }` records are redistributed by the key through a
   * repartition topic `<jobId>.<uid>.repartition` (Kafka jobs), exactly once.
   */
  keyBy<K extends Key>(
    selector: (value: T) => K,
    options: { repartition?: boolean } = {},
  ): KeyedStream<T, K> {
    return new KeyedStream<T, K>(this.#job, {
      ...this.edge,
      key: selector as KeySelector,
      ...(options.repartition ? { repartition: true } : {}),
    });
  }

  process<R>(fn: PerTask<ProcessFunction<T, R>>, options: StatefulOptions): DataStream<R> {
    return this.#add<R>({ kind: 'process', fn, ...withPolicy(options) }, options.uid);
  }

  union(...others: DataStream<T>[]): DataStream<T> {
    const id = this.#job.addNode({ kind: 'union' }, [this.edge, ...others.map((o) => o.edge)], undefined);
    return new DataStream<T>(this.#job, { from: id });
  }

  connect<T2>(other: DataStream<T2>): ConnectedStreams<T, T2> {
    return new ConnectedStreams<T, T2>(this.#job, this.edge, other.edge);
  }

  /** Turn a source stream into a broadcast stream carrying the named broadcast states. */
  broadcast(...stateNames: string[]): BroadcastStream<T> {
    this.#job.markBroadcast(this.edge.from);
    return new BroadcastStream<T>(this.edge, stateNames);
  }

  getSideOutput<R>(tag: OutputTag<R>): DataStream<R> {
    return new DataStream<R>(this.#job, { from: this.edge.from, tag: tag.id });
  }

  sinkTo(sink: Sink<T>): void {
    this.#job.addNode({ kind: 'sink', sink: sink as Sink<unknown> }, [this.edge], sink.uid);
  }

  #add<R>(spec: OperatorSpec, uid: string | undefined): DataStream<R> {
    return new DataStream<R>(this.#job, { from: this.#job.addNode(spec, [this.edge], uid) });
  }
}

export class KeyedStream<T, K extends Key> {
  readonly #job: JobNodes;
  /** @internal */
  readonly edge: GraphEdge;

  constructor(job: JobNodes, edge: GraphEdge) {
    this.#job = job;
    this.edge = edge;
  }

  process<R>(fn: PerTask<KeyedProcessFunction<K, T, R>>, options: StatefulOptions): DataStream<R> {
    const id = this.#job.addNode(
      { kind: 'keyedProcess', fn, ...withPolicy(options) },
      [this.edge],
      options.uid,
    );
    return new DataStream<R>(this.#job, { from: id });
  }

  /**
   * Group each key's records into windows (framework/windows, docs/windows.md):
   * `.window(slidingEventTime({ sizeMs: 10_000, slideMs: 1_000 }), { allowedLatenessMs: 5_000 })`,
   * then `.reduce`, `.aggregate` or `.process`.
   */
  window(assigner: WindowAssigner, options?: WindowOptions<T>): WindowedStream<T, K> {
    return new WindowedStream<T, K>(this, assigner, options);
  }

  /**
   * Interval join (framework/joins, docs/joins.md): each pair of this stream's record at t and the
   * other's (same key) within [t + lowerMs, t + upperMs] of event time, once.
   */
  intervalJoin<R, OUT>(
    other: KeyedStream<R, K>,
    options: IntervalJoinOptions<T, R, OUT, K>,
    operator: StatefulOptions,
  ): DataStream<OUT> {
    return this.connect(other).process(new IntervalJoin<K, T, R, OUT>(options), operator);
  }

  /** Windowed inner join: every pair of a record of each stream of one key in one tumbling or sliding window. */
  windowJoin<R, OUT>(
    other: KeyedStream<R, K>,
    options: WindowJoinOptions<T, R, OUT, K>,
    operator: StatefulOptions,
  ): DataStream<OUT> {
    return this.connect(other).process(new WindowJoin<K, T, R, OUT>(options), operator);
  }

  /** Lookup join against a table's changelog (a compacted topic read as a KTable), keyed alike. */
  tableJoin<V, OUT>(
    table: KeyedStream<TableUpdate<V>, K>,
    options: TableJoinOptions<T, V, OUT, K>,
    operator: StatefulOptions,
  ): DataStream<OUT> {
    return this.connect(table).process(new TableJoin<K, T, V, OUT>(options), operator);
  }

  /** Drop records whose key was seen within `horizonMs` (framework/dedup, docs/joins.md). */
  deduplicate(options: DedupOptions<T>, operator: StatefulOptions): DataStream<T> {
    return this.process(new Deduplicate<K, T>(options), operator);
  }

  connect<T2>(other: KeyedStream<T2, K>): ConnectedKeyedStreams<T, T2, K>;
  connect<B>(other: BroadcastStream<B>): BroadcastConnectedStream<T, B, K>;
  connect<T2>(
    other: KeyedStream<T2, K> | BroadcastStream<T2>,
  ): ConnectedKeyedStreams<T, T2, K> | BroadcastConnectedStream<T, T2, K> {
    if (other instanceof BroadcastStream) return new BroadcastConnectedStream(this.#job, this.edge, other);
    return new ConnectedKeyedStreams<T, T2, K>(this.#job, this.edge, other.edge);
  }
}

/**
 * A keyed stream cut into windows: each terminal method adds one window operator (a keyed process
 * function over managed state and timers, see framework/windows) and returns its results, each
 * with the timestamp `window.end - 1`.
 */
export class WindowedStream<T, K extends Key> {
  readonly #keyed: KeyedStream<T, K>;
  readonly #assigner: WindowAssigner;
  readonly #options: WindowOptions<T> | undefined;
  constructor(keyed: KeyedStream<T, K>, assigner: WindowAssigner, options: WindowOptions<T> | undefined) {
    this.#keyed = keyed;
    this.#assigner = assigner;
    this.#options = options;
  }

  /** Incremental: `reduce(a, b)` per record; emits the reduced value, or `windowFn(value, ctx)`. */
  reduce(reduce: (a: T, b: T) => T, options: StatefulOptions): DataStream<T>;
  reduce<R>(
    reduce: (a: T, b: T) => T,
    windowFn: WindowResultFunction<K, T, R>,
    options: StatefulOptions,
  ): DataStream<R>;
  reduce<R>(
    reduce: (a: T, b: T) => T,
    a: WindowResultFunction<K, T, R> | StatefulOptions,
    b?: StatefulOptions,
  ): DataStream<R> {
    const windowFn = typeof a === 'function' ? a : undefined;
    return this.#apply(reduceWindows<K, T, R>(reduce, windowFn), windowFn ? b : (a as StatefulOptions));
  }

  /** Incremental: one accumulator per slice or window; emits `getResult`, or `windowFn(result, ctx)`. */
  aggregate<ACC, OUT>(agg: AggregateFunction<T, ACC, OUT>, options: StatefulOptions): DataStream<OUT>;
  aggregate<ACC, OUT, R>(
    agg: AggregateFunction<T, ACC, OUT>,
    windowFn: WindowResultFunction<K, OUT, R>,
    options: StatefulOptions,
  ): DataStream<R>;
  aggregate<ACC, OUT, R>(
    agg: AggregateFunction<T, ACC, OUT>,
    a: WindowResultFunction<K, OUT, R> | StatefulOptions,
    b?: StatefulOptions,
  ): DataStream<R> {
    const windowFn = typeof a === 'function' ? a : undefined;
    return this.#apply(
      aggregateWindows<K, T, ACC, OUT, R>(agg, windowFn),
      windowFn ? b : (a as StatefulOptions),
    );
  }

  /** Full window: buffers the window's records and calls `fn(elements, ctx, out)` when it fires. */
  process<R>(fn: ProcessWindowFunction<K, T, R>, options: StatefulOptions): DataStream<R> {
    return this.#apply(processWindows<K, T, R>(fn), options);
  }

  #apply<R>(spec: WindowFunctionSpec<K, T, R>, options: StatefulOptions | undefined): DataStream<R> {
    const uid = options?.uid;
    if (typeof uid !== 'string' || uid === '') {
      throw new StreamError(
        'GRAPH_INVALID',
        `a window ${spec.what} needs { uid }: its state must survive code changes`,
      );
    }
    return this.#keyed.process(windowOperator<K, T, R>(this.#assigner, this.#options, spec, uid), { uid });
  }
}

export class ConnectedStreams<T1, T2> {
  readonly #job: JobNodes;
  readonly #a: GraphEdge;
  readonly #b: GraphEdge;
  constructor(job: JobNodes, a: GraphEdge, b: GraphEdge) {
    this.#job = job;
    this.#a = a;
    this.#b = b;
  }

  process<R>(fn: PerTask<CoProcessFunction<T1, T2, R>>, options: StatefulOptions): DataStream<R> {
    const id = this.#job.addNode(
      { kind: 'coProcess', fn, ...withPolicy(options) },
      [this.#a, this.#b],
      options.uid,
    );
    return new DataStream<R>(this.#job, { from: id });
  }
}

export class ConnectedKeyedStreams<T1, T2, K extends Key> {
  readonly #job: JobNodes;
  readonly #a: GraphEdge;
  readonly #b: GraphEdge;
  constructor(job: JobNodes, a: GraphEdge, b: GraphEdge) {
    this.#job = job;
    this.#a = a;
    this.#b = b;
  }

  process<R>(fn: PerTask<KeyedCoProcessFunction<K, T1, T2, R>>, options: StatefulOptions): DataStream<R> {
    const id = this.#job.addNode(
      { kind: 'keyedCoProcess', fn, ...withPolicy(options) },
      [this.#a, this.#b],
      options.uid,
    );
    return new DataStream<R>(this.#job, { from: id });
  }
}

export class BroadcastStream<T> {
  /** @internal */
  readonly edge: GraphEdge;
  /** Phantom field carrying the element type; never set. */
  declare readonly __type?: T;
  readonly stateNames: readonly string[];
  constructor(edge: GraphEdge, stateNames: readonly string[]) {
    this.edge = edge;
    this.stateNames = stateNames;
  }
}

export class BroadcastConnectedStream<T, B, K extends Key> {
  readonly #job: JobNodes;
  readonly #keyed: GraphEdge;
  readonly #broadcast: BroadcastStream<B>;
  constructor(job: JobNodes, keyed: GraphEdge, broadcast: BroadcastStream<B>) {
    this.#job = job;
    this.#keyed = keyed;
    this.#broadcast = broadcast;
  }

  process<R>(
    fn: PerTask<KeyedBroadcastProcessFunction<K, T, B, R>>,
    options: StatefulOptions,
  ): DataStream<R> {
    const id = this.#job.addNode(
      { kind: 'broadcastProcess', fn, states: this.#broadcast.stateNames, ...withPolicy(options) },
      [this.#keyed, this.#broadcast.edge],
      options.uid,
    );
    return new DataStream<R>(this.#job, { from: id });
  }
}
