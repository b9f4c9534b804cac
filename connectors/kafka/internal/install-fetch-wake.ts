/**
 * kafkajs 2.2.4's consumer, when every partition it would fetch from a broker is paused, sleeps for
 * its `maxWaitTimeInMs` (`src/utils/sleep.js`, used there only) and then looks again: a partition
 * resumed meanwhile is fetched only after the rest of that sleep. The hub pauses a partition while
 * its task's input channel is full and resumes it once the task has taken half; when processing is
 * the bottleneck every partition is paused at times, and a task could then run dry for up to
 * `maxWaitTimeInMs` (100 ms) after a resume. At a start, fetching began up to 100 ms after the tasks
 * were ready (measured: scripts/bench/kafka-peers.ts with request timings).
 *
 * Here the sleep ends early when a consumer resumes partitions. The sleeps are not told apart per
 * consumer: another consumer's fetch loop woken early looks once more and sleeps again.
 *
 * Two steps, as kafkajs loads: importing this module replaces the sleep (before kafkajs's consumer
 * takes it with `require`: ./kafkajs.ts imports it before kafkajs, and requiring the sleep module
 * loads nothing else of kafkajs, whose other replacements also need to come first); once kafkajs is
 * loaded, ./kafkajs.ts calls `wakeOnResume()`. `fetchWakeInstalled()` says whether both took.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const sleepPath = require.resolve('kafkajs/src/utils/sleep.js');
const consumerGroupPath = require.resolve('kafkajs/src/consumer/consumerGroup.js');

/** The idle sleeps under way: each one's early end. */
const sleeping = new Set<() => void>();

/** kafkajs's `sleep(ms)`, ended early by `wakeIdleFetches()`. */
function idleSleep(ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      sleeping.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    sleeping.add(done);
  });
}

/** Ends every idle fetch sleep under way (their fetch loops look at their partitions again). */
export function wakeIdleFetches(): void {
  for (const done of [...sleeping]) done();
}

/** Idle fetch sleeps under way (for tests). */
export function idleFetchSleeps(): number {
  return sleeping.size;
}

const cache = require.cache as Record<string, { exports: unknown } | undefined>;
let sleepReplaced = false;
if (cache[consumerGroupPath] === undefined) {
  require(sleepPath);
  const entry = cache[sleepPath];
  if (entry !== undefined) {
    entry.exports = idleSleep;
    sleepReplaced = true;
  }
}

let resumeWakes = false;
/** Has kafkajs's `ConsumerGroup.resume` end the idle sleeps (once kafkajs is loaded; again: nothing). */
export function wakeOnResume(): void {
  if (resumeWakes) return;
  const ConsumerGroup = require(consumerGroupPath) as {
    prototype: { resume(topicPartitions: unknown): void };
  };
  const resume = ConsumerGroup.prototype.resume;
  ConsumerGroup.prototype.resume = function (this: unknown, topicPartitions: unknown): void {
    resume.call(this, topicPartitions);
    wakeIdleFetches();
  };
  resumeWakes = true;
}

/** Whether kafkajs's consumer sleeps through `idleSleep` and its `resume` ends that sleep. */
export function fetchWakeInstalled(): boolean {
  return sleepReplaced && resumeWakes;
}
