/**
 * The Kafka sink's transactions without a broker, through a fake producer that completes calls out of
 * order, holds them, and fails them (./fake-kafka.ts). What a reader of the output sees is checked
 * per partition and key, in offset order.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError, StreamError } from '../../../../framework/index.ts';
import type { RetryClock } from './coordinator-retry.ts';
import { type FakeCall, FakeKafka, FakeProtocolError, type FakeRecord } from './fake-kafka.ts';
import {
  nextSlotState,
  SLOT_TRANSITIONS,
  type SlotEvent,
  SlotMachine,
  type SlotState,
} from './slot-state.ts';
import { TaskTransactions, type TaskTransactionsOptions } from './task-transactions.ts';

const TOPIC = 'out';
const KEYS = 12;
const tick = () => new Promise<void>((r) => setImmediate(r));

/** A clock for the coordinator retries that never sleeps: `sleep` moves time on. */
function manualClock(): RetryClock & { sleeps: number[]; t: number } {
  const c = {
    t: 0,
    sleeps: [] as number[],
    now: () => c.t,
    sleep: async (ms: number) => {
      c.sleeps.push(ms);
      c.t += ms;
    },
    random: () => 0.5,
  };
  return c;
}

function open(fake: FakeKafka, o: Partial<TaskTransactionsOptions> = {}): TaskTransactions {
  return new TaskTransactions({
    kafka: fake.asKafka(),
    jobId: 'job',
    taskId: 'stage-p0',
    partition: 0,
    mode: 'exactly-once',
    transactionTimeoutMs: 60_000,
    batchRecords: 100,
    maxBufferedRecords: 100_000,
    retryClock: manualClock(),
    ...o,
  });
}

function request(n: number) {
  return {
    checkpointId: n,
    positions: [{ source: 'in', partition: 0, position: { topic: 'in', offset: String(n * 1000) } }],
    pointer: { checkpointId: n, path: `chk-${n}/metadata`, bytes: 10, sha256: 'ab' },
  };
}

