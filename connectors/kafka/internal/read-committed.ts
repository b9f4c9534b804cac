/**
 * The `read_committed` filter: which fetched records a consumer may see, given the aborted
 * transactions the broker listed in the fetch response. It is the algorithm of the Java consumer
 * (`CompletedFetch.nextFetchedRecord`, `consumeAbortedTransactionsUpTo`, `isBatchAborted`):
 *
 * 1. the aborted transactions of the response are taken in order of their first offset;
 * 2. at each record batch that carries a producer id, *every* aborted transaction whose first offset
 *    is at or below the batch's last offset marks its producer aborted;
 * 3. a control batch with an ABORT marker ends its producer's aborted state; control batches are
 *    never records;
 * 4. a transactional data batch of an aborted producer is dropped, whole.
 *
 * A transaction whose ABORT marker lies beyond the fetched data stays aborted to the end of this
 * fetch; the next fetch starts inside it, and the broker lists it again in that response (it lists
 * every aborted transaction whose last offset is at or after the fetch offset), so it is dropped
 * there too. No state is kept between fetches, as in the Java client: a seek needs no reset.
 *
 * Why the project has its own: kafkajs 2.2.4 (`src/consumer/filterAbortedMessages.js`) activates at
 * most one aborted transaction per record (`if (offset >= remaining[0].firstOffset) shift()`). A
 * fetch that starts inside an aborted transaction, while an earlier-starting aborted transaction of
 * another producer is listed too, hands the later transaction's first records to the consumer: after
 * a crash of an upstream task, exactly the case of a repartition topic. kafkajs is unmaintained.
 */

/** The header of the record batch a fetched record came from, as kafkajs decodes it. */
export interface RecordBatchContext {
  readonly firstOffset: string;
  readonly lastOffsetDelta: number;
  /** '-1' when the batch has no producer id (neither idempotent nor transactional). */
  readonly producerId: string;
  readonly inTransaction: boolean;
  readonly isControlBatch: boolean;
}

/** A fetched record as kafkajs decodes it (only what the filter reads). */
export interface FetchedRecord {
  readonly offset: string;
  readonly key: Buffer | null;
  readonly isControlRecord?: boolean;
  readonly batchContext: RecordBatchContext;
}

/** One entry of a fetch response's aborted transactions. */
export interface AbortedTransaction {
  readonly producerId: string | number | bigint;
  readonly firstOffset: string | number | bigint;
}

/** Control record key: version (int16), type (int16); type 0 is ABORT, 1 is COMMIT. */
function isAbortMarker(r: FetchedRecord): boolean {
  const key = r.key;
  return key !== null && key !== undefined && key.length >= 4 && key.readInt16BE(2) === 0;
}

/**
 * The records of one fetched partition a `read_committed` consumer may see, in order: neither
 * records of aborted transactions nor control records. `records` are the decoded records of the
 * response in offset order (possibly without those before the fetch offset).
 */
export function filterAbortedTransactions<R extends FetchedRecord>(
  records: readonly R[],
  abortedTransactions: readonly AbortedTransaction[] | null | undefined,
): R[] {
  const queue = [...(abortedTransactions ?? [])]
    .map((t) => ({ producerId: String(t.producerId), firstOffset: BigInt(t.firstOffset) }))
    .sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : a.firstOffset > b.firstOffset ? 1 : 0));
  let next = 0;
  const abortedProducers = new Set<string>();
  const out: R[] = [];
  let batchFirstOffset: string | undefined;
  let dropBatch = false;
  for (const r of records) {
    const b = r.batchContext;
    if (b.firstOffset !== batchFirstOffset) {
      batchFirstOffset = b.firstOffset;
      dropBatch = false;
      if (b.producerId !== '-1') {
        const last = BigInt(b.firstOffset) + BigInt(b.lastOffsetDelta);
        while (next < queue.length && queue[next]!.firstOffset <= last) {
          abortedProducers.add(queue[next]!.producerId);
          next++;
        }
        if (b.isControlBatch) {
          if (isAbortMarker(r)) abortedProducers.delete(b.producerId);
        } else if (b.inTransaction && abortedProducers.has(b.producerId)) {
          dropBatch = true;
        }
      }
    }
    if (b.isControlBatch || r.isControlRecord === true || dropBatch) continue;
    out.push(r);
  }
  return out;
}

/**
 * The case of the upstream defect (issue 12): records at offsets 236 and 237 of producer 2 and 238 of
 * producer 3, aborted transactions of producer 1 from 200 and producer 2 from 230. kafkajs 2.2.4's
 * filter returns 236 and 238; the right answer is 238 alone. Used by the check on load and the tests.
 */
export function upstreamDefectCase(): {
  records: FetchedRecord[];
  aborted: AbortedTransaction[];
  expected: string[];
} {
  const ctx = (producerId: string, firstOffset: string, lastOffsetDelta: number): RecordBatchContext => ({
    firstOffset,
    lastOffsetDelta,
    producerId,
    inTransaction: true,
    isControlBatch: false,
  });
  const p2 = ctx('2', '236', 1);
  const p3 = ctx('3', '238', 0);
  return {
    records: [
      { offset: '236', key: null, batchContext: p2 },
      { offset: '237', key: null, batchContext: p2 },
      { offset: '238', key: null, batchContext: p3 },
    ],
    aborted: [
      { producerId: '1', firstOffset: '200' },
      { producerId: '2', firstOffset: '230' },
    ],
    expected: ['238'],
  };
}
