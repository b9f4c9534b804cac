import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { listState, mapState, timeIndexedState, valueState } from '../api/descriptors.ts';
import type { KeyedProcessFunction } from '../api/functions.ts';
import type { SourceRecord } from '../api/source.ts';
import { MemoryCheckpointStorage } from '../checkpoint/storage/memory.ts';
import { StreamJob } from '../datastream/index.ts';
import { planJob } from '../graph/plan.ts';
import { runJob } from '../runtime/job.ts';
import { HeapKeyedStateBackend } from '../state/backends/heap/heap.ts';
import { CollectingSink } from '../testing/sinks.ts';
import { TestSource } from '../testing/sources.ts';
import { StateQueries } from './queries.ts';
import { forwardUrl, queryRoutes } from './query-http.ts';
import { StateQueryRegistry } from './query-registry.ts';
import { localRouting, type QueryRouting } from './query-routing.ts';

interface Ev {
  readonly k: string;
  readonly v: number;
  readonly t: number;
  readonly tag: { readonly c: string };
}

/** Per key: a count, a TTL'd last value, the values seen, the last value per tag (object keys), prices by time. */
const everything: KeyedProcessFunction<string, Ev, never> = {
  processElement(e, ctx) {
    const count = ctx.getState(valueState<number>('count'));
    count.update((count.value() ?? 0) + 1);
    ctx.getState(valueState<number>('last', { ttl: { ttlMs: 3_600_000, time: 'processing' } })).update(e.v);
    ctx.getListState(listState<number>('seen', { ttl: { ttlMs: 3_600_000, time: 'processing' } })).add(e.v);
    ctx.getMapState(mapState<{ c: string }, number>('byTag')).put(e.tag, e.v);
    ctx.getTimeIndexedState(timeIndexedState<number>('price')).put(e.t, e.v);
  },
};

const ev = (k: string, v: number, t: number, c: string): SourceRecord<Ev> => ({
  value: { k, v, t, tag: { c } },
});
const INPUT = [ev('a', 1, 100, 'x'), ev('b/ü', 2, 50, 'y'), ev('a', 3, 300, 'y'), ev('a', 4, 200, 'x')];

/** A job over one partition whose task stays up (unbounded source), tracked by `registry`. */
function startJob(registry: StateQueryRegistry) {
  const job = new StreamJob('queries');
  job
    .source(new TestSource<Ev>('input', [INPUT], { bounded: false }))
    .keyBy((e) => e.k)
    .process(everything, { uid: 'all' })
    .sinkTo(new CollectingSink('out'));
  const running = runJob(job.build(), {
    storage: new MemoryCheckpointStorage(),
    backend: registry.track(undefined),
    listener: registry.listener(),
  });
  return running;
}

