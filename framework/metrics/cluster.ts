import cluster from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Metrics } from './metrics.ts';
import type { PrometheusMetrics } from './prometheus.ts';

/**
 * Metrics of several workers in one process (node:cluster), one `/metrics` on the primary.
 *
 * In each worker, `shareWithPrimary(metrics)` makes its registry the one the primary's aggregator
 * asks for; on the primary, `clusterMetrics()` is a Metrics whose `render()` collects every worker's
 * metrics over IPC and merges them (counters summed, gauges per worker when their labels differ).
 */
export function shareWithPrimary(metrics: PrometheusMetrics): void {
  if (!cluster.isWorker) return;
  // prom-client installs the worker's answer to the primary's requests in this constructor.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
}

export function clusterMetrics(): Pick<Metrics, 'render' | 'contentType'> {
  const aggregator = new AggregatorRegistry();
  return {
    contentType: aggregator.contentType,
    async render() {
      const merged = await aggregator.clusterMetrics();
      return typeof merged === 'string' ? merged : String(merged);
    },
  };
}
