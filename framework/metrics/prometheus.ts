/**
 * The Prometheus implementation of `Metrics`, over prom-client (the one module of the project that
 * imports it). Each call makes its own registry unless given one, so two jobs or two tests in one
 * process never collide on metric names.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import { StreamError } from '../api/errors.ts';
import type { CounterMetric, GaugeMetric, HistogramMetric, Labels, MetricSpec, Metrics } from './metrics.ts';

export interface PrometheusMetricsOptions {
  /** The prom-client registry to register in; default a new one. */
  readonly registry?: Registry;
  /** Prefix of the framework's metric names; default `kstate_`. */
  readonly prefix?: string;
  /**
   * Register prom-client's default process and Node.js metrics (`process_cpu_seconds_total`,
   * `nodejs_eventloop_lag_seconds`, ...) under their standard, unprefixed names; default true.
   */
  readonly defaultMetrics?: boolean;
}

export interface PrometheusMetrics extends Metrics {
  /** The prom-client registry, for callers that add their own metrics or merge registries. */
  readonly registry: Registry;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

export function createPrometheusMetrics(options: PrometheusMetricsOptions = {}): PrometheusMetrics {
  const registry = options.registry ?? new Registry();
  const prefix = options.prefix ?? 'kstate_';
  if (prefix !== '' && !NAME.test(prefix)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `metrics prefix '${prefix}' is not a valid Prometheus name prefix (letters, digits, '_' and ':', not starting with a digit)`,
    );
  }
  if (options.defaultMetrics ?? true) {
    // Registering twice in one registry would throw on duplicate names.
    if (registry.getSingleMetric('process_cpu_user_seconds_total') === undefined)
      collectDefaultMetrics({ register: registry });
  }
  const hooks = new Set<() => void>();

  const existing = <T>(
    spec: MetricSpec,
    kind: string,
    ctor: abstract new (...a: never[]) => T,
  ): T | undefined => {
    const m: Metric | undefined = registry.getSingleMetric(prefix + spec.name);
    if (m === undefined) return undefined;
    if (!(m instanceof ctor)) {
      throw new StreamError(
        'CONFIG_INVALID',
        `metric ${prefix + spec.name} is already registered, but not as a ${kind}`,
      );
    }
    return m;
  };
  const labelNames = (spec: MetricSpec) => [...spec.labels];

  return {
    registry,
    contentType: registry.contentType,
    counter(spec): CounterMetric {
      const c =
        existing(spec, 'counter', Counter) ??
        new Counter({
          name: prefix + spec.name,
          help: spec.help,
          labelNames: labelNames(spec),
          registers: [registry],
        });
      return {
        inc: (labels: Labels, by = 1) => c.inc(labels, by),
        remove: (labels: Labels) => c.remove(labels),
      };
    },
    gauge(spec): GaugeMetric {
      const g =
        existing(spec, 'gauge', Gauge) ??
        new Gauge({
          name: prefix + spec.name,
          help: spec.help,
          labelNames: labelNames(spec),
          registers: [registry],
        });
      return {
        set: (labels: Labels, v: number) => g.set(labels, v),
        inc: (labels: Labels, by = 1) => g.inc(labels, by),
        dec: (labels: Labels, by = 1) => g.dec(labels, by),
        remove: (labels: Labels) => g.remove(labels),
      };
    },
    histogram(spec): HistogramMetric {
      const h =
        existing(spec, 'histogram', Histogram) ??
        new Histogram({
          name: prefix + spec.name,
          help: spec.help,
          labelNames: labelNames(spec),
          registers: [registry],
          ...(spec.buckets ? { buckets: [...spec.buckets] } : {}),
        });
      return {
        observe: (labels: Labels, v: number) => h.observe(labels, v),
        remove: (labels: Labels) => h.remove(labels),
      };
    },
    onCollect(fn) {
      hooks.add(fn);
      return () => {
        hooks.delete(fn);
      };
    },
    async render() {
      for (const fn of hooks) fn();
      return registry.metrics();
    },
  };
}
