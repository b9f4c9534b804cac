import { pack, unpack } from 'msgpackr';
import { type GraphNode, type JobGraph, type Key, keyBytes, keyId } from '../../framework/index.ts';
import { KafkaSink } from './sink/kafka-sink.ts';
import { KafkaSource } from './source/kafka-source.ts';

export interface RepartitionTopic {
  readonly topic: string;
  /** The operator whose input goes through it. */
  readonly operator: string;
  /** The node whose output is written to it (to size it like that node's stage). */
  readonly from: number;
}

/**
 * Cut every `keyBy(..., { repartition: true })` edge into a Kafka sink and a Kafka source over the
 * repartition topic `<jobId>.<uid>.repartition`: the upstream stage writes each record keyed by the
 * key's bytes (so Kafka's partitioner puts it in the key's key group) inside its task transaction,
 * and the downstream stage reads it committed, keyed as before. Element and event time are kept
 * (msgpack value, record timestamp).
 */
export function cutRepartitions(graph: JobGraph): { graph: JobGraph; topics: RepartitionTopic[] } {
  const nodes: GraphNode[] = [...graph.nodes];
  const topics: RepartitionTopic[] = [];
  for (const n of graph.nodes) {
    if (!n.inputs.some((e) => e.repartition)) continue;
    const inputs = n.inputs.map((e, i) => {
      if (!e.repartition || !e.key) return e;
      const topic = `${graph.jobId}.${n.uid}${n.inputs.length > 1 ? `-${i}` : ''}.repartition`;
      const select = e.key as (v: unknown) => Key;
      const sink = new KafkaSink<unknown>({
        topic,
        uid: `${n.uid}-repartition-out${i}`,
        encode: (v) => ({ key: Buffer.from(keyBytes(keyId(select(v)))), value: pack(v) }),
      });
      const source = new KafkaSource<unknown>({
        topic,
        uid: `${n.uid}-repartition-in${i}`,
        decode: (r) => (r.value ? unpack(r.value) : null),
      });
      nodes.push({
        id: nodes.length,
        uid: sink.uid,
        uidExplicit: true,
        spec: { kind: 'sink', sink },
        inputs: [{ from: e.from, ...(e.tag !== undefined ? { tag: e.tag } : {}) }],
      });
      nodes.push({
        id: nodes.length,
        uid: source.uid,
        uidExplicit: true,
        spec: { kind: 'source', source, watermarks: {}, broadcast: false },
        inputs: [],
      });
      topics.push({ topic, operator: n.uid, from: e.from });
      return { from: nodes.length - 1, key: e.key };
    });
    nodes[n.id] = { ...n, inputs };
  }
  return { graph: { ...graph, nodes }, topics };
}
