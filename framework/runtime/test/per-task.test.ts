import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Collector, KeyedContext, KeyedProcessFunction } from '../../api/functions.ts';
import { MemoryCheckpointStorage } from '../../checkpoint/storage/memory.ts';
import { StreamJob } from '../../datastream/index.ts';
import { CollectingSink } from '../../testing/sinks.ts';
import { TestSource } from '../../testing/sources.ts';
import { runJob } from '../job.ts';

/** Counts the records it saw in a plain field: per task only if each task has its own instance. */
class FieldCounter implements KeyedProcessFunction<string, string, string> {
  seen = 0;
  processElement(_v: string, ctx: KeyedContext<string>, out: Collector<string>): void {
    this.seen++;
    out.collect(`${ctx.info.partition}:${this.seen}`);
  }
}

async function lastCounts(fn: unknown) {
  const words = Array.from({ length: 400 }, (_, i) => `w${i % 40}`);
  const job = new StreamJob('per-task');
  const sink = new CollectingSink<string>('out');
  job
    .source(
      TestSource.byKey(
        'words',
        words.map((value) => ({ value })),
        (w: string) => w,
        2,
      ),
    )
    .keyBy((w) => w)
    .process(fn as never, { uid: 'count' })
    .sinkTo(sink);
  await runJob(job.build(), { storage: new MemoryCheckpointStorage() }).done;
  const last = new Map<string, number>();
  for (const line of sink.output.committed) {
    const [p, n] = line.split(':');
    last.set(p!, Math.max(last.get(p!) ?? 0, Number(n)));
  }
  return { last };
}

test('a factory or a class gives each task its own function instance; an object is shared by the tasks', async () => {
  const total = 400;
  for (const fn of [() => new FieldCounter(), FieldCounter]) {
    const { last } = await lastCounts(fn);
    // Each task counted only its own records: the two counts add up to the input.
    assert.equal((last.get('0') ?? 0) + (last.get('1') ?? 0), total);
  }
  const shared = await lastCounts(new FieldCounter());
  // One object for both tasks: the highest count seen is the whole input.
  assert.equal(Math.max(...shared.last.values()), total);
});
