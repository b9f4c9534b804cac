/**
 * The fraud-detection job: card transactions keyed by card, CEP patterns from a broadcast topic.
 *
 *   transactions (keyed by card) --keyBy(card)--+
 *                                               +--> dynamicCep --> alerts     (exactly-once)
 *   patterns ({id, version, pattern}) --broadcast+        |------> rejections (malformed patterns)
 *                                                         |------> updates    (accepted: one per task)
 *                                                         |------> near-misses (timed-out partial
 *                                                                   matches of 2+ transactions)
 *
 * Patterns are swapped while the job runs: a record with a higher version replaces a pattern, a
 * malformed one is rejected (each task writes one rejection) and the running patterns stay.
 * Transactions are processed in event time: the CEP operator holds each one until the watermark
 * passes it, then runs it through the patterns active at that moment.
 */
import { KafkaSink, KafkaSource } from '../../connectors/kafka/index.ts';
import {
  type CepTimeout,
  DYNAMIC_PATTERNS_STATE,
  dynamicCep,
  outputTag,
  type PatternRejection,
  type PatternUpdate,
  StreamJob,
} from '../../framework/index.ts';
import {
  type Alert,
  isTick,
  type TimedOutAlert,
  type Transaction,
  type TransactionRecord,
  toAlert,
} from './model.ts';

export interface FraudTopics {
  /** Input: transactions keyed by card, and watermark ticks on every partition. */
  readonly transactions: string;
  /** Input: pattern records `{id, version, pattern}` as JSON (a broadcast topic). */
  readonly patterns: string;
  readonly alerts: string;
  readonly rejections: string;
  readonly updates: string;
  readonly nearMisses: string;
  /** Transactions that arrived after the watermark had passed them (should stay empty). */
  readonly late: string;
}

export const fraudTopics = (prefix: string): FraudTopics => ({
  transactions: `${prefix}.transactions`,
  patterns: `${prefix}.patterns`,
  alerts: `${prefix}.alerts`,
  rejections: `${prefix}.rejections`,
  updates: `${prefix}.pattern-updates`,
  nearMisses: `${prefix}.near-misses`,
  late: `${prefix}.late`,
});

/** Transactions may arrive this much out of event-time order per partition. */
export const MAX_OUT_OF_ORDER_MS = 1_000;

export interface FraudJobOptions {
  readonly jobId: string;
  readonly topics: FraudTopics;
  /** Where rejected patterns are logged besides the rejections topic; default console.warn. */
  readonly log?: (message: string) => void;
}

const json = <T>(key: (v: T) => string | null) => ({
  encode: (v: T) => ({ key: key(v), value: JSON.stringify(v) }),
});

export function fraudJob(o: FraudJobOptions): StreamJob {
  const t = o.topics;
  const job = new StreamJob(o.jobId);
  const rejected = outputTag<PatternRejection>('rejected-patterns');
  const updates = outputTag<PatternUpdate>('pattern-updates');
  const timedOut = outputTag<CepTimeout<Transaction>>('timed-out');
  const late = outputTag<Transaction>('late');

  // Pattern records go to the CEP function as text (it parses them, and rejects what is not JSON).
  // Their event time is their Kafka timestamp (publication time); the topic is idle a second after
  // each record, so it holds the watermark back at most that long after a publication.
  const patterns = job
    .source(
      new KafkaSource<string>({ topic: t.patterns, decode: (r) => r.value?.toString('utf8') ?? 'null' }),
      { watermarks: { idleTimeoutMs: 1_000 } },
    )
    .broadcast(DYNAMIC_PATTERNS_STATE);

  const matches = job
    .source(new KafkaSource<TransactionRecord>({ topic: t.transactions }), {
      watermarks: { timestamp: (r) => r.ts, maxOutOfOrdernessMs: MAX_OUT_OF_ORDER_MS },
    })
    .filter((r) => !isTick(r))
    .map((r) => r as Transaction)
    .keyBy((tx) => tx.card)
    .connect(patterns)
    .process(
      dynamicCep<string, Transaction>({
        timedOut,
        late,
        rejected,
        updates,
        ...(o.log ? { log: o.log } : {}),
      }),
      { uid: 'fraud-cep' },
    );

  matches
    .map((m) => toAlert(m))
    .sinkTo(new KafkaSink<Alert>({ topic: t.alerts, ...json<Alert>((a) => a.card) }));
  matches.getSideOutput(rejected).sinkTo(
    new KafkaSink<PatternRejection>({
      topic: t.rejections,
      ...json<PatternRejection>((r) => r.id ?? null),
    }),
  );
  matches
    .getSideOutput(updates)
    .sinkTo(new KafkaSink<PatternUpdate>({ topic: t.updates, ...json<PatternUpdate>((u) => u.id) }));
  matches
    .getSideOutput(timedOut)
    .filter((m) => Object.values(m.events).flat().length >= 2)
    .map((m): TimedOutAlert => ({ ...toAlert(m), timedOutAt: m.timedOutAt }))
    .sinkTo(new KafkaSink<TimedOutAlert>({ topic: t.nearMisses, ...json<TimedOutAlert>((a) => a.card) }));
  matches
    .getSideOutput(late)
    .sinkTo(new KafkaSink<Transaction>({ topic: t.late, ...json<Transaction>((x) => x.card) }));
  return job;
}
