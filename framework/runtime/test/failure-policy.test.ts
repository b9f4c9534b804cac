/**
 * The failure policy (issue 16): what the job does with a task failure by its class (`failureClass`):
 * permanent ones fail the job at once, transient ones (the environment) are restarted for as long as
 * they last without counting against the restart strategy, counted ones end when the strategy gives up.
 * And errors in user functions per record: the operator's `onError`, else the job's
 * `onUserFunctionError` (`fail`, `skip`, `dead-letter`), applied through the source's `rejected` as
 * records in the wrong partition are.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { valueState } from '../../api/descriptors.ts';
import { failureClass, isStreamError, StreamError } from '../../api/errors.ts';
import { type KeyedProcessFunction, outputTag } from '../../api/functions.ts';
import type { RecordErrorPolicy, RecordRejection, RecordVerdict, SourceRecord } from '../../api/source.ts';
import { decideRestart } from '../../checkpoint/decisions.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../datastream/index.ts';
import { combineListeners, instrumentJob } from '../../metrics/instrument.ts';
import { createPrometheusMetrics } from '../../metrics/prometheus.ts';
import { keyGroupOf, keyId } from '../../state/keys.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';

describe('failureClass', () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: x`), { code });

  test('a permanent code, or an unusable path anywhere in the causes: permanent', () => {
    assert.equal(failureClass(new StreamError('CHECKPOINT_NOT_FOUND', 'no savepoint')), 'permanent');
    assert.equal(failureClass(new StreamError('CHECKPOINT_CORRUPT', 'bad')), 'permanent');
    assert.equal(failureClass(new StreamError('CONFIG_INVALID', 'bad')), 'permanent');
    // A checkpoint declined because the directory is under a regular file (what kstate run logged).
    const storage = new StreamError('CHECKPOINT_STORAGE_FAILED', 'ENOTDIR', { cause: errno('ENOTDIR') });
    const declined = new StreamError('CHECKPOINT_DECLINED', 'checkpoint 2 failed', { cause: storage });
    assert.equal(failureClass(declined), 'permanent');
  });

  test('the broker, the registry or the network to the store: transient', () => {
    assert.equal(failureClass(new StreamError('KAFKA_UNAVAILABLE', 'no broker')), 'transient');
    assert.equal(failureClass(new StreamError('SCHEMA_REGISTRY_UNAVAILABLE', 'down')), 'transient');
    const s3 = new StreamError('CHECKPOINT_STORAGE_FAILED', 'unreachable', { cause: errno('ECONNREFUSED') });
    assert.equal(failureClass(new StreamError('CHECKPOINT_DECLINED', 'x', { cause: s3 })), 'transient');
  });

  test('a storage that fails (a full disk, a 500) or a transaction lost to a rebalance: transient', () => {
    assert.equal(
      failureClass(new StreamError('CHECKPOINT_STORAGE_FAILED', 'full', { cause: errno('ENOSPC') })),
      'transient',
    );
    const declined = new StreamError('CHECKPOINT_DECLINED', 'x', {
      cause: new StreamError('CHECKPOINT_STORAGE_FAILED', 'the store answered InternalError (HTTP 500)'),
    });
    assert.equal(failureClass(declined), 'transient');
    assert.equal(failureClass(new StreamError('KAFKA_TRANSACTION_LOST', 'fenced')), 'transient');
    // A task's LevelDB still held by the worker it moves from (--workers share a state directory).
    const locked = Object.assign(new Error('Database failed to open'), { code: 'LEVEL_LOCKED' });
    assert.equal(
      failureClass(new StreamError('CONFIG_INVALID', 'db is locked', { cause: locked })),
      'transient',
    );
  });

  test('anything else (a user function, a checkpoint that timed out, a refused request): counted', () => {
    assert.equal(failureClass(new StreamError('USER_FUNCTION_FAILED', 'boom')), 'counted');
    assert.equal(failureClass(new StreamError('CHECKPOINT_DECLINED', 'timed out after 60000 ms')), 'counted');
    assert.equal(failureClass(new StreamError('KAFKA_REQUEST_FAILED', 'MESSAGE_TOO_LARGE')), 'counted');
    assert.equal(failureClass(new Error('plain')), 'counted');
    assert.equal(failureClass('a string'), 'counted');
  });
});

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

const PARTITIONS = 2;

/** 10 records per key for 8 keys, in their murmur2 partitions, origin `p/offset`; `extra` added to partition 0 at 3. */
function input(extra: SourceRecord<In>[] = []): SourceRecord<In>[][] {
  const parts: SourceRecord<In>[][] = Array.from({ length: PARTITIONS }, () => []);
  for (let i = 0; i < 80; i++) {
    const k = `key-${i % 8}`;
    const p = keyGroupOf(keyId(k), PARTITIONS);
    parts[p]!.push({ value: { k, n: i }, origin: `${p}/${parts[p]!.length}` });
  }
  parts[0]!.splice(3, 0, ...extra);
  return parts;
}

