/**
 * The broker-loss rule of /readyz (./broker-watch.ts) on an injected clock and probe: ready while a
 * probe was answered within lostAfterMs, lost after, back at the first answer; one change reported
 * each way. (The real broker, paused: test/cli/readyz-broker.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerWatch, brokerVerdict } from './broker-watch.ts';

test('brokerVerdict: lost only past lostAfterMs since the last answer', () => {
  assert.equal(brokerVerdict({ lastContact: 1000, now: 16_000, lostAfterMs: 15_000 }).ready, true);
  const lost = brokerVerdict({
    lastContact: 1000,
    now: 16_001,
    lostAfterMs: 15_000,
    lastError: 'ECONNREFUSED',
  });
  assert.equal(lost.ready, false);
  assert.match(
    lost.reason,
    /lost the Kafka brokers: none has answered for 15 s \(more than 15000 ms\); last error: ECONNREFUSED/,
  );
});

test('BrokerWatch: lost after the silence, back at the first answer, each change told once', async () => {
  let now = 0;
  let answering = true;
  const changes: boolean[] = [];
  const w = new BrokerWatch({
    connection: { brokers: ['unused:1'] },
    lostAfterMs: 3000,
    probeEveryMs: 3_600_000, // probes run only when the test asks
    now: () => now,
    probe: async () => {
      if (!answering) throw new Error('Request Metadata(key: 3, version: 6) timed out');
    },
    onChange: (v) => changes.push(v.ready),
  });
  try {
    now = 2000;
    await w.probeNow();
    assert.equal(w.verdict().ready, true);
    answering = false;
    now = 4000;
    await w.probeNow();
    assert.equal(w.verdict().ready, true, 'lost before lostAfterMs had passed');
    now = 5001;
    await w.probeNow();
    const v = w.verdict();
    assert.equal(v.ready, false);
    assert.match(v.reason, /none has answered for 3 s .*timed out/);
    now = 9000;
    await w.probeNow();
    assert.equal(w.verdict().ready, false);
    answering = true;
    now = 9500;
    await w.probeNow();
    assert.equal(w.verdict().ready, true);
    assert.deepEqual(changes, [false, true]);
  } finally {
    await w.stop();
  }
});

test('BrokerWatch: no second probe while one is in flight', async () => {
  let calls = 0;
  let release: () => void = () => {};
  const w = new BrokerWatch({
    connection: { brokers: ['unused:1'] },
    lostAfterMs: 3000,
    probeEveryMs: 3_600_000,
    probe: () => {
      calls++;
      return new Promise<void>((r) => {
        release = r;
      });
    },
  });
  const first = w.probeNow();
  await w.probeNow();
  assert.equal(calls, 1);
  release();
  await first;
  await w.stop();
});
