/**
 * The level backend on S3 checkpoint storage (S3Proxy, started by scripts/kafka/with-broker.ts):
 * local recovery stays local. Counted through the storage's `requests` counters and the files it
 * reads and writes:
 * - a task restoring on the instance whose local database holds the checkpoint reads no run file
 *   from S3 (no GET at all once the metadata is read);
 * - a task restoring where there is no local copy downloads every run file of the chain, once;
 * - an incremental checkpoint after ~5 % of the keys changed uploads only its delta files (PUTs and
 *   bytes against the state's size), and lists none of the task's files (at most the metadata names).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import {
  type CheckpointMetadata,
  type Collector,
  type FileRef,
  type KeyedContext,
  type KeyedProcessFunction,
  LevelKeyedStateBackend,
  levelBackend,
  runJob,
  type Scope,
  StreamJob,
  valueState,
} from '../../../framework/index.ts';
import { CollectingSink, TestSource } from '../../../framework/testing/index.ts';
import { S3CheckpointStorage, type S3RequestCounts, type S3StorageOptions } from '../s3-storage.ts';

const endpoint = process.env.KSTATE_TEST_S3_ENDPOINT;
const skip =
  endpoint === undefined
    ? 'KSTATE_TEST_S3_ENDPOINT is not set (run under scripts/kafka/with-broker.ts)'
    : false;
const MIB = 1024 * 1024;

type Handle = Parameters<LevelKeyedStateBackend['restoreHandle']>[0];
type Files = Parameters<LevelKeyedStateBackend['restoreHandle']>[1];

/** S3 storage that also records the files read and written through it. */
class CountedS3Storage extends S3CheckpointStorage {
  readonly read: string[] = [];
  readonly written: { path: string; bytes: number }[] = [];
  override async readFile(ref: FileRef): Promise<Uint8Array> {
    this.read.push(ref.path);
    return super.readFile(ref);
  }
  override async writeFile(scope: Scope, id: number, name: string, bytes: Uint8Array): Promise<FileRef> {
    const ref = await super.writeFile(scope, id, name, bytes);
    this.written.push({ path: ref.path, bytes: ref.bytes });
    return ref;
  }
  /** Requests and files since `from` (a `mark()`). */
  since(from: Mark): Mark {
    const now = this.mark();
    const requests = Object.fromEntries(
      Object.entries(now.requests).map(([k, v]) => [k, v - from.requests[k as keyof S3RequestCounts]]),
    ) as unknown as S3RequestCounts;
    return { requests, read: now.read - from.read, written: now.written - from.written };
  }
  mark(): Mark {
    return { requests: { ...this.requests }, read: this.read.length, written: this.written.length };
  }
}

interface Mark {
  readonly requests: S3RequestCounts;
  readonly read: number;
  readonly written: number;
}

const keyed = (path: string) => /\/files\/\d+-keyed-/.test(path);