/** A test source that applies the operator's policy as the Kafka source does (dead letters on 'dead'). */
class PolicySource extends TestSource<In> {
  readonly rejections: RecordRejection[] = [];
  rejected(r: RecordRejection): RecordVerdict {
    this.rejections.push(r);
    const policy = r.policy ?? 'fail';
    if (policy === 'fail')
      return {
        kind: 'fail',
        error: new StreamError(r.error.code, `record ${String(r.origin)}: ${r.error.message}`),
      };
    if (policy === 'skip') return { kind: 'skip' };
    return {
      kind: 'emit',
      tag: 'dead',
      value: { origin: r.origin, code: r.error.code, error: r.error.message },
    };
  }
}

/** source -> map (throws on n < 0) -> keyBy(k; throws on a record without one) -> count. */
function job(source: TestSource<In>, mapPolicy?: RecordErrorPolicy) {
  const j = new StreamJob('failure-policy');
  const out = new CollectingSink<Out>('out');
  const dead = new CollectingSink<unknown>('dead');
  const s = j.source(source);
  s.map(
    (v) => {
      if (v.n < 0) throw new Error(`negative n ${v.n}`);
      return v;
    },
    { uid: 'check', ...(mapPolicy ? { onError: mapPolicy } : {}) },
  )
    .keyBy((v) => (v as { k: string }).k)
    .process(new Count(), { uid: 'count' })
    .sinkTo(out);
  s.getSideOutput(outputTag<unknown>('dead')).sinkTo(dead);
  return { graph: j.build(), out, dead };
}

function counts(out: readonly Out[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const o of out) m.set(o.k, [...(m.get(o.k) ?? []), o.count]);
  return m;
}

const ONE_TO_TEN = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

describe('the restart strategy and the failure classes', () => {
  test("'failure-rate' (Flink's): restarts while the failures within the interval are at most maxFailures", () => {
    const s = { kind: 'failure-rate', maxFailures: 3, intervalMs: 1000, delayMs: 50 } as const;
    const at = (now: number, failureTimes: number[]) =>
      decideRestart(s, { restarts: 0, ranForMs: 1, failureTimes, now });
    assert.deepEqual(at(10_000, []), { restart: true, delayMs: 50, restarts: 1 });
    assert.deepEqual(at(10_000, [9_500, 9_800]), { restart: true, delayMs: 50, restarts: 3 });
    assert.deepEqual(at(10_000, [9_100, 9_500, 9_800]), { restart: false });
    // The oldest fell out of the interval: allowed again.
    assert.deepEqual(at(10_200, [9_100, 9_500, 9_800]), { restart: true, delayMs: 50, restarts: 3 });
    assert.equal(decideRestart(s, { restarts: 0, ranForMs: 1, permanent: true }).restart, false);
  });

  test('transient failures restart for as long as they last, not counted against the strategy', async () => {
    const source = new TestSource<In>('in', input());
    let unavailable = 5;
    source.beforePoll = () => {
      if (unavailable-- > 0) throw new StreamError('KAFKA_UNAVAILABLE', 'no broker answered');
    };
    const j = job(source);
    const failures: { failure: string | undefined; restarting: boolean }[] = [];
    const running = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'fixed-delay', attempts: 1, delayMs: 0 },
      listener: { taskFailed: (f) => failures.push({ failure: f.failure, restarting: f.restarting }) },
    });
    await running.done;
    assert.ok(running.restarts() >= 3, `${running.restarts()} restarts`);
    assert.ok(failures.every((f) => f.failure === 'transient' && f.restarting));
    for (const [k, seq] of counts(j.out.output.committed)) assert.deepEqual(seq, ONE_TO_TEN, k);
  });

  test('a permanent failure fails the job at once, whatever the strategy allows', async () => {
    const source = new TestSource<In>('in', input());
    source.beforePoll = () => {
      throw new StreamError('CHECKPOINT_CORRUPT', 'savepoint file x fails its checksum');
    };
    const j = job(source);
    const running = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'fixed-delay', attempts: 1000, delayMs: 0 },
    });
    await assert.rejects(running.done, (e: unknown) => isStreamError(e, 'CHECKPOINT_CORRUPT'));
    assert.equal(running.restarts(), 0);
  });
});

