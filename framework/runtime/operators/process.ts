import { StreamError } from '../../api/errors.ts';
import type {
  CheckpointHooks,
  Collector,
  KeyedBroadcastContext,
  OnTimerContext,
  ReadOnlyBroadcastState,
  TimerService,
} from '../../api/functions.ts';
import type { Key, KeyId } from '../../api/keys.ts';
import type {
  AggregatingState,
  AggregatingStateDescriptor,
  KeyedStateStore,
  ListState,
  ListStateDescriptor,
  MapState,
  MapStateDescriptor,
  ReducingState,
  ReducingStateDescriptor,
  TimeIndexedState,
  TimeIndexedStateDescriptor,
  ValueState,
  ValueStateDescriptor,
} from '../../api/state.ts';
import type { KeySelector } from '../../graph/types.ts';
import { createKeyedStateStore, type ManagedKeyedStateStore } from '../../state/handles.ts';
import { keyBytes, keyFromId, keyId } from '../../state/keys.ts';
import { OperatorStateStoreImpl } from '../../state/operator-state.ts';
import { partitionerFunction, wrongPartitionError } from '../../state/partitioners.ts';
import { TimerQueue } from '../timers.ts';
import type { OperatorEnv, OperatorSnapshot, RuntimeOperator } from './types.ts';
import { failUser, userRecordError } from './types.ts';

/** Most keys an operator remembers as checked to belong to its task (FunctionOperator #belongsHere). */
const KEYS_HERE = 65_536;

/** How one input of a function operator is delivered to the user function. */
export interface InputBinding {
  /** Key selector when this input is keyed. */
  readonly key?: KeySelector;
  /** Calls the user function for one element of this input. */
  readonly call: (value: unknown, ctx: FunctionContext, out: Collector<unknown>) => void;
  /** Whether this is the broadcast input of a broadcast connection. */
  readonly broadcast?: boolean;
}

export interface FunctionOperatorSpec {
  readonly fn: CheckpointHooks & {
    onTimer?: (timestamp: number, ctx: OnTimerContext<Key>, out: Collector<unknown>) => void;
  };
  readonly inputs: readonly InputBinding[];
  /** Broadcast state names the function may use. */
  readonly broadcastStates?: readonly string[];
}

/**
 * One operator for every process-function kind (process, co-process, keyed, keyed co-process,
 * keyed broadcast). Keyed inputs set the current key and check that it belongs to the task's key
 * group under the stage's partitioner (`info.partitioner`); a record whose key does not is a record
 * error (`env.recordError`: the source's policy skips, dead-letters or fails it, with a diagnosis
 * of which partitioner would have put it there). Timers are per key and checkpointed with the operator.
 */
export class FunctionOperator implements RuntimeOperator {
  readonly uid: string;
  readonly #env: OperatorEnv;
  readonly #spec: FunctionOperatorSpec;
  readonly #eventTimers = new TimerQueue();
  readonly #processingTimers = new TimerQueue();
  readonly #operatorState = new OperatorStateStoreImpl();
  readonly #keyedStore: ManagedKeyedStateStore;
  readonly #handles = new Map<string, unknown>();
  readonly #ctx: FunctionContext;
  readonly #out: Collector<unknown>;
  readonly #keyed: boolean;
  /** The stage's partitioner, resolved once: key bytes -> key group. */
  readonly #keyGroup: (keyBytes: Uint8Array, partitions: number) => number;
  /** Keys whose key group was checked and is this task's partition (see #belongsHere). */
  readonly #keysHere = new Set<KeyId>();
  currentKey: KeyId | undefined;
  currentTimestamp: number | undefined;

