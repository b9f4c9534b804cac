export { clusterMetrics, shareWithPrimary } from './cluster.ts';
export {
  combineListeners,
  DURATION_BUCKETS,
  type InstrumentedJob,
  instrumentJob,
  type Readiness,
} from './instrument.ts';
export type {
  CounterMetric,
  GaugeMetric,
  HistogramMetric,
  HistogramSpec,
  Labels,
  MetricSpec,
  Metrics,
} from './metrics.ts';
export { noopMetrics } from './metrics.ts';
export {
  createPrometheusMetrics,
  type PrometheusMetrics,
  type PrometheusMetricsOptions,
} from './prometheus.ts';
