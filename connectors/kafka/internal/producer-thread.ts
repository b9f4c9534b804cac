/**
 * The Kafka sinks' producers on a thread of their own, as the Java client's `Sender` thread: the
 * task loop's thread hands a send over and goes on, while another thread encodes the Produce
 * request (record batches, varints, CRC-32C), writes it to the socket and reads the answer. Those
 * were about a third of the task thread's time in the exactly-once count job
 * (docs/benchmarks-kafka.md, "Issue 15, eighth session").
 *
 * `startProducerThread(kafka, connection)` returns a `Kafka` whose `producer()` makes a proxy: the
 * subset of kafkajs's `Producer` and `Transaction` the sink uses (`connect`, `disconnect`,
 * `sendBatch`, `transaction` -> `sendBatch`, `sendOffsets`, `commit`, `abort`, `isActive`), each call
 * a message to the thread (producer-thread-worker.ts), which runs it on a real kafkajs producer of
 * its own client (the same connection, the same kafkajs patches) and answers with the outcome.
 * Everything else of the `Kafka` is the caller's own client.
 *
 * Contract:
 * - A proxy's calls start on the thread in the order they were made and settle as the thread's
 *   producer's calls settled (the fence aside, below); a failure is the thread's error rebuilt with what the error catalogue reads (`name`, `message`,
 *   `retriable`, `type`, `code`, `cause`, `errors`), so `classifyKafkaError` decides as it would
 *   in-thread. `isActive()` is the thread's transaction's `isActive()` after its last call settled.
 *   A producer the thread could not make (kafkajs refused its config) fails every call with why; a
 *   call holding something that cannot be copied to another thread (a function) rejects at once
 *   with the `DataCloneError`.
 * - A transactional producer fences on the caller's thread: its `connect` connects a producer of the
 *   caller's client with the same transactional id, whose first `transaction` makes the
 *   InitProducerId that fences a previous owner; the thread's producer takes that producer id and
 *   epoch over (./producer-handover.ts says why it must not ask again) and the caller's one
 *   disconnects. So a task reads its committed position without waiting for the thread to load
 *   kafkajs (about 0.1 s at a process start, on two cores). The thread's `connect`, `transaction`
 *   and, when the caller aborts the fence's transaction at once (the sink does), `abort` run
 *   meanwhile: the producer's next call waits for them and fails with their failure.
 * - Sends of records without headers or an explicit partition (the sink's common case) cross as
 *   one string of their text keys and values, one buffer of their byte ones and one array of
 *   lengths and timestamps (moved, not copied); any other send is cloned (its Buffers arrive as
 *   Buffers).
 * - The thread starts with the first producer, or at once with `startNow` (runKafkaJob: its load,
 *   about 0.1 s, then overlaps the job's first round trips and the group join, so that the tasks'
 *   first sends do not wait for it; docs/benchmarks-kafka.md), and holds the process open only
 *   while a call waits for it. Should it exit (a crash), every waiting and later call of
 *   its producers rejects with `KAFKA_PRODUCER_THREAD_EXITED` (a task failure: the restart makes
 *   new producers, on a new thread). `close()` ends the thread; calls after it reject.
 * - A connection the thread cannot be given (a SASL mechanism with a function, e.g. OAUTHBEARER's
 *   token provider, cannot be copied to another thread) keeps the producers on the caller's
 *   thread: `kafka` is then the caller's client itself.
 */
import { Worker } from 'node:worker_threads';
import { StreamError } from '../../../framework/index.ts';
import type { KafkaConnection } from '../client.ts';
import type { Kafka, Producer } from './kafkajs.ts';
import { takeIdentity, watchIdentity } from './producer-handover.ts';
import {
  type Answer,
  type Call,
  packSend,
  reviveError,
  type TopicMessages,
  transferList,
} from './producer-thread-protocol.ts';

export interface ProducerThread {
  /** The client to bind the sinks to. */
  readonly kafka: Kafka;
  /** Whether producers run on their own thread (false: the connection cannot be copied to one). */
  readonly threaded: boolean;
  /** End the thread (after the sinks disconnected). Idempotent. */
  close(): Promise<void>;
}

/** The worker's module: the compiled one in an installed package, else the source. */
const WORKER = new URL(
  import.meta.url.endsWith('.js') ? './producer-thread-worker.js' : './producer-thread-worker.ts',
  import.meta.url,
);

