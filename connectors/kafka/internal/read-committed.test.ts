/**
 * The read_committed filter against a model of a partition log: producers write transactional and
 * plain batches, transactions end in COMMIT or ABORT markers, and a fetch returns the batches of an
 * offset range with the aborted transactions the broker lists for it (those whose last offset, the
 * ABORT marker, is at or after the fetch offset and whose first offset is before the end of the
 * fetched data). A read_committed reader must see exactly the records of committed transactions and
 * the plain records of that range. The same property is run against kafkajs 2.2.4's own filter to show
 * that it fails there.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Kafka } from './kafkajs.ts';
import {
  type AbortedTransaction,
  type FetchedRecord,
  filterAbortedTransactions,
  type RecordBatchContext,
  upstreamDefectCase,
} from './read-committed.ts';

type Filter = (records: FetchedRecord[], aborted: AbortedTransaction[]) => FetchedRecord[];

/** kafkajs 2.2.4's filter, compiled from its file (the loaded copy is replaced by ours). */
function upstreamFilter(): Filter {
  const path = createRequire(import.meta.url).resolve('kafkajs/src/consumer/filterAbortedMessages.js');
  const M = Module as unknown as {
    new (
      id: string,
    ): { paths: string[]; filename: string; exports: unknown; _compile(src: string, file: string): void };
    _nodeModulePaths(dir: string): string[];
  };
  const m = new M(path);
  m.filename = path;
  m.paths = M._nodeModulePaths(dirname(path));
  m._compile(readFileSync(path, 'utf8'), path);
  const f = m.exports as (o: {
    messages: FetchedRecord[];
    abortedTransactions: AbortedTransaction[];
  }) => FetchedRecord[];
  return (records, aborted) =>
    f({ messages: records, abortedTransactions: aborted }).filter((r) => !r.isControlRecord);
}

const ABORT = Buffer.from([0, 0, 0, 0]);
const COMMIT = Buffer.from([0, 0, 0, 1]);

/** One record batch of the log, with its records. */
interface LogBatch {
  readonly ctx: RecordBatchContext;
  readonly records: FetchedRecord[];
  /** For data batches: whether a read_committed reader must see them. */
  visible: boolean;
}

interface Log {
  readonly batches: LogBatch[];
  /** Aborted transactions: producer, first offset, offset of the ABORT marker. */
  readonly aborted: { producerId: string; firstOffset: bigint; lastOffset: bigint }[];
}

type Step =
  | { kind: 'write'; producer: number; records: number }
  | { kind: 'end'; producer: number; commit: boolean }
  | { kind: 'plain'; records: number };

/** Plays `steps` into a log; transactions still open at the end are aborted (as a coordinator would). */
function buildLog(steps: readonly Step[]): Log {
  const batches: LogBatch[] = [];
  const aborted: Log['aborted'] = [];
  const open = new Map<number, { first: bigint; batches: LogBatch[] }>();
  let offset = 0n;
  const append = (
    producerId: string,
    inTransaction: boolean,
    isControlBatch: boolean,
    n: number,
    key: Buffer | null,
  ) => {
    const ctx: RecordBatchContext = {
      firstOffset: offset.toString(),
      lastOffsetDelta: n - 1,
      producerId,
      inTransaction,
      isControlBatch,
    };
    const records: FetchedRecord[] = [];
    for (let i = 0; i < n; i++)
      records.push({
        offset: (offset + BigInt(i)).toString(),
        key,
        isControlRecord: isControlBatch,
        batchContext: ctx,
      });
    offset += BigInt(n);
    const b: LogBatch = { ctx, records, visible: !inTransaction && !isControlBatch };
    batches.push(b);
    return b;
  };
  const end = (producer: number, commit: boolean) => {
    const txn = open.get(producer);
    if (!txn) return;
    open.delete(producer);
    for (const b of txn.batches) b.visible = commit;
    const marker = offset;
    append(String(producer), true, true, 1, commit ? COMMIT : ABORT);
    if (!commit) aborted.push({ producerId: String(producer), firstOffset: txn.first, lastOffset: marker });
  };
  for (const s of steps) {
    if (s.kind === 'write') {
      let txn = open.get(s.producer);
      if (!txn) {
        txn = { first: offset, batches: [] };
        open.set(s.producer, txn);
      }
      txn.batches.push(append(String(s.producer), true, false, s.records, null));
    } else if (s.kind === 'end') {
      end(s.producer, s.commit);
    } else {
      append('-1', false, false, s.records, null);
    }
  }
  for (const p of [...open.keys()]) end(p, false);
  return { batches, aborted };
}

