/**
 * A stand-in producer thread for producer-thread.test.ts that never answers: what a proxy's producer
 * does without its thread (the fence on the caller's thread) completes; what needs the thread waits.
 */
import { parentPort } from 'node:worker_threads';

parentPort!.on('message', () => {});
