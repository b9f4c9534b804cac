import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError } from '../api/errors.ts';
import type { OperatorSnapshot } from '../runtime/operators/types.ts';
import { type ChannelPosition, TASK_SNAPSHOT_FORMAT } from '../runtime/snapshot-io.ts';
import type { KeyedStateSnapshotEntry } from '../state/backend.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';
import { restructureJob, type TargetStage } from './restructure.ts';
import type { StageSavepoint, TaskSavepoint } from './savepoint-io.ts';

const KEYS = Array.from({ length: 60 }, (_, i) => `k${i}`);
const bytes = (s: string) => new TextEncoder().encode(s);
const meta = (name: string) => ({
  name,
  kind: 'value' as const,
  serializerId: 'msgpack',
  serializerVersion: 1,
});

/** An old stage of `n` tasks; key k's state and timer in task keyGroupOf(k, n); source `src` at offset 10 + p. */
function oldStage(
  stage: string,
  n: number,
  o: {
    states?: string[];
    timers?: string;
    opState?: { uid: string; name: string; mode: 'split' | 'union' | 'broadcast'; perTask: number };
    sources?: string[];
    broadcast?: string;
    committables?: string;
    inflight?: number;
  } = {},
): StageSavepoint {
  const tasks: TaskSavepoint[] = Array.from({ length: n }, (_, p) => {
    const mine = KEYS.filter((k) => keyGroupOf(keyId(k), n) === p);
    const states: KeyedStateSnapshotEntry[] = (o.states ?? []).map((name) => ({
      meta: meta(name),
      entries: mine.map((k) => [keyId(k), bytes(`${name}:${k}`)] as const),
    }));
    const operators: Record<string, OperatorSnapshot> = {};
    if (o.timers)
      operators[o.timers] = { timers: { event: mine.map((k) => [1000, keyId(k)]), processing: [] } };
    if (o.opState) {
      operators[o.opState.uid] = {
        ...operators[o.opState.uid],
        operatorState: {
          formatVersion: 1,
          states: [
            {
              name: o.opState.name,
              mode: o.opState.mode,
              serializerId: 'msgpack',
              serializerVersion: 1,
              elements: Array.from({ length: o.opState.perTask }, (_, i) => bytes(`${p}.${i}`)),
            },
          ],
        },
      };
    }
    if (o.committables) operators[o.committables] = { committables: [[p + 1, `txn-${p}`]] };
    const channels: ChannelPosition[] = (o.sources ?? []).map((source) => ({
      source,
      partition: p,
      position: 10 + p,
      inflight: o.inflight ?? 0,
    }));
    const inflight = channels.map(() =>
      Array.from({ length: o.inflight ?? 0 }, (_, i) => ({ value: `r${p}.${i}`, timestamp: i })),
    );
    if (o.broadcast) {
      for (let q = 0; q < 2; q++) {
        channels.push({ source: o.broadcast, partition: q, position: 100 * (p + 1) + q, inflight: 0 });
        inflight.push([]);
      }
    }
    return {
      taskId: `${stage}-p${p}`,
      checkpointId: 7,
      timestamp: 1,
      payload: {
        format: TASK_SNAPSHOT_FORMAT,
        stage,
        partition: p,
        partitions: n,
        backend: 'heap',
        unaligned: (o.inflight ?? 0) > 0,
        channels,
        keyedFile: 'k',
        operatorsFile: 'o',
      },
      keyed: { formatVersion: 1, states },
      operators: { format: TASK_SNAPSHOT_FORMAT, operators, inflight },
    };
  });
  return { stage, partitions: n, tasks };
}

