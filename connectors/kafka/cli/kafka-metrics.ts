import type { Metrics } from '../../../framework/index.ts';
import { type KafkaEventMap, kafkaEvents } from '../events.ts';
import type { KafkaRunningJob } from '../run-kafka-job.ts';

/**
 * The metrics only a Kafka service has: consumer lag per partition, records out per operator,
 * watermark lag, transactions committed and aborted, records that failed to decode (dead-lettered or
 * skipped), and sampled end-to-end latency.
 */
export function kafkaMetricsOf(metrics: Metrics, jobId: string) {
  const lag = metrics.gauge({
    name: 'consumer_lag',
    help: 'Records between a partition position and its last stable offset',
    labels: ['job_id', 'topic', 'partition'],
  });
  const out = metrics.counter({
    name: 'records_out_total',
    help: 'Records emitted, per task and operator',
    labels: ['job_id', 'task', 'operator'],
  });
  const wmLag = metrics.gauge({
    name: 'watermark_lag_seconds',
    help: 'Processing time minus the event-time watermark, per task and operator',
    labels: ['job_id', 'task', 'operator'],
  });
  const txns = metrics.counter({
    name: 'transactions_total',
    help: 'Kafka transactions of the tasks, by outcome',
    labels: ['job_id', 'outcome'],
  });
  const bad = metrics.counter({
    name: 'records_undecodable_total',
    help: 'Input records that failed to decode, by source and policy (dead-letter, skip)',
    labels: ['job_id', 'source', 'policy'],
  });
  const latency = metrics.histogram({
    name: 'end_to_end_latency_seconds',
    help: 'Sampled time from a record timestamp to its write by a Kafka sink',
    labels: ['job_id', 'topic'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  });
  const seen = new Map<string, number>();
  const onTxn = (e: KafkaEventMap['transaction'][0]) => {
    if (e.jobId === jobId) txns.inc({ job_id: jobId, outcome: e.outcome });
  };
  const onBad = (e: KafkaEventMap['decode-error'][0]) =>
    bad.inc({ job_id: jobId, source: e.source, policy: e.policy });
  const onLatency = (e: KafkaEventMap['latency'][0]) =>
    latency.observe({ job_id: jobId, topic: e.topic }, e.ms / 1000);
  kafkaEvents.on('transaction', onTxn);
  kafkaEvents.on('decode-error', onBad);
  kafkaEvents.on('latency', onLatency);
  return {
    sample(running: KafkaRunningJob) {
      const now = Date.now();
      for (const t of running.tasks()) {
        const task = t.scope.taskId;
        for (const o of t.recordsOut()) {
          const key = `${task}|${o.uid}`;
          const delta = o.records - (seen.get(key) ?? 0);
          if (delta > 0) out.inc({ job_id: jobId, task, operator: o.uid }, delta);
          seen.set(key, o.records);
        }
        for (const w of t.watermarks()) {
          if (Number.isFinite(w.watermark))
            wmLag.set({ job_id: jobId, task, operator: w.uid }, Math.max(0, (now - w.watermark) / 1000));
        }
      }
      running.lag().then(
        (rows) => {
          for (const r of rows) lag.set({ job_id: jobId, topic: r.topic, partition: r.partition }, r.lag);
        },
        () => {},
      );
    },
    detach() {
      kafkaEvents.off('transaction', onTxn);
      kafkaEvents.off('decode-error', onBad);
      kafkaEvents.off('latency', onLatency);
    },
  };
}
