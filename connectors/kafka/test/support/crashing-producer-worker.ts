/**
 * A stand-in producer thread for producer-thread.test.ts: answers every call as done, except that a
 * `send` makes the thread exit (code 7) without answering, as a crash would.
 */
import { parentPort } from 'node:worker_threads';

parentPort!.on('message', ({ id, call }: { id: number; call: { op: string } }) => {
  if (call.op === 'send') process.exit(7);
  parentPort!.postMessage({ id, ...(call.op === 'transaction' ? { active: true } : {}) });
});
