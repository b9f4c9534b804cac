/**
 * What a reader of a job's output sees, per key and in offset order (STYLE 17): the committed
 * records read by kcat (librdkafka, not our client, so a bug of ours cannot hide itself) in
 * read_committed mode with their partition and offset, and checks of each key's sequence. A set
 * comparison misses reordering: a consumer of the latest value per key (a compacted topic, a table)
 * keeps a stale value when a key's records are committed out of order.
 *
 * Each check returns a report instead of throwing, so a test can print the figures of a failing run
 * (how many keys broke) before `assertSequences` fails it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { brokersFromEnv } from './kafka.ts';

const run = promisify(execFile);

/** One committed record: where it is in the topic, its key, and its value parsed as JSON. */
export interface Committed<T> {
  readonly partition: number;
  readonly offset: number;
  readonly key: string | null;
  readonly value: T;
}

/**
 * Every committed record of `topic` (kcat, read_committed, up to the end of each partition now), in
 * offset order per partition. Keys and values are framed by their byte lengths, so any bytes are read
 * right; values are parsed by `parse` (default JSON; a null value stays null).
 */
export async function kcatRecords<T>(
  topic: string,
  parse: (text: string) => T = (text) => JSON.parse(text) as T,
): Promise<Committed<T>[]> {
  const { stdout } = await run(
    'kcat',
    [
      '-C',
      '-b',
      brokersFromEnv().join(','),
      '-t',
      topic,
      '-X',
      'isolation.level=read_committed',
      '-e',
      '-q',
      '-f',
      '%p %o %K %S:%k%s\n',
    ],
    { maxBuffer: 1024 * 1024 * 1024, encoding: 'buffer' },
  );
  const out: Committed<T>[] = [];
  let at = 0;
  while (at < stdout.length) {
    const colon = stdout.indexOf(0x3a, at);
    if (colon < 0) throw new Error(`kcat output of ${topic}: a record header without ':' at byte ${at}`);
    const [p, o, k, s] = stdout.toString('latin1', at, colon).split(' ').map(Number) as [
      number,
      number,
      number,
      number,
    ];
    let i = colon + 1;
    const key = k < 0 ? null : stdout.toString('utf8', i, i + k);
    i += Math.max(k, 0);
    const value = s < 0 ? null : parse(stdout.toString('utf8', i, i + s));
    i += Math.max(s, 0);
    if (stdout[i] !== 0x0a)
      throw new Error(`kcat output of ${topic}: record ${p}/${o} is not framed as expected`);
    out.push({ partition: p, offset: o, key, value: value as T });
    at = i + 1;
  }
  return out;
}

/**
 * The committed records of `topic`, polling until at least `expected` arrived or `ms` passed
 * (then returns what there is: the caller's checks say what is missing).
 */
