import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isStreamError } from '../api/errors.ts';
import type { KeyedProcessFunction } from '../api/functions.ts';
import type { Partitioner } from '../api/keys.ts';
import type { Source } from '../api/source.ts';
import { StreamJob } from '../datastream/index.ts';
import { CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { planJob } from './plan.ts';

/** A two-partition source whose producers used `partitioner`. */
function src(uid: string, partitioner?: Partitioner): Source<{ k: string }> {
  const s = new TestSource<{ k: string }>(uid, [[], []]);
  return partitioner === undefined ? s : Object.assign(s, { partitioner });
}

const pass: KeyedProcessFunction<string, { k: string }, { k: string }> = {
  processElement: (v, _ctx, out) => out.collect(v),
};
const pass2 = {
  processElement1: (v: { k: string }, _ctx: unknown, out: { collect(v: { k: string }): void }) =>
    out.collect(v),
  processElement2: (v: { k: string }, _ctx: unknown, out: { collect(v: { k: string }): void }) =>
    out.collect(v),
};

describe("a stage's partitioner", () => {
  test('is the partitioner of the sources upstream of its keyed inputs; murmur2 by default and without keyed inputs', () => {
    const job = new StreamJob('p');
    job
      .source(src('crc', 'crc32'))
      .map((v) => v)
      .keyBy((v) => v.k)
      .process(pass, { uid: 'count' })
      .sinkTo(new CollectingSink('out'));
    job.source(src('plain')).sinkTo(new CollectingSink('out2'));
    job.source(src('fnv', 'fnv1a')).sinkTo(new CollectingSink('out3'));
    assert.deepEqual(
      planJob(job.build()).stages.map((s) => s.partitioner),
      ['crc32', 'murmur2', 'murmur2'],
    );
  });

  test('keyed inputs of one stage with different partitioners are GRAPH_INVALID at build, saying what to do', () => {
    const job = new StreamJob('p');
    const a = job.source(src('clicks', 'crc32')).keyBy((v) => v.k);
    const b = job.source(src('orders')).keyBy((v) => v.k);
    a.connect(b).process(pass2, { uid: 'join' }).sinkTo(new CollectingSink('out'));
    assert.throws(
      () => job.build(),
      (e: unknown) => {
        assert.ok(isStreamError(e, 'GRAPH_INVALID'), String(e));
        assert.match(
          e.message,
          /partitioned by different partitioners: source 'clicks' \(crc32\); source 'orders' \(murmur2\)\. .* repartition source 'clicks' with keyBy\(selector, \{ repartition: true \}\)/,
        );
        return true;
      },
    );
  });

  test("a repartitioned input is murmur2 (the job's own sink writes it), so repartitioning the other side fixes it", () => {
    const job = new StreamJob('p');
    const a = job.source(src('clicks', 'crc32')).keyBy((v) => v.k, { repartition: true });
    const b = job.source(src('orders')).keyBy((v) => v.k);
    a.connect(b).process(pass2, { uid: 'join' }).sinkTo(new CollectingSink('out'));
    job.build();
    const c = new StreamJob('q');
    const x = c.source(src('clicks', 'crc32')).keyBy((v) => v.k);
    const y = c.source(src('more-clicks', 'crc32')).keyBy((v) => v.k, { repartition: true });
    x.connect(y).process(pass2, { uid: 'join' }).sinkTo(new CollectingSink('out'));
    assert.throws(() => c.build(), /the repartition topic of operator 'join' \(murmur2\)/);
  });

  test('a union of keyed-by-the-same-partitioner sources is fine, a mixed one is not', () => {
    const ok = new StreamJob('u');
    ok.source(src('a', 'crc32'))
      .union(ok.source(src('b', 'crc32')))
      .keyBy((v) => v.k)
      .process(pass, { uid: 'count' })
      .sinkTo(new CollectingSink('out'));
    assert.equal(planJob(ok.build()).stages[0]!.partitioner, 'crc32');
    const mixed = new StreamJob('u');
    mixed
      .source(src('a', 'crc32'))
      .union(mixed.source(src('b', 'fnv1a')))
      .keyBy((v) => v.k)
      .process(pass, { uid: 'count' })
      .sinkTo(new CollectingSink('out'));
    assert.throws(() => mixed.build(), /source 'a' \(crc32\); source 'b' \(fnv1a\)/);
  });
});
