/**
 * `kstate inspect --state --key` prints one key's value as the job sees it, in the savepoint export's
 * JSON (Map, Set, Date, bigint, bytes tagged), says so when there is none (69), and names the states
 * there are for an unknown one. A job runs in-process over filesystem checkpoints (heap and level
 * backends), then the CLI runs as a child process over them; no broker is involved.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type Collector,
  FilesystemCheckpointStorage,
  fromJsonValue,
  type KeyedContext,
  type KeyedProcessFunction,
  levelBackend,
  listState,
  mapState,
  runJob,
  StreamJob,
  valueState,
} from '../../../framework/index.ts';
import { CollectedOutput, CollectingSink, TestSource } from '../../../framework/testing/index.ts';

const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url));

interface Rec {
  readonly k: string | number;
  readonly tag: string;
  readonly n: number;
}

/** Per key: tag counts (map), owners by object key (map), the last time, a bigint, a set, bytes, a list with TTL. */
class Everything implements KeyedProcessFunction<string | number, Rec, string> {
  processElement(v: Rec, ctx: KeyedContext<string | number>, out: Collector<string>): void {
    const tags = ctx.getMapState(mapState<string, number>('tags'));
    tags.put(v.tag, (tags.get(v.tag) ?? 0) + 1);
    ctx.getMapState(mapState<{ shard: number }, string>('owners')).put({ shard: v.n % 2 }, v.tag);
    ctx.getState(valueState<Date>('last')).update(new Date(Date.UTC(2024, 0, 1, 0, 0, v.n)));
    const big = ctx.getState(valueState<bigint>('big'));
    big.update((big.value() ?? 12345678901234567890n) + BigInt(v.n));
    const seen = ctx.getState(valueState<Set<string>>('seen'));
    seen.update(new Set([...(seen.value() ?? []), v.tag]));
    ctx.getState(valueState<Uint8Array>('bytes')).update(new Uint8Array([v.n, 255, 0]));
    const recent = ctx.getListState(
      listState<number>('recent', { ttl: { ttlMs: 86_400_000, time: 'processing' } }),
    );
    recent.update([...recent.get(), v.n]);
    out.collect(`${v.k}`);
  }
}

const RECORDS: Rec[] = [
  { k: 'a', tag: 'x', n: 1 },
  { k: 'a', tag: 'y', n: 2 },
  { k: 'a', tag: 'x', n: 3 },
  { k: 7, tag: 'z', n: 4 },
  { k: '7', tag: 'w', n: 5 },
];

function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

for (const backend of ['heap', 'level'] as const) {
  describe(`kstate inspect --state --key (${backend} backend)`, () => {
    let dir: string;
    let env: Record<string, string>;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `inspect-${backend}-`));
      env = {
        KSTATE_CHECKPOINT_DIR: join(dir, 'checkpoints'),
        KSTATE_STATE_DIR: join(dir, 'inspect-scratch'),
        // inspect reads only checkpoint storage; the configuration still needs a broker list.
        KSTATE_BROKERS: '127.0.0.1:9',
      };
      const output = new CollectedOutput<string>();
      const sink = new CollectingSink('out', output);
      const job = new StreamJob('inspected');
      job
        .source(new TestSource('input', [RECORDS.map((value) => ({ value }))], { bounded: false }))
        .keyBy((r) => r.k)
        .process(new Everything(), { uid: 'all' })
        .sinkTo(sink);
      const running = runJob(job.build(), {
        storage: new FilesystemCheckpointStorage({ directory: join(dir, 'checkpoints') }),
        checkpoints: { intervalMs: 0 },
        ...(backend === 'level' ? { backend: levelBackend(join(dir, 'state')) } : {}),
      });
      const end = Date.now() + 30_000;
      while (sink.written < RECORDS.length) {
        if (Date.now() > end) throw new Error(`the job wrote ${sink.written} of ${RECORDS.length} records`);
        await new Promise((r) => setTimeout(r, 10));
      }
      await running.savepoint('sp');
      const stopped = await running.stop({ finalCheckpoint: true });
      assert.equal(stopped.checkpointed, 1);
    });
    after(() => rm(dir, { recursive: true, force: true }));

    const value = async (state: string, key: string) => {
      const r = await cli(['inspect', 'inspected', '--savepoint', 'sp', '--state', state, '--key', key], env);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, 1, r.stdout);
      return JSON.parse(lines[0]!) as {
        task: string;
        state: string;
        key: unknown;
        value: unknown;
        ttl?: unknown;
      };
    };

    test('map state and the values JSON cannot hold print as the savepoint export writes them', async () => {
      const tags = await value('all/tags', 'a');
      assert.deepEqual(tags.value, {
        $map: [
          ['x', 2],
          ['y', 1],
        ],
      });
      assert.deepEqual(
        fromJsonValue(tags.value),
        new Map([
          ['x', 2],
          ['y', 1],
        ]),
      );
      // Object map keys come back as the objects the job put (the level backend orders entries by key).
      assert.deepEqual(
        fromJsonValue((await value('all/owners', 'a')).value),
        new Map([
          [{ shard: 1 }, 'x'],
          [{ shard: 0 }, 'y'],
        ]),
      );
      assert.deepEqual((await value('all/last', 'a')).value, { $date: '2024-01-01T00:00:03.000Z' });
      assert.deepEqual((await value('all/big', 'a')).value, { $bigint: String(12345678901234567890n + 6n) });
      assert.deepEqual((await value('all/seen', 'a')).value, { $set: ['x', 'y'] });
      assert.deepEqual((await value('all/bytes', 'a')).value, {
        $bytes: Buffer.from([3, 255, 0]).toString('base64'),
      });
      const recent = await value('all/recent', 'a');
      assert.deepEqual(recent.value, [1, 2, 3]);
      assert.ok(
        Array.isArray(recent.ttl) &&
          recent.ttl.length === 3 &&
          recent.ttl.every((t) => typeof t === 'number'),
        JSON.stringify(recent),
      );
    });

    test('--key is a string key first, then the same text as JSON', async () => {
      const asString = await value('all/tags', '7');
      assert.equal(asString.key, '7');
      assert.deepEqual(asString.value, { $map: [['w', 1]] });
      const asNumber = await value('all/tags', '7.0');
      assert.equal(asNumber.key, 7);
      assert.deepEqual(asNumber.value, { $map: [['z', 1]] });
    });

    test('a key without a value, an unknown state and a lone --state are errors with their exit codes', async () => {
      const missing = await cli(['inspect', 'inspected', '--state', 'all/tags', '--key', 'nobody'], env);
      assert.equal(missing.code, 69, missing.stderr);
      assert.equal(missing.stdout, '');
      assert.match(
        missing.stderr,
        /^kstate: key "nobody" has no value in state 'all\/tags' in the latest checkpoint of job inspected \(tasks input-p0\)\n$/,
      );
      const unknown = await cli(['inspect', 'inspected', '--state', 'tags', '--key', 'a'], env);
      assert.equal(unknown.code, 69, unknown.stderr);
      assert.equal(
        unknown.stderr,
        "kstate: no keyed state 'tags' in the latest checkpoint of job inspected (tasks input-p0); its keyed states (<operator uid>/<state name>): all/big, all/bytes, all/last, all/owners, all/recent, all/seen, all/tags\n",
      );
      const lone = await cli(['inspect', 'inspected', '--state', 'all/tags'], env);
      assert.equal(lone.code, 64, lone.stderr);
      // The scratch databases the level backend's state was read into are gone.
      assert.deepEqual(await readdir(join(dir, 'inspect-scratch', '.inspect')).catch(() => []), []);
    });
  });
}
