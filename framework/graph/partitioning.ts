import { StreamError } from '../api/errors.ts';
import type { Partitioner } from '../api/keys.ts';
import type { GraphNode, JobGraph } from './types.ts';

/**
 * A stage's partitioner: the function key -> key group of its keyed operators. A stage's key groups
 * are its input partitions, so the function must be the one the producers of its keyed inputs used:
 * the `partitioner` of the sources upstream of its keyed edges (default murmur2), and murmur2 for a
 * repartition topic (written by the job's own Kafka sink, whose partitioner is kafkajs's murmur2).
 *
 * One function per stage: keyed inputs of one stage (a connect, a join, a union, or two keyed
 * operators the stage shares) that name different partitioners are GRAPH_INVALID, with what to do.
 * A stage without keyed inputs hashes nothing; its partitioner is murmur2.
 */
export function stagePartitioner(graph: JobGraph, ids: readonly number[]): Partitioner {
  const found = new Map<Partitioner, Set<string>>();
  const add = (p: Partitioner, what: string) => {
    const s = found.get(p) ?? new Set<string>();
    found.set(p, s);
    s.add(what);
  };
  for (const id of ids) {
    const n = graph.nodes[id]!;
    for (const e of n.inputs) {
      if (!e.key) continue;
      if (e.repartition) add('murmur2', `the repartition topic of operator '${n.uid}'`);
      else upstreamSources(graph, e.from, add);
    }
  }
  if (found.size > 1) {
    const named = [...found].map(
      ([p, what]) => `${[...what].join(', ')} (${typeof p === 'string' ? p : 'a partitioner function'})`,
    );
    const notMurmur = [...found].filter(([p]) => p !== 'murmur2').flatMap(([, what]) => [...what]);
    throw new StreamError(
      'GRAPH_INVALID',
      `the keyed inputs of one stage are partitioned by different partitioners: ${named.join('; ')}. A stage has one partitioner (its key groups are its input partitions): repartition ${notMurmur.join(', ')} with keyBy(selector, { repartition: true }) (repartition topics are partitioned by murmur2), or produce the topics with one partitioner and name it on every source (docs/kafka.md "Partitioners")`,
    );
  }
  return [...found.keys()][0] ?? 'murmur2';
}

/** Every stage's partitioner (stages: components over edges that are not repartitioned); throws as `stagePartitioner`. */
export function checkStagePartitioners(graph: JobGraph): void {
  const parent = graph.nodes.map((n) => n.id);
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]!]!;
    return x;
  };
  for (const n of graph.nodes)
    for (const e of n.inputs) if (!e.repartition && graph.nodes[e.from]) parent[find(n.id)] = find(e.from);
  const stages = new Map<number, number[]>();
  for (const n of graph.nodes) {
    const root = find(n.id);
    stages.set(root, [...(stages.get(root) ?? []), n.id]);
  }
  for (const ids of stages.values()) stagePartitioner(graph, ids);
}

function upstreamSources(graph: JobGraph, from: number, add: (p: Partitioner, what: string) => void): void {
  const seen = new Set<number>();
  const stack = [from];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    const n: GraphNode | undefined = graph.nodes[id];
    if (!n) continue;
    if (n.spec.kind === 'source') {
      if (!n.spec.broadcast) add(n.spec.source.partitioner ?? 'murmur2', `source '${n.uid}'`);
      continue;
    }
    // Inputs in order (a stack: pushed last first), so messages list the sources as the job reads.
    for (const e of [...n.inputs].reverse()) {
      if (e.repartition) add('murmur2', `the repartition topic of operator '${n.uid}'`);
      else stack.push(e.from);
    }
  }
}
