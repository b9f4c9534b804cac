import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SourceRecord } from '../../api/source.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../datastream/index.ts';
import { runJob } from '../../runtime/job.ts';
import { temporaryLevelBackend } from '../../state/backends/level/testing.ts';
import { plannedFaults } from '../../testing/faults.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { DYNAMIC_PATTERNS_STATE, dynamicCep } from '../dynamic.ts';
import type { CepMatch } from '../engine.ts';
import type { PatternJson } from '../json/pattern-json.ts';

/**
 * The dynamic CEP operator across failures: its patterns live in broadcast state and its partial
 * matches in keyed state, and a restored task rebuilds its compiled patterns from the broadcast
 * state. With 60 failures injected at checkpoint points, the committed matches equal a run without
 * failures, on heap and on level.
 */
interface Ev {
  readonly key: string;
  readonly type: string;
  readonly n: number;
}

const PATTERNS: PatternJson[] = [
  {
    within: 60,
    stages: [
      { name: 'a', where: { '==': [{ field: 'type' }, 'a'] } },
      { name: 'b', join: 'followedBy', where: { '==': [{ field: 'type' }, 'b'] }, times: { min: 1, max: 2 } },
      { name: 'c', join: 'followedBy', where: { '==': [{ field: 'type' }, 'c'] } },
    ],
  },
  {
    within: 30,
    stages: [
      { name: 'x', where: { '==': [{ field: 'type' }, 'c'] } },
      { name: 'y', join: 'next', where: { '==': [{ field: 'type' }, 'a'] } },
    ],
  },
];

function events(): SourceRecord<Ev>[] {
  const types = ['a', 'b', 'c', 'b', 'a', 'c', 'c', 'a', 'b'];
  return Array.from({ length: 20_000 }, (_, n) => {
    const key = `k${(n * 7) % 5}`;
    return { value: { key, type: types[(n * 5 + (n >> 3)) % types.length]!, n }, timestamp: n };
  });
}

async function run(faulty: boolean, level: boolean): Promise<{ matches: string[]; faults: number }> {
  const job = new StreamJob(`cep-restore-${faulty}-${level}`);
  const patterns = new TestSource<unknown>('patterns', [
    PATTERNS.map((pattern, i) => ({ value: { id: `p${i}`, version: 1, pattern } })),
  ]);
  const sink = new CollectingSink<CepMatch<Ev>>('matches');
  job
    .source(
      TestSource.byKey('events', events(), (e: Ev) => e.key, 2),
      { watermarks: { maxOutOfOrdernessMs: 0 } },
    )
    .keyBy((e) => e.key)
    .connect(job.source(patterns).broadcast(DYNAMIC_PATTERNS_STATE))
    .process(dynamicCep<string, Ev>({}), { uid: 'cep' })
    .sinkTo(sink);
  const faults = plannedFaults({
    seed: level ? 11 : 7,
    probability: { 'snapshot.capture': 0.4, 'checkpoint.after-commit': 0.4, 'snapshot.write': 0.2 },
    max: 30,
  });
  await runJob(job.build(), {
    storage: new MemoryCheckpointStorage(),
    checkpoints: { intervalMs: 2 },
    restart: { kind: 'fixed-delay', attempts: 1000, delayMs: 0 },
    ...(level ? { backend: () => temporaryLevelBackend() } : {}),
    ...(faulty ? { faults: faults.injector } : {}),
  }).done;
  const matches = sink.output.committed.map(
    (m) =>
      `${m.pattern}@${m.version} ${Object.entries(m.events)
        .map(([stage, es]) => `${stage}:${es.map((e) => `${e.key}/${e.n}`).join(',')}`)
        .join(' ')}`,
  );
  return { matches: matches.sort(), faults: faults.total() };
}

test('dynamic CEP: with 30 injected failures per backend, the committed matches equal a run without failures', async () => {
  const reference = await run(false, false);
  assert.ok(
    reference.matches.length > 100,
    `only ${reference.matches.length} matches: the input is too thin`,
  );
  for (const level of [false, true]) {
    const r = await run(true, level);
    assert.ok(r.faults >= 20, `only ${r.faults} faults were injected`);
    assert.deepEqual(r.matches, reference.matches, level ? 'level' : 'heap');
    console.log(
      `dynamic CEP restore (${level ? 'level' : 'heap'}): ${r.faults} injected failures, ${r.matches.length} matches equal to the run without failures`,
    );
  }
});
