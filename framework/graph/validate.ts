import { StreamError } from '../api/errors.ts';
import { checkStagePartitioners } from './partitioning.ts';
import { type GraphNode, type JobGraph, KEYED_KINDS, STATEFUL_KINDS } from './types.ts';

const SIDE_OUTPUT_KINDS = new Set([
  'source',
  'process',
  'keyedProcess',
  'coProcess',
  'keyedCoProcess',
  'broadcastProcess',
]);

function describe(node: GraphNode): string {
  return `operator '${node.uid}' (${node.spec.kind} #${node.id})`;
}

function invalid(message: string): never {
  throw new StreamError('GRAPH_INVALID', message);
}

/**
 * Check that a job graph makes sense; throws GRAPH_INVALID naming the operator at fault.
 * Returns the node ids in a topological order (inputs before the nodes they feed).
 */
export function validateGraph(graph: JobGraph): number[] {
  const { nodes } = graph;
  if (nodes.length === 0) invalid(`job '${graph.jobId}' has no operators: add a source and a sink`);
  const byUid = new Map<string, GraphNode>();
  for (const [index, node] of nodes.entries()) {
    if (node.id !== index) invalid(`${describe(node)} has id ${node.id} at position ${index}`);
    const other = byUid.get(node.uid);
    if (other)
      invalid(
        `uid '${node.uid}' is used by both ${describe(other)} and ${describe(node)}: uids must be unique`,
      );
    byUid.set(node.uid, node);
    if (STATEFUL_KINDS.has(node.spec.kind) && !node.uidExplicit) {
      invalid(
        `${describe(node)} holds state but has no explicit uid: pass { uid: '...' } so its state survives changes to the job`,
      );
    }
    for (const edge of node.inputs) {
      const from = nodes[edge.from];
      if (!from) invalid(`${describe(node)} reads from operator #${edge.from}, which does not exist`);
      if (from.spec.kind === 'sink')
        invalid(`${describe(node)} reads from ${describe(from)}: a sink has no output`);
      if (edge.tag !== undefined && !SIDE_OUTPUT_KINDS.has(from.spec.kind)) {
        invalid(
          `${describe(node)} reads side output '${edge.tag}' of ${describe(from)}, which cannot emit side outputs`,
        );
      }
      if (from.spec.kind === 'source' && from.spec.broadcast && node.spec.kind !== 'broadcastProcess') {
        invalid(
          `${describe(node)} reads broadcast source ${describe(from)}: a broadcast stream can only be connected to a keyed stream`,
        );
      }
    }
    checkInputs(node, nodes);
  }
  if (!nodes.some((n) => n.spec.kind === 'sink')) {
    invalid(`job '${graph.jobId}' has no sink: every pipeline must end in sinkTo(...)`);
  }
  const order = topologicalOrder(graph);
  checkStagePartitioners(graph);
  return order;
}

function checkInputs(node: GraphNode, nodes: readonly GraphNode[]): void {
  const { kind } = node.spec;
  const arity = node.inputs.length;
  if (kind === 'source') {
    if (arity !== 0) invalid(`${describe(node)} is a source and cannot have inputs`);
    return;
  }
  if (arity === 0) invalid(`${describe(node)} has no input`);
  if (kind === 'coProcess' || kind === 'keyedCoProcess' || kind === 'broadcastProcess') {
    if (arity !== 2) invalid(`${describe(node)} needs exactly two inputs, has ${arity}`);
  } else if (kind !== 'union' && arity !== 1) {
    invalid(`${describe(node)} needs exactly one input, has ${arity}`);
  }
  if (KEYED_KINDS.has(kind)) {
    for (const edge of node.inputs) {
      if (!edge.key)
        invalid(
          `${describe(node)} uses keyed state and timers but its input is not keyed: call keyBy(...) first`,
        );
    }
  } else if (kind === 'broadcastProcess') {
    if (!node.inputs[0]?.key)
      invalid(`${describe(node)} needs a keyed stream as its first input: call keyBy(...) first`);
    const b = nodes[node.inputs[1]?.from ?? -1];
    if (b?.spec.kind !== 'source' || !b.spec.broadcast) {
      invalid(
        `${describe(node)} needs a broadcast stream as its second input: call broadcast(...) on a source`,
      );
    }
  } else {
    for (const edge of node.inputs) {
      if (edge.key) {
        invalid(
          `${describe(node)} is not keyed, but its input was keyed by keyBy(...): use process(...) on the keyed stream`,
        );
      }
    }
  }
}

/** Kahn's algorithm; a cycle is reported with the operators on it. */
export function topologicalOrder(graph: JobGraph): number[] {
  const indegree = graph.nodes.map((n) => n.inputs.length);
  const outputs = graph.nodes.map(() => [] as number[]);
  for (const node of graph.nodes) for (const e of node.inputs) outputs[e.from]?.push(node.id);
  const ready = graph.nodes.filter((n) => n.inputs.length === 0).map((n) => n.id);
  const order: number[] = [];
  while (ready.length > 0) {
    const id = ready.shift()!;
    order.push(id);
    for (const next of outputs[id] ?? []) {
      indegree[next] = (indegree[next] ?? 0) - 1;
      if (indegree[next] === 0) ready.push(next);
    }
  }
  if (order.length !== graph.nodes.length) {
    const stuck = graph.nodes.filter((n) => !order.includes(n.id)).map(describe);
    invalid(`the job graph has a cycle through ${stuck.join(', ')}`);
  }
  return order;
}
