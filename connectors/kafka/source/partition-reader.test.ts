import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError, type PullSourceReader, type SourceRecord } from '../../../framework/index.ts';
import type { KafkaMessage } from '../internal/kafkajs.ts';
import {
  DEAD_LETTER_TAG,
  type DeadLetter,
  type DecodeErrorPolicy,
  type KafkaRecordIn,
  PartitionReader,
} from './partition-reader.ts';

/** kafkajs messages with the given offsets; values are JSON `{"n": offset}`. */
function messages(...offsets: number[]): KafkaMessage[] {
  return offsets.map(
    (o) =>
      ({
        offset: String(o),
        key: Buffer.from(`k${o}`),
        value: Buffer.from(JSON.stringify({ n: o })),
        timestamp: String(1000 + o),
        headers: {},
        attributes: 0,
      }) as unknown as KafkaMessage,
  );
}

const range = (first: number, last: number) => ({ first: String(first), last: String(last) });

/**
 * The task's side of the reader contract, as the runtime's InputChannel follows it (connectors do
 * not import the runtime): pull up to the capacity (the reader's bufferRecords), again once drained
 * to half; nothing now: wait for the reader's signal; a throw fails the channel.
 */
class Channel {
  readonly queue: SourceRecord<unknown>[] = [];
  position: unknown;
  failure: unknown;
  wakes = 0;
  #waiting = false;
  readonly #reader: PullSourceReader<unknown>;
  readonly #maxBatch: number;
  readonly capacity: number;

  constructor(reader: PullSourceReader<unknown> & { position(): unknown }, maxBatch: number) {
    this.#reader = reader;
    this.#maxBatch = maxBatch;
    this.capacity = reader.bufferRecords ?? 1024;
    this.position = reader.position();
    this.#fill();
  }

  get length(): number {
    return this.queue.length;
  }

  take(): SourceRecord<unknown> | undefined {
    const r = this.queue.shift();
    if (!this.#waiting && this.queue.length * 2 <= this.capacity) this.#fill();
    return r;
  }

  #fill(): void {
    try {
      while (this.queue.length < this.capacity) {
        const b = this.#reader.pollNext(Math.min(this.#maxBatch, this.capacity - this.queue.length));
        if (b === 'end') throw new Error('a Kafka partition never ends');
        if (b === undefined || b.records.length === 0) {
          if (b !== undefined) this.position = b.position;
          this.#waiting = true;
          this.#reader.onAvailable(() => {
            this.#waiting = false;
            this.wakes++;
            this.#fill();
          });
          return;
        }
        this.queue.push(...b.records);
        this.position = b.position;
      }
    } catch (e) {
      this.failure = e;
    }
  }
}

/** A reader and the task's channel of it, as the runtime wires them. */
function wired(
  o: {
    capacity?: number;
    start?: number;
    decode?: (r: KafkaRecordIn) => unknown;
    onDecodeError?: DecodeErrorPolicy;
    maxBatch?: number;
  } = {},
) {
  const events: string[] = [];
  const reader = new PartitionReader<unknown>({
    topic: 't',
    partition: 0,
    startOffset: BigInt(o.start ?? 0),
    capacity: o.capacity ?? 100,
    decode: o.decode ?? ((r) => JSON.parse(r.value!.toString('utf8'))),
    onDecodeError: o.onDecodeError ?? 'fail',
    onRoom: () => events.push('room'),
  });
  const channel = new Channel(reader, o.maxBatch ?? 256);
  /** Offer a fetch as the hub does: returns the offset it resolves; a pause is recorded. */
  const offer = (ms: KafkaMessage[], fetched?: { first: string; last: string }) => {
    const { lastTaken, full } = reader.offer(ms, fetched);
    if (full) events.push('pause');
    return lastTaken;
  };
  /** Take n records (or all) as the task loop does; returns their n (dead letters whole). */
  const take = (n = Number.POSITIVE_INFINITY): unknown[] => {
    const out: unknown[] = [];
    for (let i = 0; i < n && channel.length > 0; i++) {
      const e = channel.take()!;
      out.push(e.tag === undefined ? (e.value as { n: number }).n : e.value);
    }
    return out;
  };
  return { reader, channel, events, offer, take, wakes: () => channel.wakes };
}

const offsetOf = (p: unknown) => (p as { offset: string }).offset;