/**
 * The thread's young generation, in MB. With V8's default, a send waiting for its acknowledgement
 * outlived two young collections and was promoted: 14-16 full collections per million records
 * sent, whose marking runs on V8's helper threads. With 64: 3, for 62 young collections instead of
 * 46, and 5-10% less CPU for the process (docs/benchmarks-kafka.md, "Issue 15, ninth session").
 */
const YOUNG_GENERATION_MB = 64;

/** The fields of `config` (an object) named in `keys` that it has. */
function pick(config: unknown, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof config !== 'object' || config === null) return out;
  for (const k of keys) if (k in config) out[k] = (config as Record<string, unknown>)[k];
  return out;
}

export function startProducerThread(
  kafka: Kafka,
  connection: KafkaConnection,
  clientIdSuffix = '',
  /** The thread's module (tests give a stand-in). */
  workerModule: URL = WORKER,
  /** Start the thread now, not with the first producer. */
  startNow = false,
): ProducerThread {
  try {
    structuredClone(connection);
  } catch {
    return { kafka, threaded: false, close: async () => {} };
  }
  /** One thread: its calls waiting for an answer, and why it ended once it did. */
  interface Thread {
    /** Undefined for the stand-in of a closed `ProducerThread`, whose calls reject. */
    readonly worker: Worker | undefined;
    readonly waiting: Map<number, { resolve: (a: Answer) => void; reject: (e: unknown) => void }>;
    ended: StreamError | undefined;
  }
  /** The thread new producers go to (undefined until the first producer, and after a crash). */
  let current: Thread | undefined;
  let closed = false;
  let nextId = 1;
  let nextHandle = 1;

  const gone = (why: string) =>
    new StreamError(
      'KAFKA_PRODUCER_THREAD_EXITED',
      `the Kafka sinks' producer thread ${why}: its producers' sends and transactions are lost (the task restarts from its last checkpoint)`,
    );
  const end = (t: Thread, why: StreamError): void => {
    if (t.ended !== undefined) return;
    t.ended = why;
    if (current === t) current = undefined;
    for (const c of t.waiting.values()) c.reject(why);
    t.waiting.clear();
  };
  const start = (): Thread => {
    const worker = new Worker(workerModule, {
      workerData: { connection, clientIdSuffix },
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    });
    const t: Thread = { worker, waiting: new Map(), ended: undefined };
    worker.unref();
    worker.on('message', (a: Answer) => {
      const c = t.waiting.get(a.id);
      if (c === undefined) return;
      t.waiting.delete(a.id);
      if (t.waiting.size === 0) worker.unref();
      c.resolve(a);
    });
    worker.on('error', (e) => end(t, gone(`failed: ${e instanceof Error ? e.message : String(e)}`)));
    worker.on('exit', (code) => end(t, gone(`exited (code ${code})`)));
    current = t;
    return t;
  };
  const call = (t: Thread, c: Call, transfer?: ArrayBuffer[]): Promise<Answer> => {
    if (t.ended !== undefined) return Promise.reject(t.ended);
    return new Promise((resolve, reject) => {
      const id = nextId++;
      try {
        t.worker!.postMessage({ id, call: c }, transfer);
      } catch (e) {
        // Something in the call cannot be copied to another thread (a function in a config).
        reject(e);
        return;
      }
      t.waiting.set(id, { resolve, reject });
      if (t.waiting.size === 1) t.worker!.ref();
    });
  };
  const settle = (a: Answer): void => {
    if (a.error !== undefined) throw reviveError(a.error);
  };

  const producer = (config: unknown) => {
    const t = closed
      ? { worker: undefined, waiting: new Map(), ended: gone('was closed') }
      : (current ?? start());
    const h = nextHandle++;
    let active = false;
    // Made on the thread at once; should that fail, every call of this producer fails with why.
    const created = call(t, { op: 'create', h, config }).then(settle);
    created.catch(() => {});
    /** The thread's calls the caller did not wait for (the fence's): later calls wait for them. */
    let behind: Promise<void> = created;
    /** `tracked`: the answer says whether the transaction is active (the caller's calls only). */
    const post = async (c: Call, transfer?: ArrayBuffer[], tracked = true): Promise<void> => {
      const a = await call(t, c, transfer);
      if (tracked && a.active !== undefined) active = a.active;
      settle(a);
    };
    const run = async (c: Call, transfer?: ArrayBuffer[]): Promise<void> => {
      await behind;
      return post(c, transfer);
    };
    /** Run `c` on the thread after what is behind, without the caller waiting for it. */
    const later = (c: Call): void => {
      behind = behind.then(() => post(c, undefined, false));
      behind.catch(() => {});
    };
    const send = (txn: boolean, topicMessages: TopicMessages): Promise<void> => {
      const packed = packSend(topicMessages);
      return packed === undefined
        ? run({ op: 'send', h, txn, topicMessages })
        : run({ op: 'send', h, txn, packed }, transferList(packed));
    };
    const transaction = {
      sendBatch: ({ topicMessages }: { topicMessages: TopicMessages }) => send(true, topicMessages),
      sendOffsets: (offsets: unknown) => run({ op: 'offsets', h, offsets }),
      commit: () => run({ op: 'commit', h }),
      abort: () => run({ op: 'abort', h }),
      isActive: () => active,
    };

    // A transactional producer fences on the caller's thread (docs above): a producer of the
    // caller's client connects, and its first transaction's InitProducerId is the fence; the
    // thread's producer takes that identity over. Until then, `fencer` is that producer.
    const tid = (config as { transactionalId?: unknown } | null)?.transactionalId;
    let fencer: Producer | undefined;
    let fenced = false;
    const endFencer = (): void => {
      const f = fencer;
      fencer = undefined;
      f?.disconnect().catch(() => {});
    };
    const fence = async (id: string, f: Producer) => {
      watchIdentity(id);
      try {
        const txn = await f.transaction();
        // Its transaction holds nothing: ended here, it sends nothing.
        await txn.abort();
      } catch (e) {
        takeIdentity(id);
        throw e;
      }
      const identity = takeIdentity(id);
      if (identity === undefined) throw new Error(`fencing ${id}: kafkajs asked for no producer id`);
      fenced = true;
      endFencer();
      later({ op: 'transaction', h, identity: { transactionalId: id, ...identity } });
      active = true;
      // The thread's transaction: the caller's calls go to it (after the handover above), but an
      // abort before any other call (the fence's usual end) waits for nothing: the thread aborts
      // it in turn.
      let used = false;
      const use =
        <A extends unknown[]>(f: (...a: A) => Promise<void>) =>
        (...a: A) => {
          used = true;
          return f(...a);
        };
      return {
        sendBatch: use(transaction.sendBatch),
        sendOffsets: use(transaction.sendOffsets),
        commit: use(transaction.commit),
        isActive: transaction.isActive,
        abort: async () => {
          if (used || !active) return transaction.abort();
          used = true;
          active = false;
          later({ op: 'abort', h });
        },
      };
    };
    return {
      connect: async () => {
        if (typeof tid !== 'string' || fenced || fencer !== undefined) return run({ op: 'connect', h });
        later({ op: 'connect', h });
        const f = kafka.producer({
          transactionalId: tid,
          ...pick(config, ['transactionTimeout', 'retry']),
          maxInFlightRequests: 1,
        });
        fencer = f;
        try {
          await f.connect();
        } catch (e) {
          endFencer();
          throw e;
        }
      },
      disconnect: async () => {
        endFencer();
        await created;
        await behind.catch(() => {});
        return post({ op: 'disconnect', h });
      },
      sendBatch: ({ topicMessages }: { topicMessages: TopicMessages }) => send(false, topicMessages),
      transaction: async () => {
        if (typeof tid === 'string' && fencer !== undefined && !fenced) return fence(tid, fencer);
        await run({ op: 'transaction', h });
        return transaction;
      },
    };
  };

  if (startNow) start();
  const proxy = new Proxy(kafka, {
    get(target, p, receiver) {
      if (p === 'producer') return producer;
      return Reflect.get(target, p, receiver);
    },
  });
  return {
    kafka: proxy,
    threaded: true,
    async close() {
      if (closed) return;
      closed = true;
      const t = current;
      if (t === undefined) return;
      end(t, gone('was closed'));
      await t.worker!.terminate();
    },
  };
}