/** Wait for a condition the job reaches on its own (event-loop turns, no wall-clock sleep). */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let turns = 0; !condition(); turns++) {
    if (turns > 200_000) throw new Error(`condition not reached: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('StateQueryRegistry', () => {
  test('registers the very backend the factory made (no method of it replaced), live from restored until the task stops', async () => {
    const registry = new StateQueryRegistry();
    const made: HeapKeyedStateBackend[] = [];
    const factory = registry.track(() => {
      const b = new HeapKeyedStateBackend();
      made.push(b);
      return b;
    });
    const backend = await factory({ jobId: 'j', taskId: 't-p0' });
    assert.equal(backend, made[0]);
    assert.deepEqual(
      Object.keys(backend),
      Object.keys(new HeapKeyedStateBackend()),
      'the backend got own properties (a patched method)',
    );
    assert.equal(backend.close, HeapKeyedStateBackend.prototype.close);
    assert.equal(registry.live('t-p0'), undefined, 'live before its task restored');
    const l = registry.listener();
    l.restored?.({ taskId: 't-p0', checkpointId: undefined, ms: 1 });
    assert.equal(registry.live('t-p0'), backend);
    // A restart: the failed incarnation is disposed, the next one registers anew and is live once restored.
    l.taskFailed?.({ taskId: 't-p0', error: new Error('x'), restarting: true, delayMs: 0 });
    assert.equal(registry.live('t-p0'), undefined);
    assert.deepEqual(registry.registered(), []);
    const next = await factory({ jobId: 'j', taskId: 't-p0' });
    assert.notEqual(next, backend);
    assert.equal(registry.live('t-p0'), undefined);
    l.restored?.({ taskId: 't-p0', checkpointId: 3, ms: 1 });
    assert.equal(registry.live('t-p0'), next);
    l.taskStopped?.({ taskId: 't-p0', partition: 0 });
    assert.equal(registry.live('t-p0'), undefined);
    assert.deepEqual(registry.registered(), []);
  });

  test('a task that ends is no longer live when its backend starts to close (no read of a closing backend)', async () => {
    const registry = new StateQueryRegistry();
    const liveAtClose: unknown[] = [];
    class Probe extends HeapKeyedStateBackend {
      override async close(): Promise<void> {
        liveAtClose.push(registry.live('input-p0'));
        await super.close();
      }
    }
    const job = new StreamJob('closing');
    job
      .source(new TestSource<Ev>('input', [INPUT], { bounded: false }))
      .keyBy((e) => e.k)
      .process(everything, { uid: 'all' })
      .sinkTo(new CollectingSink('out'));
    const running = runJob(job.build(), {
      storage: new MemoryCheckpointStorage(),
      backend: registry.track(() => new Probe()),
      listener: registry.listener(),
    });
    await until(() => registry.live('input-p0') !== undefined, 'the task to restore');
    await running.stop();
    assert.deepEqual(liveAtClose, [undefined], 'the task was still live while its backend closed');
    assert.deepEqual(registry.registered(), []);
  });

  test('in a running job: the task is registered while it runs and disposed when the job stops', async () => {
    const registry = new StateQueryRegistry();
    const running = startJob(registry);
    await until(() => registry.live('input-p0') !== undefined, 'the task to restore');
    await running.stop();
    assert.equal(registry.live('input-p0'), undefined);
    assert.deepEqual(registry.registered(), []);
  });
});

describe('StateQueries over a live task (local routing)', () => {
  test('values as a handle gives them (TTL unwrapped, map keys as given), versions, refusals, key ranges', async () => {
    const registry = new StateQueryRegistry();
    const running = startJob(registry);
    const queries = new StateQueries({
      jobId: 'queries',
      plan: () => running.plan,
      registry,
      routing: localRouting,
      self: 'here:1',
    });
    try {
      await until(() => running.tasks()[0]?.recordsIn === INPUT.length, 'the input to be processed');
      const q = (p: Record<string, string>) => queries.query({ operator: 'all', state: 'count', ...p });
      const count = await q({ key: 'a' });
      assert.equal(count.status, 200, JSON.stringify(count.body));
      assert.deepEqual(count.body, {
        operator: 'all',
        state: 'count',
        key: 'a',
        partition: 0,
        consistency: 'live',
        servedBy: 'here:1',
        value: 3,
      });
      assert.equal((await q({ key: 'b/ü' })).body.value, 1);
      assert.equal((await q({ state: 'last', key: 'a' })).body.value, 4);
      assert.deepEqual((await q({ state: 'seen', key: 'a' })).body.value, [1, 3, 4]);
      assert.deepEqual((await q({ state: 'byTag', key: 'a' })).body.value, [
        [{ c: 'x' }, 4],
        [{ c: 'y' }, 3],
      ]);
      const price = (p: Record<string, string>) => q({ state: 'price', key: 'a', ...p });
      assert.deepEqual((await price({})).body.version, { time: 300, value: 3 });
      assert.deepEqual((await price({ at: '250' })).body.version, { time: 200, value: 4 });
      assert.deepEqual((await price({ from: '100', to: '300' })).body.versions, [
        { time: 100, value: 1 },
        { time: 200, value: 4 },
      ]);
      const before = await price({ at: '99' });
      assert.equal(before.status, 404);
      assert.match(String(before.body.error), /no version at or before 99/);

      const refused: [Record<string, string>, number, RegExp][] = [
        [{ key: 'nope' }, 404, /no value for key "nope"/],
        [{ operator: 'nope', key: 'a' }, 404, /no operator 'nope' in job 'queries'; operators: /],
        [{ state: 'nope', key: 'a' }, 404, /no keyed state 'nope' \(yet\); its states: .*count/],
        [{ key: 'a', at: '5' }, 400, /value state: at, from and to need a time-indexed state/],
        [{ key: 'a', keyJson: '"a"' }, 400, /exactly one of key/],
        [{ state: 'price', key: 'a', at: 'yesterday' }, 400, /at must be a finite number/],
        [{ key: 'a', consistency: 'checkpoint' }, 400, /not offered/],
      ];
      for (const [p, status, error] of refused) {
        const a = await q(p);
        assert.equal(a.status, status, JSON.stringify(p));
        assert.match(String(a.body.error), error);
      }

      const keys = await queries.keys({ operator: 'all', state: 'count' });
      assert.equal(keys.status, 200, JSON.stringify(keys.body));
      assert.deepEqual(keys.body.rows, [
        { key: 'a', keyId: 'a', partition: 0, value: 3 },
        { key: 'b/ü', keyId: 'b/ü', partition: 0, value: 1 },
      ]);
      const priceKeys = await queries.keys({ operator: 'all', state: 'price', fromKey: 'b' });
      assert.deepEqual(priceKeys.body.rows, [
        { key: 'b/ü', keyId: 'b/ü', partition: 0, value: { time: 50, value: 2 } },
      ]);
    } finally {
      await running.stop();
    }
    // Stopped: the task is no longer live here, a transient refusal answered 503 after the retries.
    const stopped = new StateQueries({
      jobId: 'queries',
      plan: () => running.plan,
      registry,
      routing: localRouting,
      retryMs: 0,
    });
    const a = await stopped.query({ operator: 'all', state: 'count', key: 'a' });
    assert.equal(a.status, 503);
    assert.equal(a.retryAfter, 1);
    assert.match(String(a.body.error), /task input-p0 is not running here/);
  });
});

describe('routing', () => {
  const job = new StreamJob('routed');
  job
    .source(new TestSource<Ev>('input', [[], [], []]))
    .keyBy((e) => e.k)
    .process(everything, { uid: 'all' })
    .sinkTo(new CollectingSink('out'));
  const plan = planJob(job.build());

  test('a key another instance owns is forwarded once, with the owner named; 503s from it are retried, then answered 503', async () => {
    const urls: string[] = [];
    let answers = [{ status: 503, body: { error: 'restoring' } }];
    const routing: QueryRouting = {
      owner: async () => ({ kind: 'remote', endpoint: 'other:8080', owner: 'member-2' }),
      isSelf: () => false,
    };
    const queries = new StateQueries({
      jobId: 'routed',
      plan: () => plan,
      registry: new StateQueryRegistry(),
      routing,
      retryMs: 0,
      forward: async (url) => {
        urls.push(url);
        return answers.shift() ?? { status: 200, body: { value: 7 } };
      },
    });
    const refused = await queries.query({ operator: 'all', state: 'count', key: 'k 1' });
    assert.equal(refused.status, 503);
    assert.match(String(refused.body.error), /owner other:8080: restoring; retry/);
    assert.equal(urls.length, 1);
    const url = new URL(urls[0]!);
    assert.equal(url.host, 'other:8080');
    assert.equal(url.pathname, '/query');
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      operator: 'all',
      state: 'count',
      key: 'k 1',
      owner: 'member-2',
    });
    answers = [];
    assert.deepEqual(await queries.query({ operator: 'all', state: 'count', key: 'k 1' }), {
      status: 200,
      body: { value: 7 },
    });
  });

  test('a forwarded query this instance no longer owns is refused with 503, never answered', async () => {
    const queries = new StateQueries({
      jobId: 'routed',
      plan: () => plan,
      registry: new StateQueryRegistry(),
      routing: { owner: async () => ({ kind: 'self' }), isSelf: () => false },
      forward: async () => assert.fail('a forwarded query was forwarded again'),
    });
    const a = await queries.query({ operator: 'all', state: 'count', key: 'k', owner: 'member-1' });
    assert.equal(a.status, 503);
    assert.match(String(a.body.error), /no longer owns partition \d/);
  });

  test('the HTTP routes: GET answers with Retry-After on 503, other methods 405', async () => {
    const routes = queryRoutes({
      query: async (q) => ({ status: 503, body: { error: `busy ${q.key}` }, retryAfter: 1 }),
      keys: async () => ({ status: 200, body: { rows: [] } }),
    });
    const busy = await routes['/query']({ method: 'GET', query: new URLSearchParams('key=x') });
    assert.deepEqual(busy, {
      status: 503,
      type: 'application/json; charset=utf-8',
      body: '{"error":"busy x"}\n',
      headers: { 'retry-after': '1' },
    });
    const post = await routes['/query/keys']({ method: 'POST', query: new URLSearchParams() });
    assert.equal(post.status, 405);
  });
});

test('a forwarded query goes to the endpoint with its scheme: plain host:port is HTTP, https:// stays', () => {
  const q = { operator: 'prices', state: 'prices', key: 'p 1' };
  assert.equal(
    forwardUrl('127.0.0.1:9464', 'query', q, 'member-1'),
    'http://127.0.0.1:9464/query?operator=prices&state=prices&key=p+1&owner=member-1',
  );
  assert.equal(
    forwardUrl('https://[::1]:9464', 'keys', q, 'member-2'),
    'https://[::1]:9464/query/keys?operator=prices&state=prices&key=p+1&owner=member-2',
  );
});
