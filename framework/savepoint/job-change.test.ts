import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { valueState } from '../api/descriptors.ts';
import { isStreamError, StreamError } from '../api/errors.ts';
import type { Collector, KeyedContext, KeyedProcessFunction } from '../api/functions.ts';
import type { SourceRecord } from '../api/source.ts';
import { FilesystemCheckpointStorage } from '../checkpoint/storage/filesystem.ts';
import { MemoryCheckpointStorage } from '../checkpoint/storage/memory.ts';
import type { CheckpointMetadata, CheckpointStorage } from '../checkpoint/storage/storage.ts';
import { StreamJob } from '../datastream/index.ts';
import { planJob } from '../graph/plan.ts';
import { type JobListener, runJob } from '../runtime/job.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';
import { CollectedOutput, CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { type JobChangeHooks, prepareJobStart } from './job-change.ts';
import { readTopologyRecord, TOPOLOGY_SCOPE } from './topology.ts';

/**
 * Job changes in process (docs/savepoints.md, "Job changes"): the keyed counter 'count' moves from
 * the stage of source 'a' (2 partitions) to the stage of source 'b' (3 partitions); then it is
 * removed. Per key, the counts of the second run continue where the first stopped: the state was
 * found by its uid in the old stage's checkpoints, re-cut into the new stage's key groups.
 */

interface Rec {
  readonly k: string;
}

class Count implements KeyedProcessFunction<string, Rec, string> {
  processElement(v: Rec, ctx: KeyedContext<string>, out: Collector<string>): void {
    const n = ctx.getState(valueState<number>('n'));
    n.update((n.value() ?? 0) + 1);
    out.collect(`${v.k}:${n.value()}`);
  }
}

const KEYS = 20;
const records = (from: number, count: number): SourceRecord<Rec>[] =>
  Array.from({ length: count }, (_, i) => ({ value: { k: `k${(from + i) % KEYS}` } }));

/** v1 reads source 'a'; v2 reads 'b' (the counter moves stage); v3 has no counter. */
function graph(version: 1 | 2 | 3, input: SourceRecord<Rec>[], output: CollectedOutput<string>) {
  const job = new StreamJob('jc');
  const sink = new CollectingSink<string>('out', output);
  const source = TestSource.byKey(version === 1 ? 'a' : 'b', input, (v) => v.k, version === 1 ? 2 : 3, {
    bounded: false,
  });
  const stream = job.source(source);
  if (version === 3) stream.map((v) => `${v.k}:-`).sinkTo(sink);
  else
    stream
      .keyBy((v) => v.k)
      .process(new Count(), { uid: 'count' })
      .sinkTo(sink);
  return { graph: job.build(), sink };
}

async function until(f: () => boolean, what: string, failed: Promise<void>): Promise<void> {
  const end = Date.now() + 20_000;
  let error: unknown;
  failed.catch((e: unknown) => {
    error = e;
  });
  while (!f()) {
    if (error !== undefined) throw error;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Run `version` over `input` until `expect` more outputs are committed; stop with a final checkpoint. */
async function run(
  storage: CheckpointStorage,
  version: 1 | 2 | 3,
  input: SourceRecord<Rec>[],
  output: CollectedOutput<string>,
  expect: number,
  o: { savepoint?: string; takeSavepoint?: string; allow?: boolean; listener?: JobListener } = {},
) {
  const before = output.committed.length;
  const { graph: g } = graph(version, input, output);
  const job = runJob(g, {
    storage,
    checkpoints: { intervalMs: 20 },
    restart: { kind: 'none' },
    ...(o.savepoint ? { savepoint: o.savepoint } : {}),
    ...(o.allow ? { allowNonRestoredState: true } : {}),
    ...(o.listener ? { listener: o.listener } : {}),
  });
  try {
    const start = await job.started;
    await until(
      () => output.committed.length >= before + expect,
      `${expect} outputs of v${version}`,
      job.done,
    );
    if (o.takeSavepoint) await job.savepoint(o.takeSavepoint);
    await job.stop({ finalCheckpoint: true });
    await job.done;
    return start;
  } finally {
    await job.stop();
  }
}

/** Per key, the counts in commit order. */
function countsByKey(lines: readonly string[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const l of lines) {
    const [k, n] = l.split(':') as [string, string];
    m.set(k, [...(m.get(k) ?? []), Number(n)]);
  }
  return m;
}

function assertContinuous(output: CollectedOutput<string>, total: number): void {
  const byKey = countsByKey(output.committed);
  assert.equal(output.committed.length, total);
  for (const [k, counts] of byKey) {
    assert.deepEqual(
      counts,
      counts.map((_, i) => i + 1),
      `key ${k}: counts in commit order (state lost or repeated across the job change)`,
    );
  }
}

describe('job changes: state found by operator uid wherever the stages now are', () => {
  test('restart after the counter moved to another stage (and partition count): counts continue per key', async () => {
    const storage = new MemoryCheckpointStorage();
    const output = new CollectedOutput<string>();
    await run(storage, 1, records(0, 200), output, 200);
    const starts: unknown[] = [];
    const notices: string[] = [];
    const start = await run(storage, 2, records(200, 300), output, 300, {
      listener: { jobStart: (s) => starts.push(s), jobNotice: (n) => notices.push(n.message) },
    });
    assertContinuous(output, 500);
    assert.match(start.savepoint ?? '', /^job-change-[0-9a-f]{16}$/);
    assert.deepEqual(start.changed?.dropped, []);
    assert.ok(
      start.changed?.changes.includes("operator 'count' moved from stage a to b"),
      String(start.changed?.changes),
    );
    assert.ok(notices.some((n) => /re-cut by operator uid into savepoint 'job-change-/.test(n)));
    // The layout is recorded with the savepoint its tasks started from.
    const rec = await readTopologyRecord(storage, 'jc');
    assert.deepEqual(rec?.record.savepoint, start.savepoint);
    assert.deepEqual(
      rec?.record.topology.stages.map((s) => [s.stage, s.partitions]),
      [['b', 3]],
    );

    // A second restart of v2: same layout, one read of the record, no new record or savepoint;
    // the tasks take their own newest checkpoints (they descend from the derived savepoint).
    const commits: CheckpointMetadata[] = [];
    const commit = storage.commit.bind(storage);
    storage.commit = async (m) => {
      commits.push(m);
      return commit(m);
    };
    // Positions of a TestSource are indices into its partitions: the input of 'b' grows.
    const again = await run(storage, 2, records(200, 400), output, 100);
    assertContinuous(output, 600);
    assert.equal(again.savepoint, start.savepoint);
    assert.equal(again.changed, undefined);
    assert.deepEqual(
      commits.filter((m) => m.taskId === TOPOLOGY_SCOPE || m.savepoint !== undefined),
      [],
      'the same layout writes no record and no savepoint',
    );
  });

  test('a removed stateful operator refuses the start with STATE_NOT_RESTORED naming the state and uid; allowNonRestoredState drops it', async () => {
    const storage = new MemoryCheckpointStorage();
    const output = new CollectedOutput<string>();
    await run(storage, 1, records(0, 100), output, 100);
    await run(storage, 2, records(100, 100), output, 100);
    const { graph: g, sink } = graph(3, records(100, 150), output);
    const refused = runJob(g, { storage, restart: { kind: 'none' } });
    await assert.rejects(refused.started, (e: unknown) => {
      assert.ok(isStreamError(e, 'STATE_NOT_RESTORED'), String(e));
      assert.match((e as Error).message, /operator 'count' \(stage b\): keyed state 'n' \(20 keys\)/);
      assert.match((e as Error).message, /--allow-non-restored-state/);
      return true;
    });
    await assert.rejects(refused.done);
    assert.equal(sink.written, 0, 'no task started');

    const warnings: string[] = [];
    const start = await run(storage, 3, records(100, 150), output, 50, {
      allow: true,
      listener: { jobNotice: (n) => n.level === 'warn' && warnings.push(n.message) },
    });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /dropping state .* operator 'count' \(stage b\): keyed state 'n' \(20 keys\)/);
    assert.deepEqual(
      start.changed?.dropped.map((u) => u.uid),
      ['count'],
    );
    assert.equal(output.committed.slice(200).filter((l) => l.endsWith(':-')).length, 50);
    // Dropped means dropped: the next start of v3 finds nothing unclaimed.
    await run(storage, 3, records(100, 160), output, 10);
  });

  test('--from-savepoint of another layout: the savepoint is re-cut once into a derived savepoint', async () => {
    const storage = new MemoryCheckpointStorage();
    const output = new CollectedOutput<string>();
    // All 200 inputs are counted when the savepoint is taken: nothing after it to repeat.
    await run(storage, 1, records(0, 200), output, 200, { takeSavepoint: 's1' });
    const start = await run(storage, 2, records(200, 100), output, 100, { savepoint: 's1' });
    assert.match(start.savepoint ?? '', /^s1\.[0-9a-f]{12}$/);
    assert.ok(start.changed?.changes.includes("operator 'count' moved from stage a to b"));
    assertContinuous(output, 300);
    // The same flag again: the derived savepoint is found, not derived again; tasks descend from it.
    const again = await run(storage, 2, records(200, 150), output, 50, { savepoint: 's1' });
    assert.equal(again.savepoint, start.savepoint);
    assert.equal(again.changed, undefined);
    assertContinuous(output, 350);
  });

  test('two instances deciding at once (two storages over one directory, as two processes) derive the same savepoint', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'job-change-'));
    try {
      const storage = () => new FilesystemCheckpointStorage({ directory: dir });
      const output = new CollectedOutput<string>();
      await run(storage(), 1, records(0, 100), output, 100);
      const plan = planJob(graph(2, [], output).graph);
      const decide = () =>
        prepareJobStart({
          storage: storage(),
          jobId: 'jc',
          plan,
          allowNonRestoredState: false,
          openBackend: async () => new HeapKeyedStateBackend(),
        });
      const [x, y] = await Promise.all([decide(), decide()]);
      assert.match(x.savepoint ?? '', /^job-change-/);
      assert.equal(x.savepoint, y.savepoint);
      const rec = await readTopologyRecord(storage(), 'jc');
      assert.equal(rec?.version, 2, 'one record of the new layout');
      assert.equal(rec?.record.savepoint, x.savepoint);
      // And it restores: v2 continues every key's count.
      await run(storage(), 2, records(100, 60), output, 60);
      assertContinuous(output, 160);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  /** `prepareJobStart` of v2 over `storage`, as a process would call it. */
  const decideV2 = (storage: CheckpointStorage, hooks: JobChangeHooks = {}, savepoint?: string) =>
    prepareJobStart({
      storage,
      jobId: 'jc',
      plan: planJob(graph(2, [], new CollectedOutput<string>()).graph),
      allowNonRestoredState: false,
      openBackend: async () => new HeapKeyedStateBackend(),
      hooks,
      ...(savepoint === undefined ? {} : { savepoint }),
    });

  test("new instances started together: one waiting for the group to empty, one past that wait, both follow the first one's record; none fences", async () => {
    const storage = new MemoryCheckpointStorage();
    const output = new CollectedOutput<string>();
    await run(storage, 1, records(0, 100), output, 100);
    const fenced: string[][] = [];
    const fence = async (ids: readonly string[]) => {
      fenced.push([...ids]);
    };
    let firstJoined = false;
    // B polls the group like the Kafka hook (a look per event-loop turn here, no wall clock): once
    // the first instance joined, it is a member.
    const b = decideV2(storage, {
      async exclusive(superseded?: () => Promise<boolean>) {
        for (;;) {
          if (await superseded?.()) return 'superseded';
          if (firstJoined) throw new StreamError('JOB_CHANGE_BLOCKED', 'the group still has 1 member: A');
          await new Promise((r) => setImmediate(r));
        }
      },
      fence,
    });
    // C saw the group empty before the first instance joined; the first one decides before C fences.
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const c = decideV2(storage, {
      async exclusive() {
        await gate;
        return 'exclusive';
      },
      fence,
    });
    const a = await decideV2(storage);
    firstJoined = true;
    release();
    const [fromB, fromC] = await Promise.all([b, c]);
    assert.match(a.savepoint ?? '', /^job-change-/);
    assert.equal(fromB.savepoint, a.savepoint);
    assert.equal(fromC.savepoint, a.savepoint);
    assert.deepEqual(fenced, [], "no instance fenced the transactional ids the first one's tasks use");
    assert.equal((await readTopologyRecord(storage, 'jc'))?.version, 2, 'one record of the new layout');
    await run(storage, 2, records(100, 60), output, 60);
    assertContinuous(output, 160);
  });

  test("--from-savepoint of another layout waits for the group to empty and fences the last run's tasks first", async () => {
    const storage = new MemoryCheckpointStorage();
    const output = new CollectedOutput<string>();
    await run(storage, 1, records(0, 100), output, 100, { takeSavepoint: 's1' });
    const calls: string[] = [];
    const start = await decideV2(
      storage,
      {
        async exclusive() {
          calls.push('exclusive');
          return 'exclusive';
        },
        async fence(ids) {
          calls.push(`fence ${ids.join(',')}`);
        },
      },
      's1',
    );
    assert.match(start.savepoint ?? '', /^s1\.[0-9a-f]{12}$/);
    assert.deepEqual(calls, ['exclusive', 'fence a-p0,a-p1']);
  });

  test("--from-savepoint X kept in the arguments: a later layout change re-cuts the last run's checkpoints, not X", async () => {
    const storage = new MemoryCheckpointStorage();
    const output = new CollectedOutput<string>();
    // v1 counts 200 inputs, s1 is taken; v1 runs on from s1 (the flag in its arguments) for 100 more.
    await run(storage, 1, records(0, 200), output, 200, { takeSavepoint: 's1' });
    await run(storage, 1, records(0, 300), output, 100, { savepoint: 's1' });
    assertContinuous(output, 300);
    // v2 (the counter moves stage) with the same arguments: counts continue from the last run, not s1.
    const start = await run(storage, 2, records(300, 100), output, 100, { savepoint: 's1' });
    assertContinuous(output, 400);
    assert.match(start.savepoint ?? '', /^job-change-[0-9a-f]{16}$/);
    // And a restart of v2 with the flag still there: its own checkpoints again.
    const again = await run(storage, 2, records(300, 150), output, 50, { savepoint: 's1' });
    assert.equal(again.savepoint, start.savepoint);
    assertContinuous(output, 450);
  });
});
