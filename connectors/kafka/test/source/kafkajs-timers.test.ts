/**
 * kafkajs 2.2.4 re-arms a timer of about -Date.now() ms (run after 1 ms) after every response of every
 * broker connection, idle or not: a thousand wake-ups a second per connection and, on Node >= 23, a
 * TimeoutNegativeWarning at every service start (issue 12). connectors/kafka/internal/request-queue.ts
 * arms it only while requests wait.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kafkaClient } from '../support/kafka.ts';

test('a kafkajs connection arms no negative timer and stays quiet while idle', async () => {
  const original = globalThis.setTimeout;
  const negative: number[] = [];
  let armed = 0;
  globalThis.setTimeout = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    armed++;
    if (typeof ms === 'number' && ms < 0) negative.push(ms);
    return original(fn, ms, ...args);
  }) as typeof setTimeout;
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  const admin = kafkaClient('kafkajs-timers').admin();
  try {
    await admin.connect();
    for (let i = 0; i < 5; i++) await admin.listTopics();
    // Idle: nothing waits in any request queue, so nothing may wake the process up every millisecond.
    const before = armed;
    const idleFrom = performance.now();
    await new Promise<void>((resolve) => original(resolve, 300));
    const idleMs = performance.now() - idleFrom;
    assert.deepEqual(negative, [], 'timers armed with a negative delay (the kafkajs request queue)');
    assert.ok(
      armed - before <= 5,
      `${armed - before} timers armed in ${Math.round(idleMs)} ms of an idle connection`,
    );
  } finally {
    globalThis.setTimeout = original;
    await admin.disconnect();
  }
  // Let a warning emitted on the last tick reach the listener before checking.
  await new Promise((r) => setImmediate(r));
  process.off('warning', onWarning);
  assert.deepEqual(
    warnings.filter((w) => w.startsWith('TimeoutNegativeWarning')),
    [],
  );
});
