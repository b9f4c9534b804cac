import { StreamError } from '../api/errors.ts';
import type { Source, WatermarkStrategy } from '../api/source.ts';
import type { GraphEdge, GraphNode, JobGraph, OperatorSpec } from '../graph/types.ts';
import { validateGraph } from '../graph/validate.ts';
import { DataStream, type JobNodes } from './streams.ts';

/**
 * The brand of a StreamJob, shared by every copy of kstate in a process (`Symbol.for`): a job module
 * may import `StreamJob` from another copy of the package than the one that runs it (a second
 * install, a bundled copy), so runners recognise a job by this brand, never by `instanceof`. Its value
 * is the version of the job-graph contract between the builder and the runtime (JOB_GRAPH_VERSION).
 */
export const STREAM_JOB_BRAND: unique symbol = Symbol.for('kstate.StreamJob');
/** Bumped when `JobGraph` changes incompatibly; a runner refuses a job of another version. */
export const JOB_GRAPH_VERSION = 1;

/** A StreamJob from any copy of kstate (see STREAM_JOB_BRAND). */
export function isStreamJob(value: unknown): value is StreamJob {
  return typeof value === 'object' && value !== null && STREAM_JOB_BRAND in value;
}

/**
 * The DataStream API. A `StreamJob` collects the dataflow; `build()` validates it and returns the
 * plain `JobGraph` the runtime executes. Streams are immutable handles: every transformation adds a
 * node and returns a new stream.
 *
 *   const job = new StreamJob('orders');
 *   job.source(orders, { watermarks: { maxOutOfOrdernessMs: 5_000 } })
 *     .keyBy((o) => o.customer)
 *     .process(new CountPerCustomer(), { uid: 'count' })
 *     .sinkTo(out);
 */
export class StreamJob implements JobNodes {
  readonly jobId: string;
  /** See STREAM_JOB_BRAND. */
  readonly [STREAM_JOB_BRAND] = JOB_GRAPH_VERSION;
  readonly #nodes: GraphNode[] = [];

  constructor(jobId: string) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(jobId)) {
      throw new StreamError(
        'CONFIG_INVALID',
        `jobId ${JSON.stringify(jobId)} is not valid: use letters, digits, '.', '_' and '-' (it names Kafka groups, topics and transactional ids)`,
      );
    }
    this.jobId = jobId;
  }

  /** Read a source. `broadcast: true` gives every task all partitions (see `DataStream.broadcast`). */
  source<T>(source: Source<T>, options: { watermarks?: WatermarkStrategy<T> } = {}): DataStream<T> {
    const id = this.addNode(
      {
        kind: 'source',
        source: source as Source<unknown>,
        watermarks: (options.watermarks ?? {}) as WatermarkStrategy<unknown>,
        broadcast: false,
      },
      [],
      source.uid,
    );
    return new DataStream<T>(this, { from: id });
  }

  /** Validate and return the graph. Throws GRAPH_INVALID naming the operator at fault. */
  build(): JobGraph {
    const graph: JobGraph = { jobId: this.jobId, nodes: [...this.#nodes] };
    validateGraph(graph);
    return graph;
  }

  /** @internal */
  addNode(spec: OperatorSpec, inputs: GraphEdge[], uid: string | undefined): number {
    const id = this.#nodes.length;
    this.#nodes.push({ id, uid: uid ?? `${spec.kind}-${id}`, uidExplicit: uid !== undefined, spec, inputs });
    return id;
  }

  /** @internal */
  markBroadcast(nodeId: number): void {
    const node = this.#nodes[nodeId];
    if (node?.spec.kind !== 'source') {
      throw new StreamError(
        'GRAPH_INVALID',
        `broadcast() is only supported directly on a source (operator ${node?.uid ?? nodeId}): every task reads all partitions of a broadcast source`,
      );
    }
    this.#nodes[nodeId] = { ...node, spec: { ...node.spec, broadcast: true } };
  }
}
