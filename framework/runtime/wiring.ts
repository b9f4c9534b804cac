import type { Clock } from '../api/clock.ts';
import { type Collector, instanceFor } from '../api/functions.ts';
import type { Source, WatermarkStrategy } from '../api/source.ts';
import type { JobPlan, StagePlan } from '../graph/plan.ts';
import type { GraphNode } from '../graph/types.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import { recordErrorPolicy } from './config.ts';
import { type FunctionContext, FunctionOperator, type FunctionOperatorSpec } from './operators/process.ts';
import { SinkOperator } from './operators/sink.ts';
import { FilterOperator, FlatMapOperator, MapOperator, UnionOperator } from './operators/stateless.ts';
import {
  type Emitter,
  type OperatorEnv,
  passOn,
  type RecordErrorHook,
  type RuntimeOperator,
} from './operators/types.ts';
import { scopedBackend } from './scoped-backend.ts';

type Target = readonly [operator: number, input: number];

/** Sends one operator's output to its downstream operators, synchronously (operator chaining). */
class Fanout implements Emitter {
  /** Records this operator emitted (main and side outputs). */
  emitted = 0;
  /** Late records this operator dropped. */
  late = 0;
  readonly main: Target[] = [];
  readonly sides = new Map<string, Target[]>();
  readonly #ops: RuntimeOperator[];
  constructor(ops: RuntimeOperator[]) {
    this.#ops = ops;
  }
  emit(value: unknown, timestamp: number | undefined): void {
    this.emitted++;
    // Indexed (no iterator, no destructuring): this runs for every record at every operator.
    const main = this.main;
    const ops = this.#ops;
    try {
      for (let i = 0; i < main.length; i++) {
        const t = main[i]!;
        ops[t[0]]!.process(t[1], value, timestamp);
      }
    } catch (e) {
      throw passOn(e);
    }
  }
  side(tag: string, value: unknown, timestamp: number | undefined): void {
    this.emitted++;
    const targets = this.sides.get(tag);
    try {
      if (targets) for (const [op, input] of targets) this.#ops[op]!.process(input, value, timestamp);
    } catch (e) {
      throw passOn(e);
    }
  }
  dropLate(): void {
    this.late++;
  }
}

export interface SourceBinding {
  readonly uid: string;
  readonly source: Source<unknown>;
  readonly watermarks: WatermarkStrategy<unknown>;
  readonly broadcast: boolean;
  /** Channel indices of this source in the task. */
  readonly channels: number[];
}

/** The operators of one task, wired together, and the way in from each source. */
export interface OperatorWiring {
  /** Non-source operators in topological order. */
  readonly operators: RuntimeOperator[];
  readonly sources: SourceBinding[];
  /** Channel indices upstream of each operator (same index as `operators`); set by computeUpstreamChannels. */
  readonly upstreamChannels: ReadonlySet<number>[];
  emitFromSource(uid: string, value: unknown, timestamp: number | undefined, tag?: string): void;
  computeUpstreamChannels(channelCount: number): void;
  /** Records emitted so far per operator uid (sources included). */
  emitted(): { uid: string; records: number }[];
  /** Late records dropped so far per operator uid (operators that can drop none are left out). */
  lateDropped(): { uid: string; records: number }[];
  /** Records the stage's sink operators took so far: the task's output. */
  written(): number;
}

export interface WiringOptions {
  readonly plan: JobPlan;
  readonly stage: StagePlan;
  readonly partition: number;
  readonly jobId: string;
  readonly clock: Clock;
  readonly backend: KeyedStateBackend;
  readonly watermarkOf: (operatorIndex: number) => number;
  readonly taskId: string;
  readonly attempt: string;
  /** See OperatorEnv.currentSource and OperatorEnv.recordError (the task's). */
  readonly currentSource?: () => string | undefined;
  readonly recordError?: RecordErrorHook;
}