describe('restructureJob: state by operator uid across stage boundaries', () => {
  test('an operator moved to a new stage (a repartition added): its keyed state and timers go to the key group of their key there', () => {
    // v1: stage "in" = source in -> count (keyed). v2: stage "in" = source in -> repartition sink; stage "rp" = source rp -> count.
    const old = [oldStage('in', 3, { states: ['count/n', 'count/sum'], timers: 'count', sources: ['in'] })];
    const targets: TargetStage[] = [
      {
        stage: 'in',
        partitions: 3,
        operators: ['in', 'count-out'],
        sources: [{ uid: 'in', broadcast: false }],
      },
      {
        stage: 'rp',
        partitions: 5,
        operators: ['rp', 'count', 'out'],
        sources: [{ uid: 'rp', broadcast: false }],
      },
    ];
    const r = restructureJob(old, targets, { knownUids: ['in', 'count', 'out'] });
    assert.equal(r.moved, true);
    assert.deepEqual(r.unclaimed, []);
    const [inStage, rp] = r.stages;
    // The old stage keeps its source positions and has no keyed state any more.
    assert.deepEqual(
      inStage!.tasks.map((t) => t.channels.map((c) => c.position)),
      [[10], [11], [12]],
    );
    assert.ok(inStage!.tasks.every((t) => t.keyed.states.length === 0));
    // The new stage: 5 tasks; every key once, in keyGroupOf(key, 5), bytes unchanged; timers with their key.
    assert.equal(rp!.tasks.length, 5);
    for (const name of ['count/n', 'count/sum']) {
      const seen = new Map<string, number>();
      rp!.tasks.forEach((t, p) => {
        for (const [k, b] of t.keyed.states.find((s) => s.meta.name === name)!.entries) {
          assert.equal(keyGroupOf(k, 5), p, `${name} ${k}`);
          assert.equal(new TextDecoder().decode(b), `${name}:${k}`);
          assert.ok(!seen.has(k));
          seen.set(k, p);
        }
      });
      assert.equal(seen.size, KEYS.length);
    }
    rp!.tasks.forEach((t, p) => {
      const timers = t.operators.operators.count!.timers!.event;
      assert.ok(timers.length > 0);
      for (const [, k] of timers) assert.equal(keyGroupOf(k, 5), p);
    });
    // A source the old job did not read has no position (it starts where it starts without a checkpoint).
    assert.ok(rp!.tasks.every((t) => t.channels.length === 0));
  });

  test('a new source gets the position startPosition gives (a repartition topic: its end)', () => {
    const old = [oldStage('in', 2, { states: ['count/n'], sources: ['in'] })];
    const targets: TargetStage[] = [
      { stage: 'in', partitions: 2, operators: ['in'], sources: [{ uid: 'in', broadcast: false }] },
      { stage: 'rp', partitions: 2, operators: ['rp', 'count'], sources: [{ uid: 'rp', broadcast: false }] },
    ];
    const r = restructureJob(old, targets, {
      startPosition: (q) => (q.source === 'rp' ? { end: q.partition } : undefined),
    });
    assert.deepEqual(
      r.stages[1]!.tasks.map((t) => t.channels),
      [0, 1].map((p) => [{ source: 'rp', partition: p, position: { end: p }, inflight: 0 }]),
    );
  });

  test('operator state follows its uid: split redistributed over the new count, committables j mod m, union whole', () => {
    const old = [
      oldStage('a', 4, {
        sources: ['a'],
        opState: { uid: 'seen', name: 'seen', mode: 'split', perTask: 3 },
        committables: 'sink',
      }),
    ];
    const targets: TargetStage[] = [
      {
        stage: 'b',
        partitions: 3,
        operators: ['b', 'seen', 'sink'],
        sources: [{ uid: 'b', broadcast: false }],
      },
    ];
    const r = restructureJob(old, targets);
    const tasks = r.stages[0]!.tasks;
    const counts = tasks.map((t) => t.operators.operators.seen!.operatorState!.states[0]!.elements.length);
    assert.deepEqual(counts, [4, 4, 4]); // 12 elements, ranges differing by at most one
    assert.deepEqual(
      tasks.map((t) => (t.operators.operators.sink!.committables ?? []).map(([, c]) => c)),
      [['txn-0', 'txn-3'], ['txn-1'], ['txn-2']],
    );
    // Source 'a' is gone: without a backlog it had consumed everything: nothing unclaimed.
    assert.deepEqual(r.unclaimed, []);
  });

  test('state no operator claims is listed by uid and state; states without entries are not', () => {
    const old = [
      oldStage('in', 2, {
        states: ['window/contents', 'count/n'],
        timers: 'window',
        sources: ['in'],
        opState: { uid: 'window', name: 'buffer', mode: 'union', perTask: 2 },
      }),
    ];
    // An empty registered state of a removed operator is nothing lost, and neither are the
    // committables of a sink that commits with the checkpoint itself (Kafka: undefined).
    (old[0]!.tasks[0]!.keyed.states as KeyedStateSnapshotEntry[]).push({
      meta: meta('gone/empty'),
      entries: [],
    });
    for (const t of old[0]!.tasks) {
      const ops = t.operators.operators as Record<string, OperatorSnapshot>;
      ops['kafka-out'] = { committables: [[7, undefined]] };
      ops['files-out'] = { committables: [[7, { txn: t.taskId }]] };
    }
    const targets: TargetStage[] = [
      { stage: 'in', partitions: 2, operators: ['in', 'count'], sources: [{ uid: 'in', broadcast: false }] },
    ];
    const r = restructureJob(old, targets, { knownUids: ['in', 'window', 'count'] });
    assert.deepEqual(r.unclaimed, [
      {
        uid: 'files-out',
        stage: 'in',
        kind: 'operator',
        parts: ['2 sink committables not known to be committed'],
      },
      {
        uid: 'window',
        stage: 'in',
        kind: 'operator',
        parts: [
          `keyed state 'contents' (${KEYS.length} keys)`,
          `${KEYS.length} timers`,
          "operator state 'buffer' (union, 4 elements)",
        ],
      },
    ]);
    // count's state stays where it was (same stage, same partitions): nothing moved, only dropped.
    assert.equal(r.moved, false);
  });

  test('a removed source with records it had not consumed (a removed repartition edge) is unclaimed', () => {
    const old = [
      oldStage('in', 2, { sources: ['in'] }),
      oldStage('rp', 2, { sources: ['rp'], states: ['c/n'] }),
    ];
    const targets: TargetStage[] = [
      { stage: 'in', partitions: 2, operators: ['in', 'c'], sources: [{ uid: 'in', broadcast: false }] },
    ];
    const r = restructureJob(old, targets, {
      backlog: (q) => (q.source === 'rp' && q.partition === 1 ? 5 : 0),
    });
    assert.deepEqual(r.unclaimed, [
      { uid: 'rp', stage: 'rp', kind: 'source', parts: ['5 records of partition 1 not consumed'] },
    ]);
    // c's keyed state moved from stage rp to stage in.
    const total = r.stages[0]!.tasks.reduce((n, t) => n + t.keyed.states[0]!.entries.length, 0);
    assert.equal(total, KEYS.length);
  });

  test('same layout, stateless change: nothing moves (no savepoint needed)', () => {
    const old = [oldStage('in', 3, { states: ['count/n'], timers: 'count', sources: ['in'] })];
    const targets: TargetStage[] = [
      {
        stage: 'in',
        partitions: 3,
        operators: ['in', 'count', 'out'],
        sources: [{ uid: 'in', broadcast: false }],
      },
    ];
    const r = restructureJob(old, targets);
    assert.equal(r.moved, false);
    assert.deepEqual(r.unclaimed, []);
    // ... and the content is each task's own.
    r.stages[0]!.tasks.forEach((t, p) => {
      assert.deepEqual(t.keyed.states[0]!.entries, old[0]!.tasks[p]!.keyed.states[0]!.entries);
      assert.deepEqual(t.channels, old[0]!.tasks[p]!.payload.channels);
    });
  });

  test('in-flight records of an unaligned checkpoint move with their channel', () => {
    const old = [oldStage('a.b', 2, { sources: ['a', 'b'], inflight: 2, states: ['j/x'] })];
    // The join is split: a alone, b alone (j now reads b).
    const targets: TargetStage[] = [
      { stage: 'a', partitions: 2, operators: ['a'], sources: [{ uid: 'a', broadcast: false }] },
      { stage: 'b', partitions: 2, operators: ['b', 'j'], sources: [{ uid: 'b', broadcast: false }] },
    ];
    const r = restructureJob(old, targets);
    for (const [s, src] of [
      [0, 'a'],
      [1, 'b'],
    ] as const) {
      r.stages[s]!.tasks.forEach((t, p) => {
        assert.deepEqual(t.channels, [{ source: src, partition: p, position: 10 + p, inflight: 2 }]);
        assert.deepEqual(t.operators.inflight, [[0, 1].map((i) => ({ value: `r${p}.${i}`, timestamp: i }))]);
      });
    }
  });

  test('broadcast source positions come from old task 0, for every task of its new stage', () => {
    const old = [oldStage('in', 2, { sources: ['in'], broadcast: 'rules' })];
    const targets: TargetStage[] = [
      {
        stage: 'x',
        partitions: 3,
        operators: ['x', 'rules'],
        sources: [
          { uid: 'x', broadcast: false },
          { uid: 'rules', broadcast: true },
        ],
      },
    ];
    const r = restructureJob(old, targets, { broadcastSources: ['rules'] });
    for (const t of r.stages[0]!.tasks)
      assert.deepEqual(
        t.channels.map((c) => c.position),
        [100, 101],
      );
  });

  test("a stage's new partitioner re-places its keys (producers moved to librdkafka's crc32)", () => {
    const old = [oldStage('in', 4, { states: ['count/n'], timers: 'count', sources: ['in'] })];
    const target: TargetStage = {
      stage: 'in',
      partitions: 4,
      operators: ['in', 'count'],
      sources: [{ uid: 'in', broadcast: false }],
      partitioner: 'crc32',
    };
    const r = restructureJob(old, [target]);
    assert.equal(r.moved, true);
    assert.equal(r.stages[0]!.partitioner, 'crc32');
    r.stages[0]!.tasks.forEach((t, p) => {
      for (const [k] of t.keyed.states[0]!.entries) assert.equal(keyGroupOf(k, 4, 'crc32'), p);
      for (const [, k] of t.operators.operators.count!.timers!.event)
        assert.equal(keyGroupOf(k, 4, 'crc32'), p);
    });
  });

  test('refused: raw state over another partition count; a source whose partition count changed', () => {
    const withRaw = oldStage('a', 2, { sources: ['a'] });
    (withRaw.tasks[1]!.operators.operators as Record<string, OperatorSnapshot>).proc = { raw: bytes('x') };
    assert.throws(
      () =>
        restructureJob(
          [withRaw],
          [
            {
              stage: 'b',
              partitions: 3,
              operators: ['b', 'proc'],
              sources: [{ uid: 'b', broadcast: false }],
            },
          ],
        ),
      (e: unknown) =>
        isStreamError(e, 'RESCALE_UNSUPPORTED') && /'proc' keeps raw state/.test((e as Error).message),
    );
    assert.throws(
      () =>
        restructureJob(
          [oldStage('a', 2, { sources: ['a'] })],
          [{ stage: 'a', partitions: 4, operators: ['a'], sources: [{ uid: 'a', broadcast: false }] }],
        ),
      (e: unknown) =>
        isStreamError(e, 'RESCALE_UNSUPPORTED') && /source 'a' had 2 partitions/.test((e as Error).message),
    );
  });
});
