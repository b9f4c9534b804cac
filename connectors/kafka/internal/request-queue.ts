/**
 * Stops kafkajs 2.2.4's idle timer loop. Its `RequestQueue` (`src/network/requestQueue/index.js`,
 * one per broker connection) re-arms a timer after every response and every firing of that timer,
 * whether a request waits or not, with the delay `throttledUntil - Date.now()`. Unthrottled,
 * `throttledUntil` is -1, so the delay is about -Date.now() (Node >= 23 prints
 * `TimeoutNegativeWarning: -1796521416584 is a negative number`) and Node runs it after 1 ms: every
 * connection wakes the process about a thousand times a second for nothing, as long as it is open
 * (upstream issues #1556, #1704, #1751; the fixes #1667, #1755, #1768 were never released).
 *
 * The replacement arms the timer only while requests wait in the queue (throttled, or too many in
 * flight), for the rest of the throttle or kafkajs's 10 ms re-check: what the upstream comment says it
 * is for. A queue with nothing waiting needs no timer: `push` schedules one when a request has to wait,
 * and every response re-checks the queue anyway.
 *
 * Import it for its effect (./kafkajs.ts does); patching the class works whenever kafkajs loaded.
 */
import { createRequire } from 'node:module';

/** kafkajs's CHECK_PENDING_REQUESTS_INTERVAL. */
const RECHECK_MS = 10;

interface RequestQueue {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
}

function scheduleCheckPendingRequests(this: RequestQueue): void {
  if (this.throttleCheckTimeoutId || this.pending.length === 0) return;
  const untilUnthrottled = this.throttledUntil - Date.now();
  this.throttleCheckTimeoutId = setTimeout(
    () => {
      this.throttleCheckTimeoutId = null;
      this.checkPendingRequests();
    },
    untilUnthrottled > 0 ? untilUnthrottled : RECHECK_MS,
  );
}

const require = createRequire(import.meta.url);
const queuePath = require.resolve('kafkajs/src/network/requestQueue/index.js');
const RequestQueueClass = require(queuePath) as { prototype: RequestQueue };
RequestQueueClass.prototype.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
