import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { listState, mapState, valueState } from '../api/descriptors.ts';
import { isStreamError } from '../api/errors.ts';
import type {
  Collector,
  InitContext,
  KeyedContext,
  KeyedProcessFunction,
  ProcessContext,
  ProcessFunction,
} from '../api/functions.ts';
import type { SourceRecord } from '../api/source.ts';
import type { ListState } from '../api/state.ts';
import { MemoryCheckpointStorage } from '../checkpoint/storage/memory.ts';
import { StreamJob } from '../datastream/index.ts';
import { keyedStateValue } from '../runtime/inspect.ts';
import { runJob } from '../runtime/job.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';
import { msgpackSerializer } from '../state/serializers.ts';
import { CollectedOutput, CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { fromJsonValue, toJsonValue } from './json-values.ts';
import { exportSavepointToDirectory, importSavepointFromDirectory, rescaleSavepoint } from './operations.ts';
import { rescaleStage } from './rescale.ts';
import { type JobSavepoint, readJobSavepoint } from './savepoint-io.ts';

interface Rec {
  readonly k: string;
  readonly n: number;
}

/** Counts records per task in operator list state (split): the elements' sum is the records seen. */
class Seen implements ProcessFunction<Rec, Rec> {
  #seen!: ListState<number>;
  initializeState(ctx: InitContext): void {
    this.#seen = ctx.operatorState.getListState<number>('seen');
  }
  processElement(v: Rec, _ctx: ProcessContext, out: Collector<Rec>): void {
    const cur = this.#seen.get();
    this.#seen.update(cur.length === 0 ? [1] : [cur[0]! + 1, ...cur.slice(1)]);
    out.collect(v);
  }
}

/** Per key: count, sum, a map of n % 3 -> count, the last 3 n, and a timer that never fires. */
class PerKey implements KeyedProcessFunction<string, Rec, string> {
  processElement(v: Rec, ctx: KeyedContext<string>, out: Collector<string>): void {
    const count = ctx.getState(valueState<number>('count'));
    const sum = ctx.getState(valueState<number>('sum'));
    const buckets = ctx.getMapState(mapState<number, number>('buckets'));
    const recent = ctx.getListState(listState<number>('recent'));
    const c = (count.value() ?? 0) + 1;
    const s = (sum.value() ?? 0) + v.n;
    count.update(c);
    sum.update(s);
    buckets.put(v.n % 3, (buckets.get(v.n % 3) ?? 0) + 1);
    recent.update([...recent.get(), v.n].slice(-3));
    ctx.timerService.registerProcessingTimeTimer(1e15 + Number(v.k.slice(1)));
    out.collect(`${v.k} ${c} ${s}`);
  }
}

const STATES = ['per-key/count', 'per-key/sum', 'per-key/buckets', 'per-key/recent'];
const KEYS = Array.from({ length: 40 }, (_, i) => `k${i}`);

function records(from: number, n: number): SourceRecord<Rec>[] {
  return Array.from({ length: n }, (_, i) => {
    const x = from + i;
    return { value: { k: `k${(x * 7) % 40}`, n: x } };
  });
}

function byKey(rs: SourceRecord<Rec>[], n: number): SourceRecord<Rec>[][] {
  const parts: SourceRecord<Rec>[][] = Array.from({ length: n }, () => []);
  for (const r of rs) parts[keyGroupOf(keyId(r.value.k), n)]!.push(r);
  return parts;
}

function graphOf(jobId: string, parts: SourceRecord<Rec>[][], sink: CollectingSink<string>) {
  const job = new StreamJob(jobId);
  job
    .source(new TestSource('input', parts, { bounded: false }))
    .process(new Seen(), { uid: 'seen' })
    .keyBy((v) => v.k)
    .process(new PerKey(), { uid: 'per-key' })
    .sinkTo(sink);
  return job.build();
}

async function until(f: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Run from `savepoint` (if any) until `expect` records are committed, then take savepoint `as`. */
async function runPhase(
  storage: MemoryCheckpointStorage,
  parts: SourceRecord<Rec>[][],
  expect: number,
  as: string,
  output: CollectedOutput<string>,
  savepoint?: string,
): Promise<void> {
  const before = output.committed.length;
  const sink = new CollectingSink('out', output);
  const job = runJob(graphOf('j', parts, sink), {
    storage,
    checkpoints: { intervalMs: 0 },
    ...(savepoint ? { savepoint } : {}),
  });
  try {
    await until(() => sink.written >= expect, `${expect} records`);
    await job.savepoint(as);
    await until(() => output.committed.length >= before + expect, 'the savepoint to commit the output');
  } finally {
    await job.stop();
  }
}

const taskIds = (n: number) => Array.from({ length: n }, (_, p) => `input-p${p}`);

/** Every key's decoded value of every state, and the sum of the 'seen' operator state. */
function stateOf(sp: JobSavepoint): { keyed: Record<string, unknown>; seen: number } {
  const keyed: Record<string, unknown> = {};
  let seen = 0;
  for (const t of sp.stages[0]!.tasks) {
    for (const state of STATES)
      for (const k of KEYS) {
        const v = keyedStateValue(t.keyed, state, keyId(k));
        if (v !== undefined) {
          assert.equal(keyed[`${state} ${k}`], undefined, `${state} ${k} in two tasks`);
          keyed[`${state} ${k}`] = v instanceof Map ? [...v].sort() : v;
        }
      }
    const s = t.operators.operators.seen?.operatorState?.states.find((x) => x.name === 'seen');
    for (const e of s?.elements ?? []) seen += unpackNumber(e);
  }
  return { keyed, seen };
}

function unpackNumber(bytes: Uint8Array): number {
  return msgpackSerializer<number>().deserialize(bytes);
}

describe('savepoint rescale', () => {
  test('4 -> 8 -> 3 partitions through savepoints ends with the state and output of an unscaled run', async () => {
    const [a, b, c] = [records(0, 600), records(600, 600), records(1200, 600)];
    // Reference: one run, 4 partitions, all input.
    const refStorage = new MemoryCheckpointStorage();
    const refOut = new CollectedOutput<string>();
    await runPhase(refStorage, byKey([...a, ...b, ...c], 4), 1800, 'final', refOut);
    const ref = stateOf(await readJobSavepoint(refStorage, 'j', taskIds(4), 'final'));
    assert.equal(ref.seen, 1800);
    assert.equal(Object.keys(ref.keyed).length, 4 * 40);

    const storage = new MemoryCheckpointStorage();
    const out = new CollectedOutput<string>();
    const partsA = byKey(a, 4);
    await runPhase(storage, partsA, 600, 'a', out);
    const r8 = await rescaleSavepoint(storage, 'j', taskIds(4), 'a', { as: 'a8', partitions: () => 8 });
    assert.deepEqual(r8.stages, [{ stage: 'input', from: 4, to: 8, keys: 4 * 40 }]);
    const sp8 = await readJobSavepoint(storage, 'j', taskIds(8), 'a8');
    const spA = await readJobSavepoint(storage, 'j', taskIds(4), 'a');
    // Independent checks of the re-sharded savepoint against the original.
    const entries = (sp: JobSavepoint) =>
      sp.stages[0]!.tasks.flatMap((t, p) =>
        t.keyed.states.flatMap((s) =>
          s.entries.map(([k, bytes]) => ({
            p,
            row: `${s.meta.name} ${k} ${Buffer.from(bytes).toString('hex')}`,
          })),
        ),
      );
    for (const { p, row } of entries(sp8)) assert.equal(p, keyGroupOf(row.split(' ')[1]!, 8), row);
    assert.deepEqual(
      entries(sp8)
        .map((e) => e.row)
        .sort(),
      entries(spA)
        .map((e) => e.row)
        .sort(),
    );
    const timers = (sp: JobSavepoint) =>
      sp.stages[0]!.tasks.flatMap((t, p) =>
        (t.operators.operators['per-key']?.timers?.processing ?? []).map(([ts, k]) => ({ p, k, ts })),
      );
    assert.equal(timers(sp8).length, 40);
    for (const t of timers(sp8)) assert.equal(t.p, keyGroupOf(t.k, 8));
    assert.equal(stateOf(sp8).seen, 600);
    for (const [p, t] of sp8.stages[0]!.tasks.entries()) {
      assert.deepEqual(
        t.payload.channels.map((c) => c.partition),
        p < 4 ? [p] : [],
        'old partitions keep their position, new ones have none',
      );
      if (p < 4)
        assert.deepEqual(
          t.payload.channels[0]!.position,
          spA.stages[0]!.tasks[p]!.payload.channels[0]!.position,
        );
    }
    assert.ok(r8.checkpointId > Math.max(...spA.stages[0]!.tasks.map((t) => t.checkpointId)));

    // Kafka-like: the old partitions keep their records, new records are partitioned over 8.
    const newB = byKey(b, 8);
    const parts8 = newB.map((rs, p) => [...(partsA[p] ?? []), ...rs]);
    await runPhase(storage, parts8, 600, 'b', out, 'a8');
    // 8 -> 3: a new "topic" with 3 partitions: positions are dropped (the new topic starts at 0).
    await rescaleSavepoint(storage, 'j', taskIds(8), 'b', {
      as: 'b3',
      partitions: () => 3,
      position: () => undefined,
    });
    await runPhase(storage, byKey(c, 3), 600, 'final', out, 'b3');
    const fin = stateOf(await readJobSavepoint(storage, 'j', taskIds(3), 'final'));
    assert.deepEqual(fin.keyed, ref.keyed);
    assert.equal(fin.seen, 1800);
    assert.deepEqual([...out.committed].sort(), [...refOut.committed].sort());
  });

  test('refusals: a missing savepoint, an unknown format, raw state, in-flight records, an incomplete stage', async () => {
    const storage = new MemoryCheckpointStorage();
    await runPhase(storage, byKey(records(0, 100), 2), 100, 'a', new CollectedOutput());
    await assert.rejects(
      rescaleSavepoint(storage, 'j', taskIds(2), 'nope', { as: 'x', partitions: () => 4 }),
      (e) => isStreamError(e, 'CHECKPOINT_NOT_FOUND') && /job j has no savepoint 'nope'/.test(e.message),
    );
    const meta = await storage.loadSavepoint('a', { jobId: 'j', taskId: 'input-p0' });
    await storage.commit({
      ...meta,
      savepoint: 'future',
      payload: { ...(meta.payload as object), format: 2 },
    });
    await storage.commit({
      ...(await storage.loadSavepoint('a', { jobId: 'j', taskId: 'input-p1' })),
      savepoint: 'future',
    });
    await assert.rejects(
      rescaleSavepoint(storage, 'j', taskIds(2), 'future', { as: 'x', partitions: () => 4 }),
      (e) =>
        isStreamError(e, 'SNAPSHOT_FORMAT_UNSUPPORTED') &&
        /task format 2; this build reads format 1/.test(e.message),
    );
    await storage.commit({ ...meta, savepoint: 'half' });
    await assert.rejects(
      rescaleSavepoint(storage, 'j', taskIds(2), 'half', { as: 'x', partitions: () => 4 }),
      (e) => isStreamError(e, 'CHECKPOINT_NOT_FOUND') && /no part for task input-p1/.test(e.message),
    );
    const sp = await readJobSavepoint(storage, 'j', taskIds(2), 'a');
    const stage = sp.stages[0]!;
    const withRaw = {
      ...stage,
      tasks: stage.tasks.map((t) => ({
        ...t,
        operators: {
          ...t.operators,
          operators: { ...t.operators.operators, seen: { raw: new Uint8Array([1]) } },
        },
      })),
    };
    assert.throws(
      () => rescaleStage(withRaw, { partitions: 3 }),
      (e) => isStreamError(e, 'RESCALE_UNSUPPORTED') && /operator 'seen' keeps raw state/.test(e.message),
    );
    assert.equal(rescaleStage(withRaw, { partitions: 2 }).tasks[0]!.operators.operators.seen!.raw?.length, 1);
    const inflight = {
      ...stage,
      tasks: stage.tasks.map((t) => ({
        ...t,
        payload: { ...t.payload, channels: t.payload.channels.map((c) => ({ ...c, inflight: 2 })) },
      })),
    };
    assert.throws(
      () => rescaleStage(inflight, { partitions: 3 }),
      (e) => isStreamError(e, 'RESCALE_UNSUPPORTED') && /in-flight records/.test(e.message),
    );
    await assert.rejects(
      rescaleSavepoint(storage, 'j', taskIds(2), 'a', { as: 'a', partitions: () => 2 }),
      (e) => isStreamError(e, 'CONFIG_INVALID') && /already has a savepoint 'a'/.test(e.message),
    );
  });
});

describe('savepoint export and import (NDJSON)', () => {
  test('export -> import -> restore: the job continues from the imported state; bad rows are refused with their line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sp-ndjson-'));
    try {
      const storage = new MemoryCheckpointStorage();
      await runPhase(storage, byKey(records(0, 400), 4), 400, 'a', new CollectedOutput());
      const { manifest } = await exportSavepointToDirectory(storage, 'j', taskIds(4), 'a', join(dir, 'x'));
      assert.deepEqual(manifest.states.map((s) => s.file).sort(), [
        'per-key/buckets.ndjson',
        'per-key/count.ndjson',
        'per-key/recent.ndjson',
        'per-key/sum.ndjson',
        'seen/seen.ndjson',
      ]);
      const count = (await readFile(join(dir, 'x', 'per-key/count.ndjson'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.equal(count.length, 40);
      for (const row of count) {
        assert.equal(row.keyGroup, keyGroupOf(row.key, 4));
        assert.equal(row.value, 400 / 40);
      }
      const buckets = (await readFile(join(dir, 'x', 'per-key/buckets.ndjson'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      assert.ok(buckets.every((r) => typeof r.mapKey === 'number' && typeof r.value === 'number'));
      assert.equal(
        buckets.reduce((s, r) => s + r.value, 0),
        400,
      );

      // Bootstrap a job with 2 partitions from the files; the counts continue from the imported values.
      await importSavepointFromDirectory(storage, 'boot', join(dir, 'x'), {
        as: 'start',
        partitions: () => 2,
      });
      const out = new CollectedOutput<string>();
      const sink = new CollectingSink('out', out);
      const job = runJob(graphOf('boot', byKey(records(400, 80), 2), sink), {
        storage,
        checkpoints: { intervalMs: 0 },
        savepoint: 'start',
      });
      await until(() => sink.written >= 80, '80 records');
      await job.savepoint('after');
      await job.stop();
      const after = stateOf(await readJobSavepoint(storage, 'boot', taskIds(2), 'after'));
      for (const k of KEYS) assert.equal(after.keyed[`per-key/count ${k}`], 12, k);
      assert.equal(after.seen, 480);

      // Bad input.
      const bad = join(dir, 'x', 'per-key/count.ndjson');
      const lines = (await readFile(bad, 'utf8')).trim().split('\n');
      lines[2] = JSON.stringify({ key: 'k99', value: 'ten', keyGroup: 0 });
      await writeFile(bad, `${lines.join('\n')}\n`);
      await assert.rejects(
        importSavepointFromDirectory(storage, 'boot', join(dir, 'x'), { as: 'bad', partitions: () => 2 }),
        (e) =>
          isStreamError(e, 'SAVEPOINT_DATA_INVALID') &&
          /per-key\/count\.ndjson:3: value is "ten", expected a number/.test(e.message),
      );
      lines[2] = '{"key": "k99", "value": 1';
      await writeFile(bad, `${lines.join('\n')}\n`);
      await assert.rejects(
        importSavepointFromDirectory(storage, 'boot', join(dir, 'x'), { as: 'bad', partitions: () => 2 }),
        (e) => isStreamError(e, 'SAVEPOINT_DATA_INVALID') && /count\.ndjson:3: not JSON/.test(e.message),
      );
      lines[2] = JSON.stringify({ key: 'k1', value: 3 });
      await writeFile(bad, `${lines.join('\n')}\n`);
      await assert.rejects(
        importSavepointFromDirectory(storage, 'boot', join(dir, 'x'), { as: 'bad', partitions: () => 2 }),
        (e) =>
          isStreamError(e, 'SAVEPOINT_DATA_INVALID') &&
          /count\.ndjson:\d+: key "k1" is given twice \(first on line 3\)/.test(e.message),
      );
      lines.splice(2, 1);
      await writeFile(bad, `${lines.join('\n')}\n`);
      await writeFile(join(dir, 'x', 'per-key', 'extra.ndjson'), '{"key":"a","value":1}\n');
      await assert.rejects(
        importSavepointFromDirectory(storage, 'boot', join(dir, 'x'), { as: 'bad', partitions: () => 2 }),
        (e) =>
          isStreamError(e, 'SAVEPOINT_DATA_INVALID') &&
          /extra\.ndjson: savepoint\.json does not describe this file/.test(e.message),
      );
      await rm(join(dir, 'x', 'per-key', 'extra.ndjson'));
      await assert.rejects(
        importSavepointFromDirectory(storage, 'boot', join(dir, 'x'), {
          as: 'bad',
          partitions: () => 2,
          known: new Map([
            ['per-key', new Set(['count', 'sum'])],
            ['seen', undefined],
          ]),
        }),
        (e) =>
          isStreamError(e, 'SAVEPOINT_DATA_INVALID') &&
          /operator 'per-key' has no state '(buckets|recent)'/.test(e.message),
      );
      const mPath = join(dir, 'x', 'savepoint.json');
      const m = JSON.parse(await readFile(mPath, 'utf8'));
      await writeFile(mPath, JSON.stringify({ ...m, version: 2 }));
      await assert.rejects(
        importSavepointFromDirectory(storage, 'boot', join(dir, 'x'), { as: 'bad', partitions: () => 2 }),
        (e) =>
          isStreamError(e, 'SNAPSHOT_FORMAT_UNSUPPORTED') &&
          /has version 2; this build reads version 1/.test(e.message),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('values JSON cannot hold round-trip through tagged JSON', () => {
    const values: unknown[] = [
      1,
      'a',
      null,
      [1, [2]],
      { a: 1, b: { c: [1] } },
      Number.NaN,
      Number.NEGATIVE_INFINITY,
      undefined,
      123456789012345678901234567890n,
      new Date(1_700_000_000_000),
      new Uint8Array([0, 255]),
      new Float64Array([1.5, -2]),
      new Map<unknown, unknown>([
        ['x', 1],
        [2, new Set([3])],
      ]),
      { $map: 'not a tag' },
    ];
    for (const v of values) {
      const j = JSON.parse(JSON.stringify(toJsonValue(v)) ?? 'null');
      assert.deepEqual(fromJsonValue(j), v);
    }
    assert.throws(() => fromJsonValue({ $nope: 1 }), /unknown tag "\$nope"/);
  });
});
