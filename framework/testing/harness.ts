import type { Clock } from '../api/clock.ts';
import { isStreamError } from '../api/errors.ts';
import type { KeyedCoProcessFunction, KeyedProcessFunction } from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import { FunctionOperator, type FunctionOperatorSpec } from '../runtime/operators/process.ts';
import type { OperatorSnapshot } from '../runtime/operators/types.ts';
import { scopedBackend } from '../runtime/scoped-backend.ts';
import type { KeyedStateBackend, KeyedStateSnapshot } from '../state/backend.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';
import { ManualClock } from './clock.ts';

export interface HarnessSnapshot {
  readonly keyed: KeyedStateSnapshot;
  readonly operator: OperatorSnapshot;
}

export interface HarnessOptions {
  readonly uid?: string;
  readonly clock?: ManualClock;
  readonly backend?: KeyedStateBackend;
  readonly restore?: HarnessSnapshot;
}

export interface HarnessRecord<T> {
  readonly value: T;
  readonly timestamp: number | undefined;
}

/**
 * Runs one keyed process function outside a job: feed records, move the watermark and processing
 * time, read the output, and snapshot -> new instance -> restore -> continue, as Flink's
 * KeyedOneInputStreamOperatorTestHarness.
 */
export class KeyedOperatorHarness<K extends Key, IN, OUT, IN2 = never> {
  readonly output: HarnessRecord<OUT>[] = [];
  readonly sideOutputs = new Map<string, HarnessRecord<unknown>[]>();
  /** Records the function dropped for being late (`ctx.lateRecordDropped()`), as the job's metric counts them. */
  lateRecordsDropped = 0;
  readonly clock: ManualClock;
  readonly #op: FunctionOperator;
  readonly #backend: KeyedStateBackend;
  readonly #uid: string;
  #watermark = Number.NEGATIVE_INFINITY;
  #checkpointId = 0;

  private constructor(
    op: FunctionOperator,
    backend: KeyedStateBackend,
    clock: ManualClock,
    sink: (h: KeyedOperatorHarness<K, IN, OUT, IN2>) => void,
  ) {
    this.#op = op;
    this.#backend = backend;
    this.#uid = op.uid;
    this.clock = clock;
    sink(this);
  }

  static create<K extends Key, IN, OUT>(
    fn: KeyedProcessFunction<K, IN, OUT>,
    key: (value: IN) => K,
    options: HarnessOptions = {},
  ): Promise<KeyedOperatorHarness<K, IN, OUT>> {
    return KeyedOperatorHarness.#build<K, IN, OUT, never>(
      fn,
      [{ key: key as never, call: fn.processElement.bind(fn) as never }],
      options,
    );
  }

  /** A harness for a keyed two-input function (joins): `processElement` feeds input 1, `processElement2` input 2. */
  static createTwoInput<K extends Key, IN1, IN2, OUT>(
    fn: KeyedCoProcessFunction<K, IN1, IN2, OUT>,
    key1: (value: IN1) => K,
    key2: (value: IN2) => K,
    options: HarnessOptions = {},
  ): Promise<KeyedOperatorHarness<K, IN1, OUT, IN2>> {
    return KeyedOperatorHarness.#build<K, IN1, OUT, IN2>(
      fn,
      [
        { key: key1 as never, call: fn.processElement1.bind(fn) as never },
        { key: key2 as never, call: fn.processElement2.bind(fn) as never },
      ],
      options,
    );
  }

  static async #build<K extends Key, IN, OUT, IN2>(
    fn: KeyedProcessFunction<K, IN, OUT> | KeyedCoProcessFunction<K, IN, IN2, OUT>,
    inputs: FunctionOperatorSpec['inputs'],
    options: HarnessOptions,
  ): Promise<KeyedOperatorHarness<K, IN, OUT, IN2>> {
    const uid = options.uid ?? 'harness';
    const clock = options.clock ?? new ManualClock();
    const backend = options.backend ?? new HeapKeyedStateBackend();
    if (options.restore) await backend.restore(options.restore.keyed);
    let self!: KeyedOperatorHarness<K, IN, OUT, IN2>;
    const op = new FunctionOperator(
      uid,
      {
        info: { jobId: 'harness', operatorUid: uid, partition: 0, partitions: 1 },
        clock: clock as Clock,
        keyed: scopedBackend(backend, uid),
        out: {
          emit: (value, timestamp) => self.output.push({ value: value as OUT, timestamp }),
          side: (tag, value, timestamp) => {
            const list = self.sideOutputs.get(tag) ?? [];
            list.push({ value, timestamp });
            self.sideOutputs.set(tag, list);
          },
          dropLate: () => {
            self.lateRecordsDropped++;
          },
        },
        watermark: () => self.#watermark,
      },
      {
        fn: fn as never,
        inputs,
      },
    );
    const h = new KeyedOperatorHarness<K, IN, OUT, IN2>(op, backend, clock, (x) => {
      self = x;
    });
    await op.open(options.restore?.operator);
    return h;
  }

  processElement(value: IN, timestamp?: number): void {
    this.#op.process(0, value, timestamp);
  }

  /** Input 2 of a two-input harness (`createTwoInput`). */
  processElement2(value: IN2, timestamp?: number): void {
    this.#op.process(1, value, timestamp);
  }

  advanceWatermark(watermark: number): void {
    if (watermark <= this.#watermark) return;
    this.#watermark = watermark;
    this.#op.advanceWatermark(watermark);
  }

  /** Set processing time and fire the processing-time timers that fall due. */
  setProcessingTime(time: number): void {
    this.clock.set(time);
    this.#op.fireProcessingTimers(time);
  }

  /**
   * Keys holding a value of one state of the function (a list or map state is one entry per key),
   * e.g. to show that window expiry or TTL keeps state bounded. 0 for a state the function has
   * not used since this instance was created (a restored state is registered on first use).
   */
  stateEntries(state: string): number {
    try {
      return this.#backend.size(`${this.#uid}/${state}`);
    } catch (e) {
      if (isStreamError(e, 'STATE_DESCRIPTOR_CONFLICT')) return 0;
      throw e;
    }
  }

  /** Snapshot state and timers as a checkpoint would. */
  async snapshot(): Promise<HarnessSnapshot> {
    const id = ++this.#checkpointId;
    const operator = this.#op.snapshot(id);
    const capture = this.#backend.capture(id);
    try {
      return { keyed: await capture.materialize(), operator };
    } finally {
      capture.release();
    }
  }

  async close(): Promise<void> {
    await this.#op.close();
    await this.#backend.close();
  }
}