export async function readCommittedRecords<T>(
  topic: string,
  expected: number,
  ms: number,
): Promise<Committed<T>[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const records = await kcatRecords<T>(topic);
    if (records.length >= expected || Date.now() > deadline) return records;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A key whose committed sequence is not what the job emitted, and where it first differs. */
export interface BrokenSequence {
  readonly key: string;
  /** Index in the key's sequence (offset order) of the first wrong record. */
  readonly index: number;
  readonly why: string;
}

export interface SequenceReport {
  /** What was checked, for messages: e.g. "per user, counts 1..n and running sums". */
  readonly what: string;
  readonly keys: number;
  readonly records: number;
  readonly broken: readonly BrokenSequence[];
}

/**
 * The committed records per key, each key's records in offset order. A key whose records lie in more
 * than one partition has no offset order: it is returned in `spread` (and every check counts it broken).
 */
export function sequencesByKey<T>(
  records: readonly Committed<T>[],
  key: (v: T, r: Committed<T>) => string,
): { bySequence: Map<string, Committed<T>[]>; spread: Set<string> } {
  const bySequence = new Map<string, Committed<T>[]>();
  const spread = new Set<string>();
  for (const r of records) {
    const k = key(r.value, r);
    const list = bySequence.get(k);
    if (list === undefined) bySequence.set(k, [r]);
    else {
      if (list[0]!.partition !== r.partition) spread.add(k);
      list.push(r);
    }
  }
  for (const list of bySequence.values()) list.sort((a, b) => a.offset - b.offset);
  return { bySequence, spread };
}

function report<T>(
  what: string,
  records: readonly Committed<T>[],
  key: (v: T) => string,
  check: (k: string, seq: readonly Committed<T>[]) => BrokenSequence | undefined,
  extraKeys: Iterable<string> = [],
): SequenceReport {
  const { bySequence, spread } = sequencesByKey(records, key);
  for (const k of extraKeys) if (!bySequence.has(k)) bySequence.set(k, []);
  const broken: BrokenSequence[] = [];
  for (const [k, seq] of bySequence) {
    const parts = [...new Set(seq.map((r) => r.partition))];
    const b = spread.has(k)
      ? { key: k, index: 0, why: `records in partitions ${parts.join(',')}: no offset order` }
      : check(k, seq);
    if (b) broken.push(b);
  }
  return { what, keys: bySequence.size, records: records.length, broken };
}

const at = (r: Committed<unknown>) => `${r.partition}/${r.offset}`;

/** JSON with object keys sorted, so two equal values compare equal whatever their key order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}

/**
 * Running totals: per key, in offset order, `count` is exactly 1, 2, ..., n (each effect once, none
 * lost, none reordered) and, with `sum` and `addend`, each `sum` is the previous one plus this record's
 * addend (a recomputation along the committed order). With `order`, the key's inputs have a fixed
 * order (one input partition per key) and `order` must rise with it.
 */
export function checkRunningTotals<T>(
  records: readonly Committed<T>[],
  o: {
    readonly what: string;
    readonly key: (v: T) => string;
    readonly count: (v: T) => number;
    readonly sum?: (v: T) => number;
    readonly addend?: (v: T) => number;
    readonly order?: (v: T) => number;
  },
): SequenceReport {
  return report(o.what, records, o.key, (key, seq) => {
    let sum = 0;
    for (let i = 0; i < seq.length; i++) {
      const r = seq[i]!;
      const v = r.value;
      if (o.count(v) !== i + 1) {
        const counts = seq.slice(Math.max(0, i - 3), i + 4).map((x) => o.count(x.value));
        return {
          key,
          index: i,
          why: `count ${o.count(v)} at ${at(r)}, expected ${i + 1} (… ${counts.join(', ')} …)`,
        };
      }
      if (o.sum && o.addend) {
        sum += o.addend(v);
        if (o.sum(v) !== sum) return { key, index: i, why: `sum ${o.sum(v)} at ${at(r)}, recomputed ${sum}` };
      }
      if (o.order && i > 0 && o.order(v) <= o.order(seq[i - 1]!.value)) {
        return {
          key,
          index: i,
          why: `input ${o.order(v)} at ${at(r)} after input ${o.order(seq[i - 1]!.value)}: not in input order`,
        };
      }
    }
    return undefined;
  });
}

/**
 * Exact sequences: per key, the committed values in offset order, each passed through `project`,
 * equal `expected.get(key)` (compared as JSON, whatever the order of object keys). Keys of `expected` with no record count as broken.
 */
export function checkSequences<T>(
  records: readonly Committed<T>[],
  o: {
    readonly what: string;
    readonly key: (v: T) => string;
    readonly expected: ReadonlyMap<string, readonly unknown[]>;
    readonly project?: (v: T) => unknown;
  },
): SequenceReport {
  const project = o.project ?? ((v: T) => v);
  return report(
    o.what,
    records,
    o.key,
    (key, seq) => {
      const want = (o.expected.get(key) ?? []).map(canonical);
      const got = seq.map((r) => canonical(project(r.value)));
      const n = Math.max(want.length, got.length);
      for (let i = 0; i < n; i++) {
        if (want[i] !== got[i]) {
          return {
            key,
            index: i,
            why: `${got[i] ?? 'nothing'}${seq[i] ? ` at ${at(seq[i]!)}` : ''}, expected ${want[i] ?? 'nothing'} (${got.length} records, ${want.length} expected)`,
          };
        }
      }
      return undefined;
    },
    o.expected.keys(),
  );
}

/** Ordered pairs: per key, every record in offset order is `inOrder` after the one before it. */
export function checkOrdered<T>(
  records: readonly Committed<T>[],
  o: {
    readonly what: string;
    readonly key: (v: T) => string;
    readonly inOrder: (prev: T, next: T) => boolean;
  },
): SequenceReport {
  return report(o.what, records, o.key, (key, seq) => {
    for (let i = 1; i < seq.length; i++) {
      if (!o.inOrder(seq[i - 1]!.value, seq[i]!.value)) {
        return {
          key,
          index: i,
          why: `${JSON.stringify(seq[i]!.value)} at ${at(seq[i]!)} after ${JSON.stringify(seq[i - 1]!.value)} at ${at(seq[i - 1]!)}`,
        };
      }
    }
    return undefined;
  });
}

/** One line: how many keys broke, and the first few. */
export function describeSequences(r: SequenceReport): string {
  const head = `${r.what}: ${r.broken.length} of ${r.keys} keys broken (${r.records} records)`;
  return r.broken.length === 0
    ? head
    : `${head}; first: ${r.broken
        .slice(0, 5)
        .map((b) => `${b.key}[${b.index}]: ${b.why}`)
        .join('; ')}`;
}

/** Fails unless every key's sequence held. */
export function assertSequences(r: SequenceReport): void {
  assert.ok(r.keys > 0 || r.records === 0, `${r.what}: no key at all`);
  assert.equal(r.broken.length, 0, describeSequences(r));
}