/** Emits records as a keyed count would: per key, counts 1, 2, 3 ... in emission order. */
class Emitter {
  readonly #counts = new Map<string, number>();
  emitted = 0;
  write(tx: TaskTransactions, records: number): void {
    for (let r = 0; r < records; r++) {
      const key = `k${this.emitted++ % KEYS}`;
      const count = (this.#counts.get(key) ?? 0) + 1;
      this.#counts.set(key, count);
      tx.send(TOPIC, { key, value: JSON.stringify({ key, count }) });
    }
  }
  count(key: string): number {
    return this.#counts.get(key) ?? 0;
  }
}

/** Per key, the counts in offset order must be 1..n: the order of emission, nothing missing. */
function assertEmissionOrder(fake: FakeKafka, view: 'log' | 'committed', emitter: Emitter): void {
  const seen = new Map<string, number[]>();
  for (let p = 0; p < fake.partitions; p++) {
    const records: FakeRecord[] = view === 'log' ? fake.log(TOPIC, p) : fake.committed(TOPIC, p);
    for (const r of records) {
      const { key, count } = JSON.parse(r.value) as { key: string; count: number };
      const list = seen.get(key) ?? [];
      list.push(count);
      seen.set(key, list);
    }
  }
  for (let k = 0; k < KEYS; k++) {
    const key = `k${k}`;
    const expected = Array.from({ length: emitter.count(key) }, (_, i) => i + 1);
    assert.deepEqual(seen.get(key) ?? [], expected, `key ${key}, ${view}: counts in offset order`);
  }
}

/** Write `records` in bursts, letting sends go out (and complete) between bursts. */
async function writeInBursts(tx: TaskTransactions, e: Emitter, records: number, burst = 250): Promise<void> {
  for (let n = 0; n < records; n += burst) {
    e.write(tx, Math.min(burst, records - n));
    await tick();
  }
}

/**
 * manual completion: release pending calls (oldest first, skipping those `hold` keeps) until `done`.
 * Fails, instead of hanging, when nothing can be released and `done` is not reached.
 */
async function drive(fake: FakeKafka, done: () => boolean, hold: (c: FakeCall) => boolean = () => false) {
  for (let idle = 0; !done(); ) {
    await tick();
    if (done()) break;
    const i = fake.pending.findIndex((c) => !hold(c));
    if (i >= 0) {
      fake.release(i);
      idle = 0;
    } else if (++idle > 50) {
      assert.fail(`stuck: nothing to release, pending ${JSON.stringify(fake.pending)}`);
    }
  }
}

const sendsOf = (fake: FakeKafka) => fake.completed.filter((c) => c.op === 'send');

describe('per-partition order', () => {
  test('within an interval: concurrent sends would land out of order; one in flight keeps emission order', async () => {
    const fake = new FakeKafka(); // pending calls complete in reverse order
    const tx = open(fake);
    const e = new Emitter();
    await writeInBursts(tx, e, 3000);
    tx.prepare(1);
    await tx.flush(1);
    await tx.commitCheckpoint(request(1));
    assertEmissionOrder(fake, 'log', e);
    assertEmissionOrder(fake, 'committed', e);
    assert.equal(fake.maxSendsInFlight, 1, 'at most one send of the task in flight');
    await tx.close();
  });

  test('across intervals: the next interval is sent only after the previous one is acknowledged, not committed', async () => {
    const fake = new FakeKafka();
    fake.completion = 'manual';
    const tx = open(fake);
    const e = new Emitter();
    const firstTxn = () => sendsOf(fake)[0]?.txn;
    e.write(tx, 700);
    await drive(fake, () => sendsOf(fake).length >= 2);
    tx.prepare(1);
    // Interval 2 starts while interval 1 still has records on their way.
    e.write(tx, 700);
    const flushed = tx.flush(1);
    let committed = false;
    const commit1 = tx.commitCheckpoint(request(1)).then(() => {
      committed = true;
    });
    // Hold interval 1's commit: interval 2's records must still go out, once interval 1's are acked.
    const isCommit = (c: FakeCall) => c.op === 'commit' && c.txn === firstTxn();
    await drive(fake, () => sendsOf(fake).filter((c) => c.txn !== firstTxn()).length >= 3, isCommit);
    await flushed;
    assert.equal(committed, false, 'interval 2 was sent while interval 1 was not committed');
    const sends = sendsOf(fake);
    const lastOfFirst = sends.findLastIndex((c) => c.txn === firstTxn());
    const firstOfSecond = sends.findIndex((c) => c.txn !== firstTxn());
    assert.ok(
      lastOfFirst < firstOfSecond,
      'every send of interval 1 was acknowledged before interval 2 was sent',
    );
    assert.notEqual(sends[firstOfSecond]!.producer, sends[0]!.producer, 'interval 2 uses the other slot');
    await drive(fake, () => committed);
    await commit1;
    tx.prepare(2);
    const commit2 = tx.commitCheckpoint(request(2));
    let done2 = false;
    void commit2.then(() => {
      done2 = true;
    });
    await drive(fake, () => done2);
    assertEmissionOrder(fake, 'log', e);
    assertEmissionOrder(fake, 'committed', e);
    assert.equal(fake.maxSendsInFlight, 1);
    await tx.close();
  });

  test('many intervals under reordering: every partition keeps emission order, in the log and read_committed', async () => {
    const fake = new FakeKafka();
    const tx = open(fake, { batchRecords: 37 });
    const e = new Emitter();
    let commit: Promise<void> = Promise.resolve();
    for (let n = 1; n <= 8; n++) {
      await writeInBursts(tx, e, 400 + n * 13, 90);
      await commit; // the runtime triggers n only after n-1 completed
      tx.prepare(n);
      commit = tx.flush(n).then(() => tx.commitCheckpoint(request(n)));
    }
    await commit;
    assertEmissionOrder(fake, 'log', e);
    assertEmissionOrder(fake, 'committed', e);
    assert.equal(fake.maxSendsInFlight, 1);
    await tx.close();
  });

  test('a third interval waits for its slot until the first one commits (a savepoint barrier in between)', async () => {
    const fake = new FakeKafka();
    const tx = open(fake);
    const e = new Emitter();
    await writeInBursts(tx, e, 300, 100);
    tx.prepare(1); // interval 0, slot 0: not committed yet
    await writeInBursts(tx, e, 300, 100);
    tx.prepare(2); // interval 1, slot 1
    await writeInBursts(tx, e, 300, 100); // interval 2 needs slot 0, still held by interval 0
    await tx.flush(2);
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(new Set(sendsOf(fake).map((c) => c.txn)).size, 2, 'interval 2 waits for slot 0');
    await tx.commitCheckpoint(request(1));
    await tx.commitCheckpoint(request(2));
    tx.prepare(3);
    await tx.commitCheckpoint(request(3));
    assertEmissionOrder(fake, 'committed', e);
    assert.equal(fake.maxSendsInFlight, 1);
    await tx.close();
  });

  test('close does not hang on records waiting for a slot that no commit will free', async () => {
    const fake = new FakeKafka();
    const tx = open(fake);
    const e = new Emitter();
    await writeInBursts(tx, e, 300, 100);
    tx.prepare(1);
    await writeInBursts(tx, e, 300, 100);
    tx.prepare(2);
    await writeInBursts(tx, e, 300, 100);
    await tx.close();
    assert.equal([...fake.outcomes.values()].filter((o) => o === 'committed').length, 0);
    assert.equal([...fake.outcomes.values()].filter((o) => o === 'open').length, 0, 'nothing left open');
  });

  test('a send carries what accumulated while the previous one was in flight (not one record at a time)', async () => {
    const fake = new FakeKafka();
    fake.completion = 'manual';
    const tx = open(fake, { batchRecords: 500 });
    const e = new Emitter();
    await drive(fake, () => fake.completed.filter((c) => c.op === 'connect').length === 2);
    e.write(tx, 1);
    await drive(fake, () => fake.pending.some((c) => c.op === 'send'));
    e.write(tx, 300); // while the first send is in flight
    await drive(fake, () => sendsOf(fake).length === 2);
    assert.deepEqual(
      sendsOf(fake).map((c) => c.count),
      [1, 300],
    );
    e.write(tx, 1234);
    await drive(fake, () => sendsOf(fake).reduce((n, c) => n + c.count, 0) === 1535);
    assert.deepEqual(
      sendsOf(fake).map((c) => c.count),
      [1, 300, 500, 500, 234],
    );
    fake.completion = 'fifo';
    await tx.close();
  });
});

describe('failures fail the checkpoint and the task, never hang', () => {
  test('a failed send: flush, commit, ready() and the next write fail with the catalogued error', async () => {
    const fake = new FakeKafka();
    fake.failWhen.push((c) =>
      c.op === 'send' && c.nth === 2 ? new FakeProtocolError('RECORD_LIST_TOO_LARGE', false) : undefined,
    );
    const tx = open(fake, { maxBufferedRecords: 1000 });
    const e = new Emitter();
    await writeInBursts(tx, e, 600, 100);
    tx.prepare(1);
    const isFailure = (err: unknown) => isStreamError(err, 'KAFKA_REQUEST_FAILED') && err.retriable === false;
    await assert.rejects(tx.flush(1), isFailure);
    await assert.rejects(tx.commitCheckpoint(request(1)), isFailure);
    await assert.rejects(Promise.resolve(tx.ready()), isFailure);
    assert.throws(() => e.write(tx, 1), isFailure);
    await tx.close();
    const txn = sendsOf(fake)[0]!.txn!;
    assert.equal(fake.outcomes.get(txn), 'aborted', 'the failed transaction is aborted');
    assert.equal(
      [...fake.outcomes.values()].filter((o) => o === 'committed').length,
      0,
      'nothing of the failed interval is committed',
    );
  });

  test('a fenced producer: KAFKA_TRANSACTION_LOST, not retried', async () => {
    const fake = new FakeKafka();
    fake.failWhen.push((c) =>
      c.op === 'send' && c.nth === 0 ? new FakeProtocolError('INVALID_PRODUCER_EPOCH', false) : undefined,
    );
    const tx = open(fake);
    new Emitter().write(tx, 10);
    tx.prepare(1);
    await assert.rejects(tx.commitCheckpoint(request(1)), (err: unknown) =>
      isStreamError(err, 'KAFKA_TRANSACTION_LOST'),
    );
    await tx.close();
  });

  test('a failed commit fails the task: later writes throw it', async () => {
    const fake = new FakeKafka();
    fake.failWhen.push((c) =>
      c.op === 'commit' ? new FakeProtocolError('INVALID_TXN_STATE', false) : undefined,
    );
    const tx = open(fake);
    const e = new Emitter();
    e.write(tx, 10);
    tx.prepare(1);
    e.write(tx, 10);
    await assert.rejects(tx.commitCheckpoint(request(1)), (err: unknown) =>
      isStreamError(err, 'KAFKA_TRANSACTION_LOST'),
    );
    assert.throws(
      () => e.write(tx, 1),
      (err: unknown) => isStreamError(err, 'KAFKA_TRANSACTION_LOST'),
    );
    await tx.close();
  });
});

describe('the slot state machine', () => {
  const states = Object.keys(SLOT_TRANSITIONS) as SlotState[];
  const events: SlotEvent[] = [
    'fenced',
    'begin',
    'send',
    'close',
    'commit',
    'committed',
    'abort',
    'aborted',
    'fail',
    'shutdown',
  ];

  test('every transition outside the table raises KAFKA_TRANSACTION_STATE_INVALID', () => {
    let wrong = 0;
    for (const s of states) {
      for (const e of events) {
        const allowed = SLOT_TRANSITIONS[s][e];
        if (allowed !== undefined) assert.equal(nextSlotState('slot', s, e), allowed);
        else {
          wrong++;
          assert.throws(
            () => nextSlotState('slot', s, e),
            (err: unknown) =>
              err instanceof StreamError &&
              err.code === 'KAFKA_TRANSACTION_STATE_INVALID' &&
              err.message.includes(`'${e}' is not allowed in state '${s}'`),
          );
        }
      }
    }
    assert.ok(wrong > 40);
  });

  test('the happy path and its lifecycle', () => {
    const m = new SlotMachine('slot 0');
    const path: SlotEvent[] = [
      'fenced',
      'begin',
      'send',
      'close',
      'send',
      'commit',
      'committed',
      'begin',
      'abort',
    ];
    assert.deepEqual(
      path.map((e) => m.apply(e)),
      ['idle', 'open', 'open', 'prepared', 'prepared', 'committing', 'idle', 'open', 'aborting'],
    );
  });

  test('waiting for an idle slot ends when it fails: no hang', async () => {
    const m = new SlotMachine('slot 1');
    m.apply('fenced');
    m.apply('begin');
    const waiting = m.untilIdle();
    const cause = new StreamError('KAFKA_TRANSACTION_LOST', 'fenced');
    m.apply('fail', cause);
    await assert.rejects(waiting, (e: unknown) => e === cause);
    await assert.rejects(m.untilIdle(), (e: unknown) => e === cause);
  });

  test('the sink turns misuse into the catalogued error', async () => {
    const fake = new FakeKafka();
    const tx = open(fake);
    const invalid = (e: unknown) => isStreamError(e, 'KAFKA_TRANSACTION_STATE_INVALID');
    await assert.rejects(tx.commitCheckpoint(request(7)), invalid, 'a checkpoint that was never prepared');
    new Emitter().write(tx, 5);
    tx.prepare(1);
    const first = tx.commitCheckpoint(request(1));
    await assert.rejects(tx.commitCheckpoint(request(1)), invalid, 'a second commit of one checkpoint');
    await first;
    await tx.close();
    assert.throws(() => new Emitter().write(tx, 1), invalid, 'a write after close');
    assert.throws(() => tx.prepare(2), invalid, 'a barrier after close');
  });
});

describe('backpressure', () => {
  test('records written and not acknowledged never exceed maxBufferedRecords', async () => {
    const fake = new FakeKafka();
    fake.completion = 'manual';
    const max = 1000;
    const tx = open(fake, { maxBufferedRecords: max, batchRecords: 150 });
    const e = new Emitter();
    const acked = () => sendsOf(fake).reduce((n, c) => n + c.count, 0);
    let held = 0;
    let worst = 0;
    let finished = false;
    const writer = (async () => {
      while (e.emitted < 8000) {
        const wait = tx.ready();
        if (wait) {
          held++;
          await wait;
          continue;
        }
        e.write(tx, 1);
        worst = Math.max(worst, e.emitted - acked());
        if (e.emitted % 40 === 0) await tick();
      }
      finished = true;
    })();
    // Acknowledge slowly: one call every few turns of the event loop.
    while (!finished) {
      await tick();
      await tick();
      await tick();
      fake.release();
    }
    await writer;
    assert.ok(held > 0, 'the writer was held back');
    assert.ok(worst <= max, `at most ${max} records unacknowledged, saw ${worst}`);
    tx.prepare(1);
    fake.completion = 'fifo';
    fake.release();
    await tx.commitCheckpoint(request(1));
    assertEmissionOrder(fake, 'committed', e);
    await tx.close();
  });
});

describe('retriable coordinator errors are retried inside the commit, bounded by the transaction timeout', () => {
  const busy = (type: string) => new FakeProtocolError(type, true);

  test('CONCURRENT_TRANSACTIONS on sendOffsets, coordinator loading/moving on commit and begin: committed', async () => {
    const fake = new FakeKafka();
    fake.failWhen.push((c) => {
      if (c.op === 'sendOffsets' && c.nth < 3) return busy('CONCURRENT_TRANSACTIONS');
      if (c.op === 'commit' && c.nth === 0) return busy('GROUP_LOAD_IN_PROGRESS');
      if (c.op === 'commit' && c.nth === 1) return busy('NOT_COORDINATOR_FOR_GROUP');
      if (c.op === 'commit' && c.nth === 2) return busy('REQUEST_TIMED_OUT');
      // nth 0 and 1 are the two slots' fencing.
      if (c.op === 'begin' && c.nth === 1) return busy('GROUP_COORDINATOR_NOT_AVAILABLE');
      return undefined;
    });
    const clock = manualClock();
    const tx = open(fake, { retryClock: clock });
    const e = new Emitter();
    e.write(tx, 50);
    tx.prepare(1);
    await tx.commitCheckpoint(request(1));
    assert.deepEqual([...fake.outcomes.values()].filter((o) => o === 'committed').length, 1);
    assertEmissionOrder(fake, 'committed', e);
    assert.equal(clock.sleeps.length, 7, 'one backoff per retried call');
    assert.deepEqual(clock.sleeps.slice(1, 4), [38, 75, 150], 'sendOffsets: exponential backoff');
    const pointer = await tx.latestCheckpoint([
      { source: { uid: 'in', topic: 'in' } as never, partition: 0 },
    ]);
    assert.equal(pointer?.checkpointId, 1, 'the offsets carry the pointer');
    await tx.close();
  });

  test('a coordinator that stays busy: the commit gives up within the transaction timeout, not a hang', async () => {
    const fake = new FakeKafka();
    fake.failWhen.push((c) => (c.op === 'sendOffsets' ? busy('CONCURRENT_TRANSACTIONS') : undefined));
    const clock = manualClock();
    const tx = open(fake, { retryClock: clock, transactionTimeoutMs: 30_000 });
    new Emitter().write(tx, 5);
    tx.prepare(1);
    await assert.rejects(tx.commitCheckpoint(request(1)), (err: unknown) => {
      assert.ok(isStreamError(err, 'KAFKA_RETRIABLE'), String(err));
      assert.match(err.message, /gave up after \d+ attempt/);
      return true;
    });
    assert.ok(clock.t <= 30_000, `retried for ${clock.t} ms`);
    assert.ok(clock.sleeps.length > 10);
    assert.equal([...fake.outcomes.values()].filter((o) => o === 'committed').length, 0);
    await tx.close();
  });

  test('a non-retriable error is not retried', async () => {
    const fake = new FakeKafka();
    fake.failWhen.push((c) =>
      c.op === 'sendOffsets' ? new FakeProtocolError('INVALID_PRODUCER_EPOCH', false) : undefined,
    );
    const clock = manualClock();
    const tx = open(fake, { retryClock: clock });
    new Emitter().write(tx, 5);
    tx.prepare(1);
    await assert.rejects(tx.commitCheckpoint(request(1)), (err: unknown) =>
      isStreamError(err, 'KAFKA_TRANSACTION_LOST'),
    );
    assert.equal(clock.sleeps.length, 0);
    assert.equal(fake.completed.filter((c) => c.op === 'sendOffsets').length, 0);
    await tx.close();
  });

  test('a client that ends the transaction on a failed EndTxn (kafkajs 2.2.4) cannot be retried: the error stands', async () => {
    const fake = new FakeKafka();
    fake.endOnFailedEndTxn = true;
    fake.failWhen.push((c) =>
      c.op === 'commit' && c.nth === 0 ? busy('CONCURRENT_TRANSACTIONS') : undefined,
    );
    const clock = manualClock();
    const tx = open(fake, { retryClock: clock });
    new Emitter().write(tx, 5);
    tx.prepare(1);
    await assert.rejects(tx.commitCheckpoint(request(1)), (err: unknown) => {
      assert.ok(isStreamError(err, 'KAFKA_RETRIABLE'), String(err));
      assert.match(err.message, /the client ended the transaction/);
      return true;
    });
    assert.equal(clock.sleeps.length, 0);
    await tx.close();
  });
});

describe('restore after a handover', () => {
  test('the committed pointer is read only after the previous owner is fenced', async () => {
    const fake = new FakeKafka();
    fake.completion = 'manual';
    const tx = open(fake);
    let read = false;
    const pointer = tx
      .latestCheckpoint([{ source: { uid: 'in', topic: 'in' } as never, partition: 0 }])
      .then((p) => {
        read = true;
        return p;
      });
    for (let i = 0; i < 20; i++) await tick();
    assert.ok(
      fake.pending.some((c) => c.op === 'connect'),
      'fencing (connect: InitProducerId) is under way',
    );
    assert.equal(read, false, 'the pointer was read while the previous owner could still commit');
    await drive(fake, () => read);
    assert.equal(await pointer, undefined);
    await tx.close();
  });
});

describe('admin client', () => {
  test('one shared admin client per Kafka object, however many tasks; disconnected after the last closes', async () => {
    const fake = new FakeKafka();
    const tasks = Array.from({ length: 32 }, (_, p) =>
      open(fake, { taskId: `stage-p${p}`, partition: p % 3 }),
    );
    const input = [{ source: { uid: 'in', topic: 'in' } as never, partition: 0 }];
    assert.deepEqual(
      await Promise.all(tasks.map((t) => t.latestCheckpoint(input))),
      tasks.map(() => undefined),
    );
    assert.equal(fake.admins, 1);
    assert.equal(fake.adminsConnected, 1);
    await Promise.all(tasks.slice(1).map((t) => t.close()));
    assert.equal(fake.adminsDisconnected, 0, 'still leased by one task');
    await tasks[0]!.close();
    assert.equal(fake.adminsDisconnected, 1);
    const again = open(fake);
    await again.latestCheckpoint(input);
    assert.equal(fake.admins, 2, 'a new lease after the last release connects a new client');
    await again.close();
  });
});
