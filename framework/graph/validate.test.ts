import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError } from '../api/errors.ts';
import { StreamJob } from '../datastream/index.ts';
import { CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { planJob } from './plan.ts';
import type { JobGraph } from './types.ts';
import { validateGraph } from './validate.ts';

const src = (uid: string, partitions = 2) =>
  new TestSource<number>(
    uid,
    Array.from({ length: partitions }, () => []),
  );
const invalid = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(isStreamError(e, 'GRAPH_INVALID'), String(e));
    assert.match(e.message, pattern);
    return true;
  });

describe('job graph validation', () => {
  test('a valid job builds and splits into stages by connectivity', () => {
    const job = new StreamJob('ok');
    job
      .source(src('a'))
      .map((x) => x + 1)
      .sinkTo(new CollectingSink('s1'));
    job
      .source(src('b', 3))
      .filter((x) => x > 0)
      .sinkTo(new CollectingSink('s2'));
    const plan = planJob(job.build());
    assert.deepEqual(
      plan.stages.map((s) => s.partitions),
      [2, 3],
    );
  });

  test('uid collisions name both operators', () => {
    const job = new StreamJob('dup');
    const s = job.source(src('a'));
    s.process({ processElement() {} }, { uid: 'same' }).sinkTo(new CollectingSink('same'));
    invalid(
      () => job.build(),
      /uid 'same' is used by both operator 'same' \(process #1\) and operator 'same' \(sink #2\)/,
    );
  });

  test('a stateful operator without an explicit uid is refused', () => {
    const job = new StreamJob('nouid');
    job
      .source(src('a'))
      .process({ processElement() {} }, { uid: undefined as unknown as string })
      .sinkTo(new CollectingSink('s'));
    invalid(() => job.build(), /holds state but has no explicit uid/);
  });

  test('keyed operators without keyBy, and cycles, are refused', () => {
    const job = new StreamJob('raw');
    job.source(src('a')).sinkTo(new CollectingSink('s'));
    const g = job.build();
    const keyedWithoutKey: JobGraph = {
      ...g,
      nodes: [
        g.nodes[0]!,
        {
          id: 1,
          uid: 'k',
          uidExplicit: true,
          spec: { kind: 'keyedProcess', fn: { processElement() {} } },
          inputs: [{ from: 0 }],
        },
        { ...g.nodes[1]!, id: 2, inputs: [{ from: 1 }] },
      ],
    };
    invalid(
      () => validateGraph(keyedWithoutKey),
      /operator 'k' \(keyedProcess #1\) uses keyed state and timers but its input is not keyed: call keyBy/,
    );
    const cyclic: JobGraph = {
      ...g,
      nodes: [
        g.nodes[0]!,
        { id: 1, uid: 'm1', uidExplicit: false, spec: { kind: 'union' }, inputs: [{ from: 0 }, { from: 2 }] },
        { id: 2, uid: 'm2', uidExplicit: false, spec: { kind: 'map', fn: (x) => x }, inputs: [{ from: 1 }] },
        { ...g.nodes[1]!, id: 3, inputs: [{ from: 2 }] },
      ],
    };
    invalid(() => validateGraph(cyclic), /cycle through operator 'm1'.*operator 'm2'/);
  });

  test('a job without a sink, and sources that are not co-partitioned, are refused', () => {
    const job = new StreamJob('nosink');
    job.source(src('a')).map((x) => x);
    invalid(() => job.build(), /has no sink/);
    const j2 = new StreamJob('copart');
    j2.source(src('a', 2))
      .union(j2.source(src('b', 3)))
      .sinkTo(new CollectingSink('s'));
    invalid(() => planJob(j2.build()), /'a' \(2 partitions\) and 'b' \(3 partitions\).*not co-partitioned/);
  });

  test('a broadcast stream can only feed a keyed broadcast connection; job ids are checked', () => {
    const job = new StreamJob('bc');
    const rules = job.source(src('rules'));
    rules.broadcast('rules');
    rules.map((x) => x).sinkTo(new CollectingSink('s'));
    job.source(src('a')).sinkTo(new CollectingSink('s2'));
    invalid(() => job.build(), /reads broadcast source operator 'rules'/);
    assert.throws(
      () => new StreamJob('no spaces'),
      (e: unknown) => isStreamError(e, 'CONFIG_INVALID'),
    );
  });
});
