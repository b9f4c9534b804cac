/**
 * Queries while a task's level backend closes: the registry must stop answering from a backend
 * before it closes (503 "not live", retried by the caller), never answer 404 "no keyed state" for a
 * state that exists. Two teardowns without a job-level stop: (1) a bounded task that ends its input
 * (the task closes its backend itself, after the final checkpoint); (2) runJob failing, which aborts
 * the other tasks. Each query runs on its own event-loop turn, so a close in between is seen.
 * (Found by review of the queries split: both failed before `taskEnding` was sent on these paths.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { valueState } from '../api/descriptors.ts';
import { StreamError } from '../api/errors.ts';
import type { KeyedProcessFunction } from '../api/functions.ts';
import { MemoryCheckpointStorage } from '../checkpoint/storage/memory.ts';
import { StreamJob } from '../datastream/index.ts';
import { runJob } from '../runtime/job.ts';
import { levelBackend } from '../state/backends/level/level.ts';
import { CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { StateQueries } from './queries.ts';
import { StateQueryRegistry } from './query-registry.ts';
import { localRouting } from './query-routing.ts';

interface Ev {
  readonly k: string;
  readonly boom?: boolean;
}

const count: KeyedProcessFunction<string, Ev, never> = {
  processElement(e, ctx) {
    if (e.boom) throw new StreamError('CONFIG_INVALID', 'boom');
    const s = ctx.getState(valueState<number>('count'));
    s.update((s.value() ?? 0) + 1);
  },
};

/** The distinct answers (status and error) a query got, in order, while the job ran and after. */
async function answers(name: string, parts: { value: Ev }[][], bounded: boolean, key: string) {
  const registry = new StateQueryRegistry();
  const job = new StreamJob(name);
  job
    .source(new TestSource<Ev>('input', parts, { bounded }))
    .keyBy((e) => e.k)
    .process(count, { uid: 'c' })
    .sinkTo(new CollectingSink('out'));
  const running = runJob(job.build(), {
    storage: new MemoryCheckpointStorage(),
    backend: registry.track(levelBackend(mkdtempSync(join(tmpdir(), 'query-close-')))),
    listener: registry.listener(),
    restart: { kind: 'none' },
  });
  const queries = new StateQueries({
    jobId: name,
    plan: () => running.plan,
    registry,
    routing: localRouting,
    retryMs: 0,
  });
  const seen: string[] = [];
  let done = false;
  running.done.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 200_000 && !done; i++) {
    const a = await queries.query({ operator: 'c', state: 'count', key });
    const s = `${a.status}${a.status === 200 ? '' : ` ${String(a.body.error).slice(0, 60)}`}`;
    if (seen.at(-1) !== s) seen.push(s);
    await new Promise((r) => setImmediate(r));
  }
  const a = await queries.query({ operator: 'c', state: 'count', key });
  seen.push(`after done: ${a.status} ${String(a.body.error ?? '').slice(0, 60)}`);
  return seen;
}

test('a query while a bounded task ends its input never answers 404 for a state that exists', async () => {
  const records = Array.from({ length: 3000 }, () => ({ value: { k: 'a' } }));
  const seen = await answers('bounded', [records], true, 'a');
  assert.ok(seen.includes('200'), JSON.stringify(seen));
  assert.deepEqual(
    seen.filter((s) => s.startsWith('404') || s.includes(': 404')),
    [],
    JSON.stringify(seen),
  );
});

test('after runJob failed, a query of the aborted task answers 503, not 404', async () => {
  const p0 = Array.from({ length: 50 }, () => ({ value: { k: 'a' } }));
  const p1 = [
    ...Array.from({ length: 200 }, () => ({ value: { k: 'b' } })),
    { value: { k: 'b', boom: true } },
  ];
  const seen = await answers('failing', [p0, p1], false, 'a');
  assert.match(seen.at(-1)!, /^after done: 503/, JSON.stringify(seen));
});
