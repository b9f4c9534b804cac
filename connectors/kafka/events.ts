import { EventEmitter } from 'node:events';

/**
 * What the Kafka connectors report for metrics, process-wide: transactions (committed or aborted),
 * records that failed to decode and records in the wrong partition (by policy), and sampled end-to-end latency (record timestamp to
 * sink write). The service turns them into Prometheus metrics; nothing else depends on them.
 */
export interface KafkaEventMap {
  transaction: [{ jobId: string; taskId: string; outcome: 'committed' | 'aborted' }];
  'decode-error': [
    { source: string; topic: string; partition: number; policy: 'fail' | 'skip' | 'dead-letter' },
  ];
  /** A record a keyed operator found in the wrong partition, skipped or dead-lettered (onWrongPartition). */
  'wrong-partition': [{ source: string; topic: string; partition: number; policy: 'skip' | 'dead-letter' }];
  latency: [{ topic: string; ms: number }];
}

export const kafkaEvents = new EventEmitter<KafkaEventMap>();
