import { StreamError } from '../api/errors.ts';
import type { Partitioner } from '../api/keys.ts';
import { stagePartitioner } from './partitioning.ts';
import type { GraphNode, JobGraph } from './types.ts';
import { validateGraph } from './validate.ts';

/**
 * A stage: the operators of a job connected to one another without a Kafka topic in between. Each
 * stage runs as `partitions` tasks; task p reads partition p of every non-broadcast source of the
 * stage and every partition of its broadcast sources.
 */
export interface StagePlan {
  readonly index: number;
  /** Node ids of the stage in topological order. */
  readonly nodes: readonly number[];
  readonly partitions: number;
  /** The function key -> key group of its keyed operators (`partitioning.ts`). */
  readonly partitioner: Partitioner;
}

export interface JobPlan {
  readonly graph: JobGraph;
  readonly stages: readonly StagePlan[];
}

/** Split a validated graph into stages and check that the sources of each stage are co-partitioned. */
export function planJob(graph: JobGraph): JobPlan {
  const order = validateGraph(graph);
  for (const n of graph.nodes) {
    if (n.inputs.some((e) => e.repartition)) {
      throw new StreamError(
        'GRAPH_INVALID',
        `operator '${n.uid}' reads a stream keyed with { repartition: true }: that needs a repartition topic, so run the job with runKafkaJob(...)`,
      );
    }
  }
  const component = new Map<number, number>();
  const parent = graph.nodes.map((n) => n.id);
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]!]!;
    return x;
  };
  for (const node of graph.nodes) for (const e of node.inputs) parent[find(node.id)] = find(e.from);
  const stages: number[][] = [];
  for (const id of order) {
    const root = find(id);
    let s = component.get(root);
    if (s === undefined) {
      s = stages.length;
      component.set(root, s);
      stages.push([]);
    }
    stages[s]!.push(id);
  }
  return {
    graph,
    stages: stages.map((nodes, index) => ({
      index,
      nodes,
      partitions: stagePartitions(graph, nodes),
      partitioner: stagePartitioner(graph, nodes),
    })),
  };
}

function stagePartitions(graph: JobGraph, ids: readonly number[]): number {
  const sources = ids
    .map((id) => graph.nodes[id]!)
    .filter((n) => n.spec.kind === 'source' && !n.spec.broadcast);
  if (sources.length === 0) {
    throw new StreamError(
      'GRAPH_INVALID',
      `a stage of job '${graph.jobId}' reads only broadcast sources: it needs a non-broadcast source`,
    );
  }
  const counts = sources.map((n: GraphNode) => {
    const p = n.spec.kind === 'source' ? n.spec.source.partitions() : 0;
    if (!Number.isInteger(p) || p < 1) {
      throw new StreamError(
        'GRAPH_INVALID',
        `source '${n.uid}' reports ${p} partitions; it needs at least one`,
      );
    }
    return p;
  });
  const first = counts[0]!;
  const odd = counts.findIndex((c) => c !== first);
  if (odd >= 0) {
    throw new StreamError(
      'GRAPH_INVALID',
      `sources '${sources[0]!.uid}' (${first} partitions) and '${sources[odd]!.uid}' (${counts[odd]} partitions) feed the same stage but are not co-partitioned: give them the same partition count`,
    );
  }
  return first;
}
