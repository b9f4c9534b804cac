/**
 * A keyed stream read without repartitioning, over input partitioned by another partitioner than
 * murmur2 (the issue: records produced by kcat put the job into an endless restart loop), and a
 * record that really is in the wrong partition under each poison-record verdict of its source.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { valueState } from '../../api/descriptors.ts';
import { isStreamError, StreamError } from '../../api/errors.ts';
import { type KeyedProcessFunction, outputTag } from '../../api/functions.ts';
import type { Partitioner } from '../../api/keys.ts';
import type { RecordRejection, RecordVerdict, SourceRecord } from '../../api/source.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../datastream/index.ts';
import { keyGroupOf, keyId } from '../../state/keys.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';

interface In {
  readonly k: string;
  readonly n: number;
}
interface Out {
  readonly k: string;
  readonly count: number;
}

class Count implements KeyedProcessFunction<string, In, Out> {
  processElement(
    e: In,
    ctx: Parameters<KeyedProcessFunction<string, In, Out>['processElement']>[1],
    out: { collect(v: Out): void },
  ): void {
    const s = ctx.getState(valueState<number>('count'));
    const c = (s.value() ?? 0) + 1;
    s.update(c);
    out.collect({ k: e.k, count: c });
  }
}

/** A test source with a poison-record policy of its own (its records carry an origin). */
class PolicySource extends TestSource<In> {
  readonly partitioner: Partitioner | undefined;
  readonly rejections: RecordRejection[] = [];
  readonly #verdict: (r: RecordRejection) => RecordVerdict;
  constructor(
    parts: SourceRecord<In>[][],
    o: { partitioner?: Partitioner; verdict: (r: RecordRejection) => RecordVerdict },
  ) {
    super('in', parts);
    this.partitioner = o.partitioner;
    this.#verdict = o.verdict;
  }
  rejected(r: RecordRejection): RecordVerdict {
    this.rejections.push(r);
    return this.#verdict(r);
  }
}

const PARTITIONS = 4;
const KEYS = 40;

/** 10 records per key, partitioned by `by`; origin `p/offset`. */
function partitioned(by: Partitioner): SourceRecord<In>[][] {
  const parts: SourceRecord<In>[][] = Array.from({ length: PARTITIONS }, () => []);
  for (let i = 0; i < KEYS * 10; i++) {
    const k = `key-${i % KEYS}`;
    const p = keyGroupOf(keyId(k), PARTITIONS, by);
    parts[p]!.push({ value: { k, n: i }, origin: `${p}/${parts[p]!.length}` });
  }
  return parts;
}

function job(source: TestSource<In>) {
  const j = new StreamJob('record-errors');
  const out = new CollectingSink<Out>('out');
  const dead = new CollectingSink<unknown>('dead');
  const s = j.source(source);
  s.keyBy((v) => v.k)
    .process(new Count(), { uid: 'count' })
    .sinkTo(out);
  s.getSideOutput(outputTag<unknown>('dead')).sinkTo(dead);
  return { graph: j.build(), out, dead };
}

/** Per key, the counts in output order (1..n when nothing is lost or doubled). */
function counts(out: readonly Out[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const o of out) m.set(o.k, [...(m.get(o.k) ?? []), o.count]);
  return m;
}

const restartForever = { kind: 'fixed-delay', attempts: 1_000_000, delayMs: 0 } as const;

describe('input partitioned by another partitioner', () => {
  test("crc32 input (kcat's) read with partitioner 'crc32': every key counted 1..10, no failure", async () => {
    const source = Object.assign(new TestSource<In>('in', partitioned('crc32')), {
      partitioner: 'crc32' as const,
    });
    const j = job(source);
    const running = runJob(j.graph, { storage: new MemoryCheckpointStorage(), restart: restartForever });
    await running.done;
    assert.equal(running.restarts(), 0);
    const c = counts(j.out.output.committed);
    assert.equal(c.size, KEYS);
    for (const [k, seq] of c) assert.deepEqual(seq, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], k);
  });

  test('the same input read as murmur2 fails the job once, permanently, with the diagnosis (it used to restart forever)', async () => {
    const source = new TestSource<In>('in', partitioned('crc32')); // no partitioner: murmur2, no policy: fail
    const j = job(source);
    const failed: unknown[] = [];
    const running = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: restartForever,
      listener: { taskFailed: (f) => failed.push(f.error) },
    });
    await assert.rejects(running.done, (e: unknown) => {
      assert.ok(isStreamError(e, 'KEY_GROUP_MISMATCH'), String(e));
      assert.match(e.message, /Partition \d is where crc32 .* set partitioner: 'crc32' on source 'in'/);
      return true;
    });
    assert.equal(running.restarts(), 0);
    assert.ok(failed.length >= 1 && failed.length <= PARTITIONS, `${failed.length} task failures`);
  });
});

describe('a record really in the wrong partition, under its source verdict', () => {
  /** murmur2 input plus one record of key-0 put into a partition that is not key-0's. */
  function withStray() {
    const parts = partitioned('murmur2');
    const home = keyGroupOf(keyId('key-0'), PARTITIONS);
    const wrong = (home + 1) % PARTITIONS;
    parts[wrong]!.splice(3, 0, { value: { k: 'key-0', n: -1 }, origin: 'stray' });
    return { parts, wrong };
  }

  test("'skip': the keyed operator drops it, every other record counts once, the source saw why", async () => {
    const { parts, wrong } = withStray();
    const source = new PolicySource(parts, { verdict: () => ({ kind: 'skip' }) });
    const j = job(source);
    const running = runJob(j.graph, { storage: new MemoryCheckpointStorage(), restart: restartForever });
    await running.done;
    assert.equal(running.restarts(), 0);
    for (const [k, seq] of counts(j.out.output.committed)) assert.equal(seq.length, 10, k);
    assert.equal(source.rejections.length, 1);
    const r = source.rejections[0]!;
    assert.deepEqual(
      [r.origin, r.partition, Buffer.from(r.keyBytes).toString(), r.error.code],
      ['stray', wrong, 'key-0', 'KEY_GROUP_MISMATCH'],
    );
  });

  test("'emit': a dead letter on the source's side output, in the same task and checkpoint", async () => {
    const { parts } = withStray();
    const source = new PolicySource(parts, {
      verdict: (r) => ({ kind: 'emit', tag: 'dead', value: { origin: r.origin, code: r.error.code } }),
    });
    const j = job(source);
    const running = runJob(j.graph, { storage: new MemoryCheckpointStorage(), restart: restartForever });
    await running.done;
    assert.deepEqual(j.dead.output.committed, [{ origin: 'stray', code: 'KEY_GROUP_MISMATCH' }]);
    for (const [k, seq] of counts(j.out.output.committed)) assert.equal(seq.length, 10, k);
  });

  test("'fail': the job fails once with the source's error (naming the record), not restarted", async () => {
    const { parts } = withStray();
    const source = new PolicySource(parts, {
      verdict: (r) => ({
        kind: 'fail',
        error: new StreamError('KEY_GROUP_MISMATCH', `record ${String(r.origin)}: ${r.error.message}`),
      }),
    });
    const j = job(source);
    const running = runJob(j.graph, { storage: new MemoryCheckpointStorage(), restart: restartForever });
    await assert.rejects(running.done, (e: unknown) => {
      assert.ok(isStreamError(e, 'KEY_GROUP_MISMATCH'), String(e));
      assert.match(e.message, /^record stray: operator 'count': key "key-0" came in partition/);
      return true;
    });
    assert.equal(running.restarts(), 0);
  });
});