describe('level backend on S3 storage: local recovery stays local', { skip }, () => {
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const root = mkdtempSync(join(tmpdir(), 'kstate-s3-level-'));
  after(() => {
    client.destroy();
    rmSync(root, { recursive: true, force: true });
  });
  let n = 0;
  const dir = (what: string) => join(root, `${what}-${n++}`);
  const bucketOf = async (label: string) => {
    const bucket = `kstate-lr-${label}-${process.pid}-${Date.now().toString(36)}`;
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    return bucket;
  };
  const storageOf = (bucket: string, o: Partial<S3StorageOptions> = {}) =>
    new CountedS3Storage({ bucket, prefix: 'chk', endpoint, partSizeBytes: 5 * MIB, ...o });

  test('restore with the matching local database reads no run file; without it, every run file once; a 5 % delta uploads only itself', async () => {
    const storage = storageOf(await bucketOf('api'));
    const scope: Scope = { jobId: 'orders', taskId: 's0-p0' };
    const META = { name: 'v', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 } as const;
    const open = async (directory: string) => {
      const b = await LevelKeyedStateBackend.open({ directory, fileBytes: MIB });
      b.register(META);
      return b;
    };
    const files = (id: number): Files => ({
      write: (name, bytes) => storage.writeFile(scope, id, name, bytes),
      read: (ref) => storage.readFile(ref),
    });
    /** As a task does: capture, write the run files, commit the metadata that names them. */
    const checkpoint = async (b: LevelKeyedStateBackend, id: number, previous?: Handle) => {
      const capture = b.capture(id);
      try {
        const handle = await capture.writeCheckpoint!(files(id), previous);
        const meta: CheckpointMetadata = {
          formatVersion: 1,
          jobId: scope.jobId,
          taskId: scope.taskId,
          checkpointId: id,
          timestamp: Date.now(),
          files: [...handle.files],
          type: handle.type,
          payload: { keyedHandle: handle },
        };
        await storage.commit(meta);
        return handle;
      } finally {
        capture.release();
      }
    };
    const KEYS = 4000;
    const contents = (b: LevelKeyedStateBackend) =>
      b.entries('v').sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));

    const home = dir('instance-a');
    const a = await open(home);
    let expected: ReturnType<typeof contents>;
    let stateBytes: number;
    let deltaHandle: Handle;
    try {
      for (let i = 0; i < KEYS; i++) a.put('v', `key-${i}`, randomBytes(1000).toString('base64'));
      await a.flushed();
      const full = await checkpoint(a, 1);
      stateBytes = full.files.reduce((s, f) => s + f.bytes, 0);
      assert.ok(full.files.length >= 4, `${full.files.length} run files of ${stateBytes} B`);

      // ~5 % of the keys change: the next checkpoint is a delta that uploads only its own files.
      for (let i = 0; i < KEYS; i += 20) a.put('v', `key-${i}`, randomBytes(1000).toString('base64'));
      const before = storage.mark();
      deltaHandle = await checkpoint(a, 2, full);
      const d = storage.since(before);
      assert.equal(deltaHandle.type, 'incremental');
      const uploaded = storage.written.slice(before.written);
      const fresh = deltaHandle.files.filter((f) => !full.files.some((g) => g.path === f.path));
      assert.deepEqual(
        uploaded.map((w) => w.path),
        fresh.map((f) => f.path),
        'only the delta files are written',
      );
      const deltaBytes = uploaded.reduce((s, w) => s + w.bytes, 0);
      assert.ok(
        deltaBytes > 0.04 * stateBytes && deltaBytes < 0.08 * stateBytes,
        `the delta is ${deltaBytes} B of a ${stateBytes} B state`,
      );
      // One PUT per new file (each below the part size) and one for the metadata; a HEAD before each,
      // and the commit's size check of every file the checkpoint lists (old and new).
      assert.equal(d.requests.put, uploaded.length + 1);
      assert.equal(d.requests.multipart, 0);
      assert.equal(d.requests.head, uploaded.length + 1 + deltaHandle.files.length);
      // At most the one listing of the task's metadata names before retention deletes; never its files.
      assert.ok(d.requests.list <= 1, `${d.requests.list} listings`);
      assert.equal(d.requests.get, 0);
      expected = contents(a);
    } finally {
      await a.close();
    }

    // The same instance again (a restart): the local database holds checkpoint 2.
    {
      const meta = await storage.latest(scope); // what a task reads first (one LIST, one GET)
      assert.equal(meta?.checkpointId, 2);
      const handle = (meta!.payload as { keyedHandle: Handle }).keyedHandle;
      const b = await open(home);
      try {
        const before = storage.mark();
        await b.restoreHandle(handle, files(3));
        const d = storage.since(before);
        assert.equal(b.lastRestore?.from, 'local', b.lastRestore?.reason);
        assert.equal(d.read, 0, 'no run file read');
        assert.equal(d.requests.get, 0, 'no GET from S3');
        assert.deepEqual(contents(b), expected);
      } finally {
        await b.close();
      }
    }

    // Another instance (no local copy): downloads the chain, every file once.
    {
      const handle = (await storage.latest(scope))!.payload as { keyedHandle: Handle };
      const b = await open(dir('instance-b'));
      try {
        const before = storage.mark();
        await b.restoreHandle(handle.keyedHandle, files(3));
        const d = storage.since(before);
        assert.equal(b.lastRestore?.from, 'storage');
        assert.match(b.lastRestore?.reason ?? '', /no local database/);
        assert.deepEqual(
          storage.read.slice(before.read).sort(),
          handle.keyedHandle.files.map((f) => f.path).sort(),
        );
        assert.equal(d.requests.get, handle.keyedHandle.files.length, 'one GET per run file');
        assert.deepEqual(contents(b), expected);
      } finally {
        await b.close();
      }
    }
    storage.close();
  });

  test('a job moved to an instance without the local copy downloads its run files; back on it, none', async () => {
    const bucket = await bucketOf('job');
    interface Event {
      readonly user: string;
      readonly n: number;
    }
    class Totals implements KeyedProcessFunction<string, Event, string> {
      processElement(e: Event, ctx: KeyedContext<string>, out: Collector<string>): void {
        const s = ctx.getState(valueState<{ total: number; pad: string }>('total'));
        const v = s.value();
        const total = (v?.total ?? 0) + e.n;
        s.update({ total, pad: v?.pad ?? randomBytes(600).toString('hex') });
        out.collect(`${e.user} ${total}`);
      }
    }
    const events: { value: Event }[] = [];
    for (let i = 0; i < 6000; i++) events.push({ value: { user: `u${(i * 7919) % 3000}`, n: i } });
    const sink = new CollectingSink<string>('out'); // its transactions outlive a run, as Kafka's do
    /** One run of the job over the first `count` events, on an instance whose state lives in `state`. */
    const run = async (count: number, state: string) => {
      const storage = storageOf(bucket);
      const job = new StreamJob('moves');
      job
        .source(TestSource.byKey('events', events.slice(0, count), (e) => e.user, 2))
        .keyBy((e) => e.user)
        .process(new Totals(), { uid: 'totals' })
        .sinkTo(sink);
      const restored: { taskId: string; checkpointId: number | undefined }[] = [];
      const running = runJob(job.build(), {
        storage,
        backend: levelBackend(state, { fileBytes: 256 * 1024 }),
        checkpoints: { intervalMs: 0, incremental: true },
        listener: { restored: (r) => restored.push(r) },
      });
      await running.done;
      storage.close();
      return { storage, restored };
    };
    const home = dir('a');
    const away = dir('b');
    const first = await run(3000, home);
    assert.equal(first.storage.read.filter(keyed).length, 0, 'a fresh start reads nothing');

    // The tasks move to instance B, which has no local copy: every run file of the latest chains.
    const latest = new CountedS3Storage({ bucket, prefix: 'chk', endpoint });
    const chains: string[] = [];
    for (const taskId of await latest.tasks('moves')) {
      const meta = await latest.latest({ jobId: 'moves', taskId });
      const handle = (meta?.payload as { keyedHandle?: Handle } | undefined)?.keyedHandle;
      if (handle !== undefined) chains.push(...handle.files.map((f) => f.path));
    }
    latest.close();
    assert.ok(chains.length >= 2, `${chains.length} run files in the latest checkpoints`);
    const moved = await run(6000, away);
    assert.deepEqual(moved.storage.read.filter(keyed).sort(), chains.sort());
    assert.ok(moved.restored.every((r) => r.checkpointId !== undefined));

    // The totals carried over the move: the last output of each user is the sum of all its events.
    const last = new Map<string, number>();
    for (const line of sink.output.committed) {
      const [user, total] = line.split(' ');
      last.set(user!, Number(total));
    }
    const sums = new Map<string, number>();
    for (const { value: e } of events) sums.set(e.user, (sums.get(e.user) ?? 0) + e.n);
    assert.deepEqual(last, sums);

    // B restarts: its local databases hold the checkpoints it committed last. Nothing is downloaded.
    const back = await run(6000, away);
    assert.deepEqual(back.storage.read.filter(keyed), []);
    assert.ok(back.restored.every((r) => r.checkpointId !== undefined));
  });
});