describe('what a failed job shows until its process exits', () => {
  test('not ready, and kstate_tasks{state="failed"} counts the task', async () => {
    const metrics = createPrometheusMetrics({ defaultMetrics: false });
    const inst = instrumentJob(metrics, 'failure-policy');
    const source = new PolicySource('in', input());
    source.beforePoll = (_p, position) => {
      if (position > 20) throw new StreamError('CHECKPOINT_CORRUPT', 'savepoint file x fails its checksum');
    };
    const j = job(source, 'skip');
    const running = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'fixed-delay', attempts: 1000, delayMs: 0 },
      listener: inst,
    });
    const detach = inst.attach(running);
    await assert.rejects(running.done, (e: unknown) => isStreamError(e, 'CHECKPOINT_CORRUPT'));
    await new Promise((r) => setImmediate(r));
    const r = inst.readiness();
    assert.equal(r.ready, false);
    assert.match(r.reason, /failed/);
    const text = await metrics.render();
    assert.match(text, /kstate_tasks\{job_id="failure-policy",state="failed"\} [12]\n/);
    detach();
  });
});

describe('errors in user functions, per record', () => {
  const negative: SourceRecord<In> = { value: { k: 'key-0', n: -1 }, origin: 'negative' };
  const keyless = { value: { n: 7 } as unknown as In, origin: 'keyless' };

  test("'fail' (the default) is counted: the strategy gives up, naming the operator and the record", async () => {
    const source = new PolicySource('in', input([negative]));
    const j = job(source);
    const running = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'fixed-delay', attempts: 2, delayMs: 0 },
    });
    await assert.rejects(running.done, (e: unknown) => {
      assert.ok(isStreamError(e, 'RESTART_LIMIT_EXCEEDED'), String(e));
      assert.match(
        String((e as Error).cause),
        /record negative: operator 'check' failed in map: negative n -1/,
      );
      return true;
    });
    assert.equal(running.restarts(), 2);
  });

  test("the operator's 'skip': dropped, reported, every other record counted once", async () => {
    const source = new PolicySource('in', input([negative]));
    const j = job(source, 'skip');
    const reported: { operator: string; policy: string }[] = [];
    const metrics = createPrometheusMetrics({ defaultMetrics: false });
    const running = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'none' },
      listener: combineListeners(instrumentJob(metrics, 'failure-policy'), {
        recordFailed: (r) => reported.push({ operator: r.operator, policy: r.policy }),
      }),
    });
    await running.done;
    assert.deepEqual(reported, [{ operator: 'check', policy: 'skip' }]);
    assert.match(
      await metrics.render(),
      /kstate_records_failed_total\{job_id="failure-policy",task="in-p0",operator="check",policy="skip"\} 1\n/,
    );
    for (const [k, seq] of counts(j.out.output.committed)) assert.deepEqual(seq, ONE_TO_TEN, k);
    assert.deepEqual(j.dead.output.committed, []);
  });

  test("the job's 'dead-letter': the key selector's error and the record on the source's side output", async () => {
    const source = new PolicySource('in', input([keyless, negative]));
    // The map's own 'skip' wins over the job's default for its errors.
    const j = job(source, 'skip');
    const running = runJob(j.graph, {
      storage: new MemoryCheckpointStorage(),
      restart: { kind: 'none' },
      onUserFunctionError: 'dead-letter',
    });
    await running.done;
    assert.equal(j.dead.output.committed.length, 1, JSON.stringify(j.dead.output.committed));
    const [d] = j.dead.output.committed as { origin: string; code: string; error: string }[];
    assert.equal(d!.origin, 'keyless');
    assert.equal(d!.code, 'USER_FUNCTION_FAILED');
    assert.match(d!.error, /operator 'count' failed in its key selector: key selector returned undefined/);
    for (const [k, seq] of counts(j.out.output.committed)) assert.deepEqual(seq, ONE_TO_TEN, k);
  });

  test("a downstream operator's failure is not taken for the upstream function's: 'skip' upstream, 'fail' downstream", async () => {
    const source = new PolicySource('in', input([keyless]));
    // The count's key selector fails on `keyless` (policy: the job's 'fail'); the map upstream of it
    // skips its own errors only.
    const j = job(source, 'skip');
    const running = runJob(j.graph, { storage: new MemoryCheckpointStorage(), restart: { kind: 'none' } });
    await assert.rejects(running.done, (e: unknown) =>
      /record keyless: operator 'count' failed in its key selector/.test(String((e as Error).cause)),
    );
  });
});