/**
 * A fetch from `fetchOffset` returning whole batches up to about `maxRecords` records (a batch that
 * contains the fetch offset comes whole, its earlier records dropped as kafkajs does), with the
 * aborted transactions the broker lists for that range.
 */
function fetch(log: Log, fetchOffset: bigint, maxRecords: number) {
  const records: FetchedRecord[] = [];
  let upper = fetchOffset;
  for (const b of log.batches) {
    const last = BigInt(b.ctx.firstOffset) + BigInt(b.ctx.lastOffsetDelta);
    if (last < fetchOffset) continue;
    if (records.length > 0 && records.length + b.records.length > maxRecords) break;
    records.push(...b.records.filter((r) => BigInt(r.offset) >= fetchOffset));
    upper = last + 1n;
  }
  const aborted = log.aborted
    .filter((t) => t.lastOffset >= fetchOffset && t.firstOffset < upper)
    .map((t) => ({ producerId: t.producerId, firstOffset: t.firstOffset.toString() }));
  return { records, aborted, upper };
}

function expected(log: Log, from: bigint, upper: bigint): string[] {
  return log.batches
    .filter((b) => b.visible)
    .flatMap((b) => b.records)
    .map((r) => r.offset)
    .filter((o) => BigInt(o) >= from && BigInt(o) < upper);
}

const steps = fc.array(
  fc.oneof(
    fc.record({
      kind: fc.constant('write' as const),
      producer: fc.integer({ min: 1, max: 4 }),
      records: fc.integer({ min: 1, max: 3 }),
    }),
    fc.record({
      kind: fc.constant('end' as const),
      producer: fc.integer({ min: 1, max: 4 }),
      commit: fc.boolean(),
    }),
    fc.record({ kind: fc.constant('plain' as const), records: fc.integer({ min: 1, max: 2 }) }),
  ),
  { minLength: 1, maxLength: 40 },
);

/** Reads the whole log in fetches of at most `maxRecords` from `start`, as a consumer does. */
function property(filter: Filter) {
  return fc.property(steps, fc.nat(60), fc.integer({ min: 1, max: 12 }), (s, startAt, maxRecords) => {
    const log = buildLog(s);
    const end = BigInt(log.batches.reduce((n, b) => n + b.records.length, 0));
    const start = BigInt(startAt) % (end + 1n);
    const seen: string[] = [];
    let at = start;
    while (at < end) {
      const f = fetch(log, at, maxRecords);
      seen.push(...filter(f.records, f.aborted).map((r) => r.offset));
      at = f.upper;
    }
    assert.deepEqual(seen, expected(log, start, end));
  });
}

const ours: Filter = (records, aborted) => filterAbortedTransactions(records, aborted);

test('read_committed: a reader sees exactly the committed and plain records, from any start, in fetches of any size', () => {
  fc.assert(property(ours), { numRuns: 3000 });
});

test('read_committed: the property fails on kafkajs 2.2.4 own filter (the upstream defect)', () => {
  const result = fc.check(property(upstreamFilter()), { numRuns: 3000, seed: 12 });
  assert.ok(
    result.failed,
    'kafkajs 2.2.4 filter passed the property: the test cannot tell a broken filter from a good one',
  );
});

const issueCase = upstreamDefectCase;

test('read_committed: a fetch starting inside an aborted transaction, with an earlier one of another producer listed', () => {
  const { records, aborted } = issueCase();
  assert.deepEqual(
    filterAbortedTransactions(records, aborted).map((r) => r.offset),
    ['238'],
  );
  assert.deepEqual(
    upstreamFilter()(records, aborted).map((r) => r.offset),
    ['236', '238'],
    'the upstream defect as described',
  );
});

test('read_committed: aborted transactions listed out of order are taken by first offset', () => {
  const { records, aborted } = issueCase();
  assert.deepEqual(
    filterAbortedTransactions(records, [...aborted].reverse()).map((r) => r.offset),
    ['238'],
  );
});

test('read_committed: the kafkajs loaded through the project module uses this filter', async () => {
  const m = await import('./kafkajs.ts');
  const k: Kafka = new m.Kafka({ brokers: ['127.0.0.1:1'], logLevel: m.logLevel.NOTHING });
  assert.ok(k);
  const Batch = createRequire(import.meta.url)('kafkajs/src/consumer/batch.js') as new (
    t: string,
    o: string,
    d: unknown,
  ) => { messages: { offset: string }[] };
  const { records, aborted } = issueCase();
  const batch = new Batch('t', '236', {
    partition: 0,
    highWatermark: '239',
    abortedTransactions: aborted,
    messages: records,
  });
  assert.deepEqual(
    batch.messages.map((r) => r.offset),
    ['238'],
  );
});
