/**
 * A stand-in producer thread for producer-thread.test.ts: answers every call as done, except that a
 * `send` makes the thread exit (code 7) without answering, as a crash would, and a `create` whose
 * config says `refuse` fails with that text, as kafkajs refusing a config would.
 */
import { parentPort } from 'node:worker_threads';

parentPort!.on(
  'message',
  ({ id, call }: { id: number; call: { op: string; config?: { refuse?: string } } }) => {
    if (call.op === 'send') process.exit(7);
    const refuse = call.op === 'create' ? call.config?.refuse : undefined;
    parentPort!.postMessage({
      id,
      ...(refuse === undefined ? {} : { error: { name: 'KafkaJSNonRetriableError', message: refuse } }),
      ...(call.op === 'transaction' ? { active: true } : {}),
    });
  },
);
