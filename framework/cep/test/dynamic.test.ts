import assert from 'node:assert/strict';
import { test } from 'node:test';
import { outputTag } from '../../api/functions.ts';
import type { SourceRecord } from '../../api/source.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../datastream/index.ts';
import { runJob } from '../../runtime/job.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import {
  DYNAMIC_PATTERNS_STATE,
  dynamicCep,
  type PatternRejection,
  type PatternUpdate,
  readRecord,
} from '../dynamic.ts';
import type { CepMatch } from '../engine.ts';
import type { PatternJson } from '../json/pattern-json.ts';

/**
 * Done-when (c), in process: patterns arrive on a broadcast stream and are swapped in a running job.
 * Matches of the old version come before the swap, of the new one after it; the partial match of a
 * pattern that did not change survives the swap; a malformed pattern is rejected and changes nothing.
 */
interface Ev {
  readonly key: string;
  readonly type: string;
  readonly n: number;
}

const seq = (a: string, join: 'followedBy' | 'next', b: string, within = 1000): PatternJson => ({
  within,
  stages: [
    { name: 'first', where: { '==': [{ field: 'type' }, a] } },
    { name: 'second', join, where: { '==': [{ field: 'type' }, b] } },
  ],
});

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ev = (key: string, type: string, n: number): SourceRecord<Ev> => ({
  value: { key, type, n },
  timestamp: n,
});

test('a pattern swap takes effect in a running job; unchanged patterns keep their partial matches', async () => {
  const patterns = new TestSource<unknown>('patterns', [[]], { bounded: false, reportIdle: true });
  const events = new TestSource<Ev>('events', [[]], { bounded: false, reportIdle: true });
  const rejected = outputTag<PatternRejection>('rejected');
  const updates = outputTag<PatternUpdate>('updates');
  const logged: string[] = [];
  const job = new StreamJob('cep-dynamic');
  const matches = job
    .source(events, { watermarks: { maxOutOfOrdernessMs: 0 } })
    .keyBy((e) => e.key)
    .connect(job.source(patterns).broadcast(DYNAMIC_PATTERNS_STATE))
    .process(dynamicCep<string, Ev>({ rejected, updates, log: (m) => logged.push(m) }), { uid: 'cep' });
  const out = new CollectingSink<CepMatch<Ev>>('matches');
  const rejections = new CollectingSink<PatternRejection>('rejections');
  const accepted = new CollectingSink<PatternUpdate>('updates');
  matches.sinkTo(out);
  matches.getSideOutput(rejected).sinkTo(rejections);
  matches.getSideOutput(updates).sinkTo(accepted);
  const running = runJob(job.build(), {
    storage: new MemoryCheckpointStorage(),
    checkpoints: { intervalMs: 20 },
  });
  const got = () =>
    out.output.committed.map(
      (m) =>
        `${m.pattern}@${m.version} ${Object.values(m.events)
          .flat()
          .map((e) => `${e.type}${e.n}`)
          .join(' ')}`,
    );
  try {
    // v1 of 'ab' (a then b) and 'xy' (x then y, wide window) arrive as JSON text and as an object.
    patterns.append(0, [
      { value: JSON.stringify({ id: 'ab', version: 1, pattern: seq('a', 'followedBy', 'b') }) },
      { value: { id: 'xy', version: 1, pattern: seq('x', 'followedBy', 'y') } },
    ]);
    await until(() => accepted.output.committed.length === 2, 'two patterns active');
    // Before the swap: a1 b2 match ab@1; x3 starts a partial match of xy, a5 one of ab@1; t10 moves
    // the watermark past them.
    events.append(0, [ev('k', 'a', 1), ev('k', 'b', 2), ev('k', 'x', 3), ev('k', 'a', 5), ev('k', 't', 10)]);
    await until(() => got().length === 1, 'the match of ab@1');
    assert.deepEqual(got(), ['ab@1 a1 b2']);

    // The swap: ab v2 is "a then c"; a malformed update of xy is rejected and xy@1 stays.
    patterns.append(0, [
      { value: { id: 'ab', version: 2, pattern: seq('a', 'followedBy', 'c') } },
      {
        value: {
          id: 'xy',
          version: 2,
          pattern: { within: 10, stages: [{ name: 'x', where: { '>': [{ field: 'n' }, 5] }, times: 0 }] },
        },
      },
      { value: { id: 'ab', version: 1, pattern: seq('a', 'followedBy', 'b') } },
      { value: '{not json' },
    ]);
    await until(
      () => accepted.output.committed.length === 3 && rejections.output.committed.length === 3,
      'swap',
    );
    assert.deepEqual(accepted.output.committed.at(-1), { id: 'ab', version: 2, status: 'active' });
    const errs = rejections.output.committed;
    assert.equal(errs[0]!.id, 'xy');
    assert.match(
      errs[0]!.message,
      /pattern 'xy' version 2: \$\.pattern\.stages\[0\]\.times: must be a whole number >= 1/,
    );
    assert.match(errs[1]!.message, /\$\.version: version 1 is older than the running version 2/);
    assert.match(errs[2]!.message, /\$: not JSON/);
    assert.equal(logged.length, 3);

    // After the swap: a5 b12 and a11 b12 would have matched ab@1 and must not; a11 c13 matches ab@2, and
    // a5 c13 must not (a5 was a partial match of ab@1, dropped); y14 completes xy@1's partial match
    // that began before the swap (x3).
    events.append(0, [
      ev('k', 'a', 11),
      ev('k', 'b', 12),
      ev('k', 'c', 13),
      ev('k', 'y', 14),
      ev('k', 't', 30),
    ]);
    await until(() => got().length === 3, 'matches after the swap');
    assert.deepEqual(got(), ['ab@1 a1 b2', 'ab@2 a11 c13', 'xy@1 x3 y14']);

    // Removing a pattern drops its partial matches: x31 would pair with y33.
    events.append(0, [ev('k', 'x', 31)]);
    patterns.append(0, [{ value: { id: 'xy', version: 3, pattern: null } }]);
    await until(() => accepted.output.committed.length === 4, 'removal');
    events.append(0, [ev('k', 'y', 33), ev('k', 'a', 34), ev('k', 'c', 35), ev('k', 't', 50)]);
    await until(() => got().length === 4, 'the last match');
    assert.deepEqual(got().slice(3), ['ab@2 a34 c35']);
  } finally {
    await running.stop();
  }
});

test('pattern records: envelope errors name their JSON path', () => {
  const errs = (r: unknown) => {
    const x = readRecord(r);
    return 'errors' in x ? x.errors.map((e) => `${e.path}: ${e.message}`) : [];
  };
  assert.deepEqual(errs({ id: 'p', version: 1, pattern: null }), []);
  assert.deepEqual(errs(new TextEncoder().encode('{"id":"p","version":0,"pattern":null}')), []);
  assert.match(errs([1])[0]!, /^\$: a pattern record is an object/);
  assert.match(errs({ id: 'p p', version: 1, pattern: null })[0]!, /^\$\.id: must be a name/);
  assert.match(errs({ id: 'p', version: -1, pattern: null })[0]!, /^\$\.version: must be a whole number/);
  assert.match(errs({ id: 'p', version: 1 })[0]!, /^\$\.pattern: is required/);
  assert.match(errs({ id: 'p', version: 1, pattern: null, x: 1 })[0]!, /^\$\.x: unknown key/);
});