  constructor(uid: string, env: OperatorEnv, spec: FunctionOperatorSpec) {
    this.uid = uid;
    this.#env = env;
    this.#spec = spec;
    this.#keyed = spec.inputs.some((i) => i.key !== undefined);
    this.#keyGroup = partitionerFunction(env.info.partitioner ?? 'murmur2');
    this.#keyedStore = createKeyedStateStore(env.keyed, {
      currentKey: () => {
        if (this.currentKey === undefined) {
          throw new StreamError(
            'GRAPH_INVALID',
            `operator '${uid}' used keyed state outside a keyed context: keyed state needs keyBy(...) before the operator`,
          );
        }
        return this.currentKey;
      },
      processingTime: () => env.clock.now(),
      watermark: () => env.watermark(),
    });
    this.#ctx = new FunctionContext(this);
    this.#out = {
      collect: (value, timestamp) => env.out.emit(value, timestamp ?? this.currentTimestamp),
    };
  }

  /** @internal used by the context */
  get env(): OperatorEnv {
    return this.#env;
  }
  get keyedStore(): KeyedStateStore {
    return this.#keyedStore;
  }
  get handles(): Map<string, unknown> {
    return this.#handles;
  }
  get operatorState(): OperatorStateStoreImpl {
    return this.#operatorState;
  }
  get isKeyed(): boolean {
    return this.#keyed;
  }

  timerService(): TimerService {
    return this.#ctx;
  }

  registerTimer(domain: 'event' | 'processing', timestamp: number, remove = false): void {
    const key = this.currentKey;
    if (key === undefined) {
      throw new StreamError(
        'GRAPH_INVALID',
        `operator '${this.uid}' used timers outside a keyed context: call keyBy(...) first`,
      );
    }
    const q = domain === 'event' ? this.#eventTimers : this.#processingTimers;
    if (remove) q.delete(timestamp, key);
    else q.register(timestamp, key);
  }

  async open(restored: OperatorSnapshot | undefined): Promise<void> {
    if (restored?.operatorState) this.#operatorState.restore(restored.operatorState);
    if (restored?.timers) {
      this.#eventTimers.restore(restored.timers.event);
      this.#processingTimers.restore(restored.timers.processing);
    }
    const fn = this.#spec.fn;
    try {
      if (restored?.raw && fn.restoreRawState) fn.restoreRawState(restored.raw);
      fn.initializeState?.({
        info: this.#env.info,
        operatorState: this.#operatorState,
        isRestored: restored !== undefined,
      });
    } catch (e) {
      failUser(this.uid, 'initializeState', e);
    }
  }

  process(input: number, value: unknown, timestamp: number | undefined): void {
    const binding = this.#spec.inputs[input]!;
    this.currentTimestamp = timestamp;
    if (binding.key) {
      let id: KeyId;
      try {
        id = keyId((binding.key as (v: unknown) => Key)(value));
      } catch (e) {
        this.currentKey = undefined;
        userRecordError(this.#env, this.uid, 'its key selector', e);
        return;
      }
      if (!this.#keysHere.has(id) && !this.#belongsHere(id)) {
        this.currentKey = undefined;
        return;
      }
      this.currentKey = id;
    } else {
      this.currentKey = undefined;
    }
    try {
      binding.call(value, this.#ctx, this.#out);
    } catch (e) {
      // State the function changed before it threw stays changed (as in Kafka Streams' handler).
      const what = `processElement${this.#spec.inputs.length > 1 ? input + 1 : ''}`;
      const key = this.currentKey === undefined ? undefined : keyBytes(this.currentKey);
      userRecordError(this.#env, this.uid, what, e, key);
    }
  }

  /**
   * A key not seen lately: hashed for its key group, which must be this task's partition. A key that
   * belongs here is remembered (at most KEYS_HERE of them, then the memory starts over), so a key the
   * task sees again and again is hashed once (the hash took a Buffer and a murmur2 per record).
   * A key that does not is a record error: false when the source's poison-record policy skips or
   * dead-letters the record, else the error is thrown and the task fails (permanently: the same
   * record would fail again after a restart).
   */
  #belongsHere(id: KeyId): boolean {
    const { partition, partitions } = this.#env.info;
    const bytes = keyBytes(id);
    const group = this.#keyGroup(bytes, partitions);
    if (group === partition) {
      if (this.#keysHere.size >= KEYS_HERE) this.#keysHere.clear();
      this.#keysHere.add(id);
      return true;
    }
    const error = wrongPartitionError({
      operator: this.uid,
      source: this.#env.currentSource?.(),
      key: keyFromId(id),
      keyBytes: bytes,
      partition,
      partitions,
      partitioner: this.#env.info.partitioner ?? 'murmur2',
      keyGroup: group,
    });
    const verdict = this.#env.recordError?.(error, bytes) ?? error;
    if (verdict === true) return false;
    throw verdict;
  }

  advanceWatermark(watermark: number): void {
    this.#fire('event', this.#eventTimers, watermark);
  }

  fireProcessingTimers(now: number): void {
    this.#fire('processing', this.#processingTimers, now);
  }

  #fire(domain: 'event' | 'processing', queue: TimerQueue, time: number): void {
    const onTimer = this.#spec.fn.onTimer;
    for (let t = queue.pollDue(time); t; t = queue.pollDue(time)) {
      if (!onTimer) continue;
      const [timestamp, key] = t;
      this.currentKey = key;
      this.currentTimestamp = domain === 'event' ? timestamp : undefined;
      this.#ctx.timeDomain = domain;
      try {
        onTimer.call(this.#spec.fn, timestamp, this.#ctx as unknown as OnTimerContext<Key>, this.#out);
      } catch (e) {
        failUser(this.uid, 'onTimer', e);
      }
    }
  }

  nextProcessingTimer(): number | undefined {
    return this.#processingTimers.peek();
  }

  snapshot(checkpointId: number): OperatorSnapshot {
    const fn = this.#spec.fn;
    let raw: Uint8Array | undefined;
    try {
      fn.snapshotState?.(checkpointId);
      raw = fn.snapshotRawState?.(checkpointId);
    } catch (e) {
      failUser(this.uid, 'snapshotState', e);
    }
    // Expired TTL entries are dropped before the capture, so snapshots stay bounded.
    this.#keyedStore.cleanupExpired();
    const snap: OperatorSnapshot = { operatorState: this.#operatorState.snapshot() };
    if (this.#keyed)
      snap.timers = { event: this.#eventTimers.toArray(), processing: this.#processingTimers.toArray() };
    if (raw) snap.raw = raw;
    return snap;
  }

  async notifyComplete(checkpointId: number): Promise<void> {
    try {
      this.#spec.fn.notifyCheckpointComplete?.(checkpointId);
    } catch (e) {
      failUser(this.uid, 'notifyCheckpointComplete', e);
    }
  }

  notifyAborted(checkpointId: number): void {
    try {
      this.#spec.fn.notifyCheckpointAborted?.(checkpointId);
    } catch (e) {
      failUser(this.uid, 'notifyCheckpointAborted', e);
    }
  }

  async close(): Promise<void> {}
  async abort(): Promise<void> {}
}

/**
 * The context object handed to user functions; one per operator, reused for every call (read its
 * fields during the call only).
 */
export class FunctionContext implements KeyedBroadcastContext<Key>, TimerService {
  readonly #op: FunctionOperator;
  timeDomain: 'event' | 'processing' = 'event';
  constructor(op: FunctionOperator) {
    this.#op = op;
  }
  get info() {
    return this.#op.env.info;
  }
  get key(): Key {
    const k = this.#op.currentKey;
    if (k === undefined)
      throw new StreamError(
        'GRAPH_INVALID',
        `operator '${this.#op.uid}' has no current key: call keyBy(...) first`,
      );
    return keyFromId(k);
  }
  get timestamp(): number | undefined {
    return this.#op.currentTimestamp;
  }
  get timerService(): TimerService {
    return this;
  }
  currentProcessingTime(): number {
    return this.#op.env.clock.now();
  }
  currentWatermark(): number {
    return this.#op.env.watermark();
  }
  registerEventTimeTimer(timestamp: number): void {
    this.#op.registerTimer('event', timestamp);
  }
  registerProcessingTimeTimer(timestamp: number): void {
    this.#op.registerTimer('processing', timestamp);
  }
  deleteEventTimeTimer(timestamp: number): void {
    this.#op.registerTimer('event', timestamp, true);
  }
  deleteProcessingTimeTimer(timestamp: number): void {
    this.#op.registerTimer('processing', timestamp, true);
  }
  output<T>(tag: { id: string }, value: T, timestamp?: number): void {
    this.#op.env.out.side(tag.id, value, timestamp ?? this.#op.currentTimestamp);
  }
  lateRecordDropped(): void {
    this.#op.env.out.dropLate();
  }
  getState<T>(d: ValueStateDescriptor<T>): ValueState<T> {
    return this.#handle(d.name, d, makeValue) as ValueState<T>;
  }
  getListState<T>(d: ListStateDescriptor<T>): ListState<T> {
    return this.#handle(d.name, d, makeList) as ListState<T>;
  }
  getMapState<K, V>(d: MapStateDescriptor<K, V>): MapState<K, V> {
    return this.#handle(d.name, d, makeMap) as MapState<K, V>;
  }
  getReducingState<T>(d: ReducingStateDescriptor<T>): ReducingState<T> {
    return this.#handle(d.name, d, makeReducing) as ReducingState<T>;
  }
  getAggregatingState<IN, ACC, OUT>(d: AggregatingStateDescriptor<IN, ACC, OUT>): AggregatingState<IN, OUT> {
    return this.#handle(d.name, d, makeAggregating) as AggregatingState<IN, OUT>;
  }
  getTimeIndexedState<V>(d: TimeIndexedStateDescriptor<V>): TimeIndexedState<V> {
    return this.#handle(d.name, d, makeTimeIndexed) as TimeIndexedState<V>;
  }
  broadcastState<BK, BV>(name: string): MapState<BK, BV> & ReadOnlyBroadcastState<BK, BV> {
    return this.#handle(`broadcast:${name}`, name, makeBroadcast) as MapState<BK, BV> &
      ReadOnlyBroadcastState<BK, BV>;
  }

  /**
   * The operator's handle for state `name`, made by `make` the first time. `make` is a module-level
   * function, not a closure: a job asks for its handles on every record.
   */
  #handle<D>(name: string, d: D, make: (op: FunctionOperator, d: D) => unknown): unknown {
    let h = this.#op.handles.get(name);
    if (h === undefined) {
      if (!this.#op.isKeyed && !name.startsWith('broadcast:')) {
        throw new StreamError(
          'GRAPH_INVALID',
          `operator '${this.#op.uid}' asked for keyed state '${name}' but its input is not keyed: call keyBy(...) before it`,
        );
      }
      h = make(this.#op, d);
      this.#op.handles.set(name, h);
    }
    return h;
  }
}

const makeValue = (op: FunctionOperator, d: ValueStateDescriptor<unknown>) => op.keyedStore.getState(d);
const makeList = (op: FunctionOperator, d: ListStateDescriptor<unknown>) => op.keyedStore.getListState(d);
const makeMap = (op: FunctionOperator, d: MapStateDescriptor<unknown, unknown>) =>
  op.keyedStore.getMapState(d);
// biome-ignore lint/suspicious/noExplicitAny: the descriptor's function type is contravariant in T
const makeReducing = (op: FunctionOperator, d: ReducingStateDescriptor<any>) =>
  op.keyedStore.getReducingState(d);
// biome-ignore lint/suspicious/noExplicitAny: as makeReducing
const makeAggregating = (op: FunctionOperator, d: AggregatingStateDescriptor<any, any, any>) =>
  op.keyedStore.getAggregatingState(d);
const makeTimeIndexed = (op: FunctionOperator, d: TimeIndexedStateDescriptor<unknown>) =>
  op.keyedStore.getTimeIndexedState(d);
const makeBroadcast = (op: FunctionOperator, name: string) => op.operatorState.getBroadcastState(name);
