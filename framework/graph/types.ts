import type {
  CoProcessFunction,
  KeyedBroadcastProcessFunction,
  KeyedCoProcessFunction,
  KeyedProcessFunction,
  PerTask,
  ProcessFunction,
} from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { Sink } from '../api/sink.ts';
import type { RecordErrorPolicy, Source, WatermarkStrategy } from '../api/source.ts';

/** The logical dataflow of a job: plain data, built by the DataStream API (`framework/datastream/`), checked by `validate.ts`. */
export interface JobGraph {
  readonly jobId: string;
  readonly nodes: readonly GraphNode[];
}

export type KeySelector = (value: never) => Key;

export interface GraphEdge {
  readonly from: number;
  /** A side output of `from` instead of its main output. */
  readonly tag?: string;
  /** Set when the stream was keyed (keyBy) on the way into this node. */
  readonly key?: KeySelector;
  /**
   * The input is not partitioned by `key`: records go through a repartition topic keyed by it
   * (written in the upstream task's transaction, read committed by the downstream stage).
   * Only Kafka jobs (runKafkaJob) can run such an edge.
   */
  readonly repartition?: boolean;
}

export interface GraphNode {
  readonly id: number;
  readonly uid: string;
  /** False when the uid was generated; stateful operators need an explicit one. */
  readonly uidExplicit: boolean;
  readonly spec: OperatorSpec;
  readonly inputs: readonly GraphEdge[];
}

// biome-ignore lint/suspicious/noExplicitAny: user functions of any element type are stored side by side
type AnyFn = any;

/** What a user-function operator may carry besides its function: its policy for records it throws on. */
interface UserFunctionSpec {
  /** See OperatorOptions.onError (framework/datastream); default: the job's onUserFunctionError. */
  readonly onError?: RecordErrorPolicy;
}

export type OperatorSpec =
  | {
      readonly kind: 'source';
      readonly source: Source<unknown>;
      readonly watermarks: WatermarkStrategy<unknown>;
      readonly broadcast: boolean;
    }
  | ({ readonly kind: 'map'; readonly fn: (value: AnyFn) => unknown } & UserFunctionSpec)
  | ({ readonly kind: 'filter'; readonly fn: (value: AnyFn) => boolean } & UserFunctionSpec)
  | ({ readonly kind: 'flatMap'; readonly fn: (value: AnyFn) => Iterable<unknown> } & UserFunctionSpec)
  | { readonly kind: 'union' }
  | ({ readonly kind: 'process'; readonly fn: PerTask<ProcessFunction<AnyFn, unknown>> } & UserFunctionSpec)
  | ({
      readonly kind: 'keyedProcess';
      readonly fn: PerTask<KeyedProcessFunction<AnyFn, AnyFn, unknown>>;
    } & UserFunctionSpec)
  | ({
      readonly kind: 'coProcess';
      readonly fn: PerTask<CoProcessFunction<AnyFn, AnyFn, unknown>>;
    } & UserFunctionSpec)
  | ({
      readonly kind: 'keyedCoProcess';
      readonly fn: PerTask<KeyedCoProcessFunction<AnyFn, AnyFn, AnyFn, unknown>>;
    } & UserFunctionSpec)
  | ({
      readonly kind: 'broadcastProcess';
      readonly fn: PerTask<KeyedBroadcastProcessFunction<AnyFn, AnyFn, AnyFn, unknown>>;
      /** Names of the broadcast states the function may use. */
      readonly states: readonly string[];
    } & UserFunctionSpec)
  | { readonly kind: 'sink'; readonly sink: Sink<unknown> };

export type OperatorKind = OperatorSpec['kind'];

/** Kinds that hold state (managed, raw or sink transactions) and therefore need a stable uid. */
export const STATEFUL_KINDS: ReadonlySet<OperatorKind> = new Set([
  'source',
  'process',
  'keyedProcess',
  'coProcess',
  'keyedCoProcess',
  'broadcastProcess',
  'sink',
]);

/** Kinds whose every input must be keyed (the second input of broadcastProcess is the broadcast). */
export const KEYED_KINDS: ReadonlySet<OperatorKind> = new Set(['keyedProcess', 'keyedCoProcess']);