/** Instantiate the operators of a stage for one partition. */
export async function createOperators(o: WiringOptions): Promise<OperatorWiring> {
  const nodes = o.stage.nodes.map((id) => o.plan.graph.nodes[id]!);
  const opNodes = nodes.filter((n) => n.spec.kind !== 'source');
  const opIndex = new Map(opNodes.map((n, i) => [n.id, i]));
  const operators: RuntimeOperator[] = [];
  const fanouts = new Map<number, Fanout>(nodes.map((n) => [n.id, new Fanout(operators)]));
  for (const n of opNodes) {
    n.inputs.forEach((edge, input) => {
      const f = fanouts.get(edge.from)!;
      const target: Target = [opIndex.get(n.id)!, input];
      if (edge.tag === undefined) f.main.push(target);
      else f.sides.set(edge.tag, [...(f.sides.get(edge.tag) ?? []), target]);
    });
  }
  const info = (uid: string) => ({
    jobId: o.jobId,
    operatorUid: uid,
    partition: o.partition,
    partitions: o.stage.partitions,
    partitioner: o.stage.partitioner,
  });
  for (const [i, n] of opNodes.entries()) {
    const env: OperatorEnv = {
      info: info(n.uid),
      clock: o.clock,
      keyed: scopedBackend(o.backend, n.uid),
      out: fanouts.get(n.id)!,
      watermark: () => o.watermarkOf(i),
      ...(o.currentSource ? { currentSource: o.currentSource } : {}),
      ...(o.recordError ? { recordError: o.recordError } : {}),
      ...(onErrorOf(n) === undefined
        ? {}
        : { onError: recordErrorPolicy(`operator '${n.uid}': onError`, onErrorOf(n)) }),
    };
    operators.push(await createOperator(n, env, { taskId: o.taskId, attempt: o.attempt }));
  }
  const sources: SourceBinding[] = nodes.flatMap((n) =>
    n.spec.kind === 'source'
      ? [
          {
            uid: n.uid,
            source: n.spec.source,
            watermarks: n.spec.watermarks,
            broadcast: n.spec.broadcast,
            channels: [],
          },
        ]
      : [],
  );
  const sourceFanout = new Map(
    nodes.filter((n) => n.spec.kind === 'source').map((n) => [n.uid, fanouts.get(n.id)!]),
  );
  let lastUid: string | undefined;
  let lastFanout: Fanout | undefined;
  const upstream: Set<number>[] = opNodes.map(() => new Set());
  return {
    operators,
    sources,
    upstreamChannels: upstream,
    emitted() {
      return nodes.map((n) => ({ uid: n.uid, records: fanouts.get(n.id)!.emitted }));
    },
    lateDropped() {
      return opNodes
        .filter((n) => FUNCTION_KINDS.has(n.spec.kind))
        .map((n) => ({ uid: n.uid, records: fanouts.get(n.id)!.late }));
    },
    written() {
      let n = 0;
      for (const op of operators) if (op instanceof SinkOperator) n += op.written;
      return n;
    },
    emitFromSource(uid, value, timestamp, tag) {
      // Records come in runs from one source: the last source's fanout without a map lookup.
      let f = lastFanout;
      if (uid !== lastUid || f === undefined) {
        f = sourceFanout.get(uid)!;
        lastUid = uid;
        lastFanout = f;
      }
      if (tag === undefined) f.emit(value, timestamp);
      else f.side(tag, value, timestamp);
    },
    computeUpstreamChannels() {
      const byNode = new Map<number, Set<number>>();
      for (const n of nodes) {
        if (n.spec.kind === 'source') {
          byNode.set(n.id, new Set(sources.find((s) => s.uid === n.uid)!.channels));
          continue;
        }
        const set = upstream[opIndex.get(n.id)!]!;
        for (const e of n.inputs) for (const ch of byNode.get(e.from) ?? []) set.add(ch);
        byNode.set(n.id, set);
      }
    },
  };
}

async function createOperator(
  n: GraphNode,
  env: OperatorEnv,
  task: { taskId: string; attempt: string },
): Promise<RuntimeOperator> {
  const s = n.spec;
  switch (s.kind) {
    case 'map':
      return new MapOperator(n.uid, env, s.fn);
    case 'filter':
      return new FilterOperator(n.uid, env, s.fn);
    case 'flatMap':
      return new FlatMapOperator(n.uid, env, s.fn);
    case 'union':
      return new UnionOperator(n.uid, env);
    case 'sink':
      return new SinkOperator(n.uid, env, await s.sink.createWriter({ ...env.info, ...task }));
    case 'source':
      throw new Error('sources are not operators');
    default:
      return new FunctionOperator(n.uid, env, functionSpec(n));
  }
}

/** The operator's own policy for records its user function throws on (OperatorOptions.onError). */
function onErrorOf(n: GraphNode): unknown {
  return 'onError' in n.spec ? n.spec.onError : undefined;
}

type Call = (value: unknown, ctx: FunctionContext, out: Collector<unknown>) => void;

/** Node kinds run by a FunctionOperator: the only ones whose functions see a context to count late drops. */
const FUNCTION_KINDS: ReadonlySet<string> = new Set([
  'process',
  'keyedProcess',
  'coProcess',
  'keyedCoProcess',
  'broadcastProcess',
]);

function functionSpec(n: GraphNode): FunctionOperatorSpec {
  const s = n.spec;
  const [a, b] = n.inputs;
  switch (s.kind) {
    case 'process':
    case 'keyedProcess': {
      const fn = instanceFor(s.fn);
      return { fn, inputs: [{ key: a?.key, call: fn.processElement.bind(fn) as Call }] };
    }
    case 'coProcess':
    case 'keyedCoProcess': {
      const fn = instanceFor(s.fn);
      return {
        fn,
        inputs: [
          { key: a?.key, call: fn.processElement1.bind(fn) as Call },
          { key: b?.key, call: fn.processElement2.bind(fn) as Call },
        ],
      };
    }
    case 'broadcastProcess': {
      const fn = instanceFor(s.fn);
      return {
        fn,
        broadcastStates: s.states,
        inputs: [
          { key: a?.key, call: fn.processElement.bind(fn) as Call },
          { broadcast: true, call: fn.processBroadcastElement.bind(fn) as Call },
        ],
      };
    }
    default:
      throw new Error(`not a function operator: ${s.kind}`);
  }
}
