import { type Sink, type SinkInfo, type SinkWriter, StreamError } from '../../../framework/index.ts';
import { kafkaEvents } from '../events.ts';
import type { IHeaders, Kafka, Message } from '../internal/kafkajs.ts';
import { TaskTransactions } from './internal/task-transactions.ts';

/** One output record. `key` decides the partition (murmur2, as Kafka's default partitioner). */
export interface KafkaRecordOut {
  readonly key?: string | Buffer | null;
  readonly value: string | Buffer | null;
  readonly headers?: IHeaders;
  readonly partition?: number;
  /** Milliseconds since the epoch, an integer. Default: the timestamp of the record written. */
  readonly timestamp?: number;
}

export interface KafkaSinkOptions<T> {
  readonly topic: string;
  /** Default `kafka-sink-<topic>`. */
  readonly uid?: string;
  /** Element -> record. Default: no key, the element as UTF-8 JSON. */
  readonly encode?: (value: T) => KafkaRecordOut;
  /** Default `exactly-once`. */
  readonly guarantee?: 'exactly-once' | 'at-least-once';
  /** Kafka transaction timeout; must exceed checkpoint interval + checkpoint timeout. Default 120000. */
  readonly transactionTimeoutMs?: number;
  /**
   * Most records in one send call. A task has one send in flight at a time (that keeps each
   * partition in emission order); what is written meanwhile goes out together in the next one, up to
   * this many records and 512 KiB. Default 2000.
   */
  readonly batchRecords?: number;
  /** Records written but not yet acknowledged (buffered or in flight) before the task is held back. Default 20000. */
  readonly maxBufferedRecords?: number;
}

/**
 * A Kafka topic as a sink, exactly-once by default: the task's records up to barrier n, its consumer
 * offsets and the pointer to its snapshot commit in one transaction, which *is* checkpoint n. All
 * Kafka sinks of one task share that transaction. Per task and output partition, records appear in
 * the order the task wrote them, within a checkpoint interval and across intervals (see
 * internal/task-transactions.ts). Runs inside `runKafkaJob`.
 */
export class KafkaSink<T> implements Sink<T> {
  readonly uid: string;
  readonly topic: string;
  readonly options: KafkaSinkOptions<T>;
  #kafka: Kafka | undefined;

  constructor(o: KafkaSinkOptions<T>) {
    this.options = o;
    this.topic = o.topic;
    this.uid = o.uid ?? `kafka-sink-${o.topic}`;
  }

  get guarantee(): 'exactly-once' | 'at-least-once' {
    return this.options.guarantee ?? 'exactly-once';
  }

  get transactionTimeoutMs(): number {
    return this.options.transactionTimeoutMs ?? 120_000;
  }

  /** @internal called by runKafkaJob. */
  bind(kafka: Kafka): void {
    this.#kafka = kafka;
  }

  createWriter(info: SinkInfo): SinkWriter<T> {
    const kafka = this.#kafka;
    if (!kafka)
      throw new StreamError(
        'CONFIG_INVALID',
        `Kafka sink '${this.uid}' is not bound to a cluster: run the job with runKafkaJob(...)`,
      );
    const tx = shared(
      info.attempt,
      () =>
        new TaskTransactions({
          kafka,
          jobId: info.jobId,
          taskId: info.taskId,
          partition: info.partition,
          mode: this.guarantee,
          transactionTimeoutMs: this.transactionTimeoutMs,
          batchRecords: this.options.batchRecords ?? 2000,
          maxBufferedRecords: this.options.maxBufferedRecords ?? 20_000,
        }),
    );
    const encode: (v: T) => KafkaRecordOut =
      this.options.encode ?? ((v: T) => ({ value: JSON.stringify(v) }));
    const topic = this.topic;
    const uid = this.uid;
    let written = 0;
    // Records written together mostly share their millisecond: format each distinct timestamp once.
    let lastTs: number | undefined;
    let lastTsText = '';
    return {
      committer: tx,
      write(value, timestamp) {
        const r = encode(value);
        // Sampled end-to-end latency: from the record's timestamp to its write here.
        if (timestamp !== undefined && ++written % 64 === 0)
          kafkaEvents.emit('latency', { topic, ms: Date.now() - timestamp });
        const ts = r.timestamp ?? timestamp;
        let tsText: string | undefined;
        if (ts !== undefined) {
          if (ts !== lastTs) {
            // A record error (not a StreamError): the operator's policy skips, dead-letters or fails.
            // Negative ones pass as before (-1 is Kafka's "no timestamp", which old-format inputs carry).
            if (!Number.isSafeInteger(ts))
              throw new Error(
                `Kafka sink '${uid}': a record's timestamp must be integer milliseconds since the epoch; got ${ts}`,
              );
            lastTs = ts;
            lastTsText = String(ts);
          }
          tsText = lastTsText;
        }
        // One object per record, made whole (a field added afterwards costs V8 a second allocation).
        const m: Message =
          !r.headers && r.partition === undefined
            ? { key: r.key ?? null, value: r.value, timestamp: tsText }
            : {
                key: r.key ?? null,
                value: r.value,
                timestamp: tsText,
                headers: r.headers || undefined,
                partition: r.partition,
              };
        tx.send(topic, m);
      },
      prepareCommit(checkpointId) {
        tx.prepare(checkpointId);
        return undefined;
      },
      async commit() {},
      flush: (checkpointId) => tx.flush(checkpointId),
      ready: () => tx.ready(),
      async abort() {
        await release(info.attempt);
      },
      async close() {
        await release(info.attempt);
      },
    };
  }
}

/** One TaskTransactions per task attempt, shared by the task's Kafka sink writers. */
const registry = new Map<string, TaskTransactions>();

function shared(key: string, make: () => TaskTransactions): TaskTransactions {
  let t = registry.get(key);
  if (!t) {
    t = make();
    registry.set(key, t);
  }
  t.refs++;
  return t;
}

async function release(key: string): Promise<void> {
  const t = registry.get(key);
  if (!t) return;
  if (--t.refs > 0) return;
  registry.delete(key);
  await t.close();
}