describe('PartitionReader into the input channel', () => {
  test('a fetch goes straight into a waiting channel, decoded on the way in; the channel wakes the task once', () => {
    const w = wired();
    assert.equal(w.offer(messages(0, 1, 2)), '2');
    assert.equal(w.channel.length, 3, 'queued in the same step as the fetch was offered');
    assert.equal(w.reader.held, 0);
    assert.equal(offsetOf(w.channel.position), '3');
    assert.ok(w.wakes() >= 1);
    assert.deepEqual(w.take(), [0, 1, 2]);
    assert.deepEqual(w.events, [], 'never paused');
    assert.equal(w.reader.isFull, false);
  });

  test('the channel holds at most its capacity; the rest of the fetch waits undecoded, the partition pauses, and resumes once the channel took it at half', () => {
    const decoded: number[] = [];
    const w = wired({
      capacity: 100,
      decode: (r) => {
        decoded.push(Number(r.offset));
        return JSON.parse(r.value!.toString('utf8'));
      },
    });
    const fetch = messages(...Array.from({ length: 250 }, (_, i) => i));
    assert.equal(w.offer(fetch), '249', 'the whole fetch is resolved: kafkajs never fetches it again');
    assert.equal(w.channel.length, 100);
    assert.equal(w.reader.held, 150);
    assert.equal(decoded.length, 100, 'only what the channel took is decoded');
    assert.deepEqual(w.events, ['pause']);
    assert.equal(offsetOf(w.channel.position), '100');
    // The task drains: at half the channel takes more, and more again, until the fetch is in.
    assert.deepEqual(
      w.take(50),
      Array.from({ length: 50 }, (_, i) => i),
    );
    assert.equal(w.channel.length, 100, 'refilled at half');
    assert.equal(w.reader.held, 100);
    assert.deepEqual(w.events, ['pause']);
    const rest = w.take();
    assert.equal(rest.length, 200);
    assert.deepEqual(
      rest,
      Array.from({ length: 200 }, (_, i) => 50 + i),
    );
    assert.equal(w.reader.held, 0);
    assert.deepEqual(w.events, ['pause', 'room'], 'resumed once the channel took the rest');
    assert.equal(offsetOf(w.channel.position), '250');
    assert.equal(decoded.length, 250);
  });

  test('a fetch offered while the channel is full is kept whole and the partition pauses at once', () => {
    const w = wired({ capacity: 10 });
    w.offer(messages(...Array.from({ length: 10 }, (_, i) => i)));
    assert.equal(w.channel.length, 10);
    assert.deepEqual(w.events, [], 'exactly full: nothing left over');
    w.offer(messages(10, 11, 12));
    assert.equal(w.reader.held, 3);
    assert.deepEqual(w.events, ['pause']);
    assert.equal(w.take().length, 13);
    assert.deepEqual(w.events, ['pause', 'room']);
    assert.equal(offsetOf(w.channel.position), '13');
  });

  test('records before the expected offset (a refetch) are dropped; a later start skips earlier records', () => {
    const w = wired({ start: 5 });
    assert.equal(w.offer(messages(3, 4, 5, 6)), '6');
    assert.deepEqual(w.take(), [5, 6]);
    w.offer(messages(5, 6, 7));
    assert.deepEqual(w.take(), [7]);
    assert.equal(offsetOf(w.channel.position), '8');
  });

  describe('read_committed: the fetched range moves the position past filtered records', () => {
    test('a range that ends after the records: the position passes it with the records', () => {
      const w = wired();
      assert.equal(w.offer(messages(0, 1), range(0, 5)), '5', 'the end of the range is resolved');
      assert.equal(offsetOf(w.channel.position), '6');
      assert.deepEqual(w.take(), [0, 1]);
    });

    test('a fetch of filtered records only (END_BATCH_PROCESS): the position moves, the channel learns it', () => {
      const w = wired({ start: 4 });
      w.offer([], range(4, 9));
      assert.equal(offsetOf(w.channel.position), '10');
      assert.equal(w.channel.length, 0);
      assert.equal(offsetOf(w.reader.position()), '10');
    });

    test('records still held: the position passes the range only once the records before it are taken', () => {
      const w = wired({ capacity: 4 });
      w.offer(messages(0, 1, 2, 3, 4, 5), range(0, 8));
      assert.equal(offsetOf(w.channel.position), '4', 'the channel took 4 of 6');
      // A filtered fetch while records are held: attached after them.
      w.offer([], range(9, 12));
      assert.equal(offsetOf(w.channel.position), '4');
      assert.deepEqual(w.take(2), [0, 1]);
      assert.equal(offsetOf(w.channel.position), '13', 'records 4, 5 taken, then past both ranges');
      assert.deepEqual(w.take(), [2, 3, 4, 5]);
      // Later ranges still apply (on 4a78fce the second range attached to one record stayed queued and
      // blocked every later one: positions 9 here, then 15 below).
      w.offer(messages(13, 14), range(13, 20));
      assert.deepEqual(w.take(), [13, 14]);
      assert.equal(offsetOf(w.channel.position), '21');
    });

    test('a range that starts after the expected offset (stale, or a compaction gap) moves nothing', () => {
      const w = wired({ start: 3 });
      w.offer([], range(7, 9));
      assert.equal(offsetOf(w.channel.position), '3');
      w.offer(messages(3), range(3, 3));
      assert.equal(offsetOf(w.channel.position), '4');
    });
  });

  describe('records that fail to decode', () => {
    const bad = (r: KafkaRecordIn) => {
      if (r.offset === '1') throw new Error('not JSON');
      return JSON.parse(r.value!.toString('utf8'));
    };

    test("'fail': the records before it go in, then the channel fails naming the record", () => {
      const w = wired({ decode: bad });
      w.offer(messages(0, 1, 2));
      assert.deepEqual(w.take(), [0]);
      assert.ok(isStreamError(w.channel.failure, 'RECORD_DESERIALIZATION_FAILED'));
      assert.match(
        String((w.channel.failure as Error).message),
        /record t\/0@1 could not be deserialized: not JSON/,
      );
      assert.equal(offsetOf(w.channel.position), '1');
    });

    test("'skip': counted, the position passes it", () => {
      const w = wired({ decode: bad, onDecodeError: 'skip' });
      w.offer(messages(0, 1, 2));
      assert.deepEqual(w.take(), [0, 2]);
      assert.equal(w.reader.skipped, 1);
      assert.equal(w.channel.failure, undefined);
      assert.equal(offsetOf(w.channel.position), '3');
    });

    test("'dead-letter': the record as read on DEAD_LETTER_TAG, in order", () => {
      const w = wired({ decode: bad, onDecodeError: 'dead-letter' });
      w.offer(messages(0, 1, 2));
      const out = w.take();
      assert.equal(out.length, 3);
      const dl = out[1] as DeadLetter;
      assert.deepEqual([dl.offset, dl.code, dl.error], ['1', 'RECORD_DESERIALIZATION_FAILED', 'not JSON']);
      assert.equal(String(dl.value), '{"n":1}');
      assert.deepEqual([out[0], out[2]], [0, 2]);
      assert.ok(DEAD_LETTER_TAG);
    });

    test('a retryable error (an unreachable registry) fails the channel even under skip', () => {
      const w = wired({
        onDecodeError: 'skip',
        decode: () => {
          throw Object.assign(new Error('registry down'), { retryable: true });
        },
      });
      w.offer(messages(0));
      assert.equal((w.channel.failure as Error).message, 'registry down');
      assert.equal(w.reader.skipped, 0);
    });
  });

  test("a record's origin is the fetched message itself; channel state stores it as a KafkaRecordIn", () => {
    const w = wired();
    const fetch = messages(0);
    w.offer(fetch);
    const r = w.channel.take()!;
    assert.equal(r.origin, fetch[0], 'no copy per record');
    assert.equal(r.timestamp, 1000);
    assert.deepEqual(w.reader.storedOrigin(r.origin), {
      topic: 't',
      partition: 0,
      offset: '0',
      key: Buffer.from('k0'),
      value: Buffer.from('{"n":0}'),
      headers: {},
      timestamp: 1000,
    });
  });

  test('an asynchronous decoder (a registry fetching a schema): records go in, in order, as each settles', async () => {
    const pending: (() => void)[] = [];
    const w = wired({
      decode: (r) =>
        r.offset === '1'
          ? new Promise((resolve) => pending.push(() => resolve({ n: 1 })))
          : JSON.parse(r.value!.toString('utf8')),
    });
    w.offer(messages(0, 1, 2));
    assert.equal(w.channel.length, 1, 'record 0 went in; record 1 waits for its decoder');
    assert.equal(offsetOf(w.channel.position), '1');
    assert.deepEqual(w.events, ['pause'], 'the reader holds records: the partition pauses');
    pending.shift()!();
    await new Promise<void>((r) => setImmediate(r));
    assert.deepEqual(w.take(), [0, 1, 2]);
    assert.equal(offsetOf(w.channel.position), '3');
    assert.deepEqual(w.events, ['pause', 'room']);
  });

  test('a failed asynchronous decode fails the channel after the records before it', async () => {
    const w = wired({
      decode: (r) =>
        r.offset === '1' ? Promise.reject(new Error('bad schema id')) : JSON.parse(r.value!.toString('utf8')),
    });
    w.offer(messages(0, 1, 2));
    await new Promise<void>((r) => setImmediate(r));
    assert.deepEqual(w.take(), [0]);
    assert.ok(isStreamError(w.channel.failure, 'RECORD_DESERIALIZATION_FAILED'));
  });

  test('an idle partition costs nothing: no timer, no poll; a closed reader takes nothing more', async () => {
    let decodes = 0;
    const w = wired({
      decode: (r) => {
        decodes++;
        return JSON.parse(r.value!.toString('utf8'));
      },
    });
    const before = process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
    assert.equal(w.reader.pollNext(10), undefined, 'nothing now, and no wait');
    assert.equal(process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length, before);
    await w.reader.close();
    w.offer(messages(0, 1));
    assert.equal(w.channel.length, 0);
    assert.equal(decodes, 0);
  });
});
