import type { Sink, SinkWriter } from '../api/sink.ts';

/**
 * The external system a CollectingSink writes to. It outlives task restarts, as a real database or
 * topic would: what is committed here is the job's visible output.
 */
export class CollectedOutput<T> {
  /** Committed records, in commit order. */
  readonly committed: T[] = [];
  readonly #staged = new Map<string, T[]>();
  readonly #committedTxns = new Set<string>();
  commits = 0;
  /** Commit attempts of a transaction that was already committed (idempotence at work). */
  duplicateCommits = 0;

  stage(txn: string, records: T[]): void {
    this.#staged.set(txn, records);
  }

  commit(txn: string): void {
    if (this.#committedTxns.has(txn)) {
      this.duplicateCommits++;
      return;
    }
    const records = this.#staged.get(txn);
    if (!records) throw new Error(`transaction ${txn} was never prepared`);
    // One by one: spreading a large transaction into push() overflows the call stack.
    for (const r of records) this.committed.push(r);
    this.#committedTxns.add(txn);
    this.#staged.delete(txn);
    this.commits++;
  }

  /** Transactions prepared but neither committed nor discarded. */
  get openTransactions(): number {
    return this.#staged.size;
  }
}

let incarnations = 0;

/**
 * A two-phase sink for tests: records go to a transaction; `prepareCommit` stages it under an id;
 * `commit` makes it visible in `output.committed`, idempotently. Records of transactions that never
 * commit stay invisible, as with Kafka's read_committed.
 */
export class CollectingSink<T> implements Sink<T> {
  readonly uid: string;
  readonly output: CollectedOutput<T>;
  /** Records written (visible or not), over all incarnations; shows processing progress. */
  written = 0;
  /** Optional hook on every commit (tests inject failures here). */
  beforeCommit: ((txns: readonly string[]) => void) | undefined;

  constructor(uid: string, output = new CollectedOutput<T>()) {
    this.uid = uid;
    this.output = output;
  }

  createWriter(info: { partition: number }): SinkWriter<T> {
    const incarnation = ++incarnations;
    let current: T[] = [];
    const self = this;
    const commit = async (committables: readonly unknown[]) => {
      const txns = committables as string[];
      self.beforeCommit?.(txns);
      for (const t of txns) self.output.commit(t);
    };
    return {
      write(value) {
        current.push(value);
        self.written++;
      },
      prepareCommit(checkpointId) {
        const txn = `p${info.partition}-i${incarnation}-c${checkpointId}`;
        self.output.stage(txn, current);
        current = [];
        return txn;
      },
      commit,
      recover: commit,
      async abort() {
        current = [];
      },
      async close() {},
    };
  }
}
