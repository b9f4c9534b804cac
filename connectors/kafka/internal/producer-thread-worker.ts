/**
 * The producer thread (producer-thread.ts): real kafkajs producers of a client of its own (the
 * connection in `workerData`, loaded through kafkajs.ts, so with the project's kafkajs patches),
 * driven by the calls the proxies post. Each call is answered once, with its error if it failed,
 * and with the producer's transaction's `isActive()` once it settled.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createKafka, type KafkaConnection } from '../client.ts';
import type { Producer, ProducerConfig, Transaction } from './kafkajs.ts';
import { dropIdentity, handIdentity, type ProducerIdentity } from './producer-handover.ts';
import { type Answer, type Call, plainError, unpackCloned, unpackSend } from './producer-thread-protocol.ts';

const port = parentPort!;
const data = workerData as { connection: KafkaConnection; clientIdSuffix: string };
const kafka = createKafka(data.connection, data.clientIdSuffix);
const producers = new Map<number, Producer>();
const transactions = new Map<number, Transaction>();
/** Producers handed an identity (dropped at their disconnect if never taken). */
const handedTo = new Map<number, ProducerIdentity & { readonly transactionalId: string }>();

function producerOf(h: number): Producer {
  const p = producers.get(h);
  if (p === undefined) throw new Error(`the producer thread has no producer ${h} (it was not created)`);
  return p;
}

function transactionOf(h: number): Transaction {
  const t = transactions.get(h);
  if (t === undefined) throw new Error(`the producer thread's producer ${h} has no transaction`);
  return t;
}

async function run(c: Call): Promise<void> {
  switch (c.op) {
    case 'create':
      producers.set(c.h, kafka.producer(c.config as ProducerConfig));
      return;
    case 'connect':
      return producerOf(c.h).connect();
    case 'disconnect': {
      const handed = handedTo.get(c.h);
      if (handed !== undefined) dropIdentity(handed.transactionalId, handed);
      handedTo.delete(c.h);
      await producerOf(c.h).disconnect();
      producers.delete(c.h);
      transactions.delete(c.h);
      return;
    }
    case 'transaction':
      if (c.identity !== undefined) {
        handIdentity(c.identity.transactionalId, c.identity);
        handedTo.set(c.h, c.identity);
      }
      transactions.set(c.h, await producerOf(c.h).transaction());
      return;
    case 'send': {
      const topicMessages = 'packed' in c ? unpackSend(c.packed) : unpackCloned(c.topicMessages);
      await (c.txn ? transactionOf(c.h) : producerOf(c.h)).sendBatch({ topicMessages });
      return;
    }
    case 'offsets':
      return transactionOf(c.h).sendOffsets(c.offsets as Parameters<Transaction['sendOffsets']>[0]);
    case 'commit':
      return transactionOf(c.h).commit();
    case 'abort':
      return transactionOf(c.h).abort();
  }
}

port.on('message', ({ id, call }: { id: number; call: Call }) => {
  const answer = (error?: unknown): void => {
    const t = transactions.get(call.h);
    const a: Answer = {
      id,
      ...(error === undefined ? {} : { error: plainError(error) }),
      ...(t === undefined ? {} : { active: t.isActive() }),
    };
    port.postMessage(a);
  };
  run(call).then(
    () => answer(),
    (e: unknown) => answer(e ?? new Error('failed')),
  );
});
