/**
 * The framework's view of metrics: counters, gauges and histograms with string labels, and a text
 * exposition. No metrics library's types appear here; `createPrometheusMetrics` (prom-client) is one
 * implementation, `noopMetrics` another.
 */

export type Labels = Readonly<Record<string, string | number>>;

export interface MetricSpec {
  /** Name without the registry's prefix, snake_case; counters end in `_total`, units are base units. */
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
}

export interface HistogramSpec extends MetricSpec {
  /** Upper bounds of the buckets, in the metric's unit. */
  readonly buckets?: readonly number[];
}

export interface CounterMetric {
  inc(labels: Labels, by?: number): void;
  remove(labels: Labels): void;
}

export interface GaugeMetric {
  set(labels: Labels, value: number): void;
  inc(labels: Labels, by?: number): void;
  dec(labels: Labels, by?: number): void;
  remove(labels: Labels): void;
}

export interface HistogramMetric {
  observe(labels: Labels, value: number): void;
  remove(labels: Labels): void;
}

export interface Metrics {
  /** A counter (only goes up); asking twice for one name returns the same counter. */
  counter(spec: MetricSpec): CounterMetric;
  /** A gauge (can go down); asking twice for one name returns the same gauge. */
  gauge(spec: MetricSpec): GaugeMetric;
  histogram(spec: HistogramSpec): HistogramMetric;
  /** Run `fn` before every exposition (samplers refresh their values there); returns an unregister. */
  onCollect(fn: () => void): () => void;
  /** The exposition (Prometheus text format for the Prometheus implementation). */
  render(): Promise<string>;
  /** The HTTP content type of `render()`'s text. */
  readonly contentType: string;
}

const noop = { inc() {}, dec() {}, set() {}, observe() {}, remove() {} };

/** Metrics that record nothing (for jobs run without a metrics endpoint). */
export const noopMetrics: Metrics = {
  counter: () => noop,
  gauge: () => noop,
  histogram: () => noop,
  onCollect: () => () => {},
  render: async () => '',
  contentType: 'text/plain; version=0.0.4; charset=utf-8',
};
