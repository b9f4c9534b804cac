/**
 * Savepoint writes that appear at once or not at all (publish.ts), on a checkpoint directory with
 * failures injected: before the commit point (a state file that cannot be written), after it (task
 * metadata that cannot be written), and a pending record of a run that is alive or dead. The SIGKILL
 * of the CLI mid-write is connectors/kafka/test/savepoint/savepoint-atomic.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isStreamError } from '../api/errors.ts';
import { FilesystemCheckpointStorage } from '../checkpoint/storage/filesystem.ts';
import type { CheckpointMetadata, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import { TASK_SNAPSHOT_FORMAT } from '../runtime/snapshot-io.ts';
import { keyGroupOf, keyId } from '../state/keys.ts';
import { KEYED_SNAPSHOT_FORMAT_VERSION } from '../state/state-meta.ts';
import { SAVEPOINT_WRITES_SCOPE, type StageSavepointContent, settleSavepointWrites } from './publish.ts';
import { readJobSavepoint, writeJobSavepoint } from './savepoint-io.ts';

const JOB = 'job';
const STAGE = 'in';
const TASKS = 40;
const KEYS = 400;

const roots: string[] = [];
after(() => Promise.all(roots.map((r) => rm(r, { recursive: true, force: true }))));

async function root(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kstate-publish-'));
  roots.push(dir);
  return dir;
}

/** A stage of `TASKS` tasks holding `KEYS` keys of one value state, each in its key group. */
function content(): StageSavepointContent[] {
  const entries: [string, Uint8Array][][] = Array.from({ length: TASKS }, () => []);
  for (let i = 0; i < KEYS; i++) {
    const id = keyId(`k${i}`);
    entries[keyGroupOf(id, TASKS)]!.push([id, new Uint8Array([i % 256])]);
  }
  return [
    {
      stage: STAGE,
      tasks: entries.map((e, p) => ({
        keyed: {
          formatVersion: KEYED_SNAPSHOT_FORMAT_VERSION,
          states: [
            {
              meta: { name: 'op/n', kind: 'value', serializerId: 'msgpack', serializerVersion: 1 },
              entries: e,
            },
          ],
        },
        operators: { format: TASK_SNAPSHOT_FORMAT, operators: {}, inflight: [[]] },
        channels: [{ source: STAGE, partition: p, position: { offset: String(p) }, inflight: 0 }],
      })),
    },
  ];
}

/** A checkpoint directory whose `writeFile` or `commit` fail from a given call on. */
class Failing extends FilesystemCheckpointStorage {
  writes = 0;
  taskCommits = 0;
  failWriteAt = Number.POSITIVE_INFINITY;
  failTaskCommitAt = Number.POSITIVE_INFINITY;
  override async writeFile(scope: Scope, id: number, name: string, bytes: Uint8Array): Promise<FileRef> {
    if (++this.writes >= this.failWriteAt) throw new Error('injected: disk full');
    return super.writeFile(scope, id, name, bytes);
  }
  override async commit(meta: CheckpointMetadata): Promise<void> {
    if (meta.taskId !== SAVEPOINT_WRITES_SCOPE && ++this.taskCommits >= this.failTaskCommitAt)
      throw new Error('injected: connection reset');
    return super.commit(meta);
  }
}

async function taskDirs(dir: string): Promise<string[]> {
  return (await readdir(join(dir, JOB)).catch(() => [])).filter((t) => /-p\d+$/.test(t));
}

/** The tasks that have savepoint `name` (what each task's restore finds). */
async function parts(dir: string, name: string): Promise<string[]> {
  const storage = new FilesystemCheckpointStorage({ directory: dir });
  const out: string[] = [];
  for (const taskId of await taskDirs(dir)) {
    try {
      await storage.loadSavepoint(name, { jobId: JOB, taskId });
      out.push(taskId);
    } catch (e) {
      if (!isStreamError(e, 'CHECKPOINT_NOT_FOUND')) throw e;
    }
  }
  return out;
}

const records = async (dir: string) =>
  readdir(join(dir, JOB, SAVEPOINT_WRITES_SCOPE, 'savepoints')).catch(() => [] as string[]);

test('a write failing before its commit point leaves nothing under the name, and takes its files back', async () => {
  const dir = await root();
  const storage = new Failing({ directory: dir });
  storage.failWriteAt = 2 * 25 + 1; // the 26th task's keyed file
  await assert.rejects(
    writeJobSavepoint(storage, JOB, 'x', content(), { checkpointId: 7, backend: 'savepoint' }),
    /disk full/,
  );
  assert.deepEqual(await parts(dir, 'x'), []);
  assert.deepEqual(await taskDirs(dir), [], 'task directories of files no metadata lists');
  assert.deepEqual(await records(dir), []);
  // The same write, without the failure, succeeds.
  const ok = new FilesystemCheckpointStorage({ directory: dir });
  const metas = await writeJobSavepoint(ok, JOB, 'x', content(), { checkpointId: 7, backend: 'savepoint' });
  assert.equal(metas.length, TASKS);
  assert.equal((await parts(dir, 'x')).length, TASKS);
});

test('a write failing after its commit point is complete for the next reader, which writes the missing metadata', async () => {
  const dir = await root();
  const storage = new Failing({ directory: dir });
  storage.failTaskCommitAt = 11;
  await assert.rejects(
    writeJobSavepoint(storage, JOB, 'y', content(), {
      checkpointId: 7,
      backend: 'savepoint',
      concurrency: 1,
    }),
    (e) => isStreamError(e) && /is written and committed/.test(e.message),
  );
  assert.equal((await parts(dir, 'y')).length, 10);
  assert.equal((await records(dir)).length, 2, 'the pending and the published record');
  // A reader (rescale, export, a job start from it) sees all of it.
  const fresh = new FilesystemCheckpointStorage({ directory: dir });
  const sp = await readJobSavepoint(fresh, JOB, await taskDirs(dir), 'y');
  assert.equal(sp.stages[0]!.tasks.length, TASKS);
  assert.equal(
    sp.stages[0]!.tasks.reduce((n, t) => n + t.keyed.states[0]!.entries.length, 0),
    KEYS,
  );
  for (const [p, t] of sp.stages[0]!.tasks.entries())
    assert.deepEqual(t.payload.channels, [
      { source: STAGE, partition: p, position: { offset: String(p) }, inflight: 0 },
    ]);
  assert.equal((await parts(dir, 'y')).length, TASKS);
  assert.deepEqual(await records(dir), []);
});

test("a live run's pending record is kept and its name refused; a dead run's files are removed", async () => {
  const dir = await root();
  const storage = new FilesystemCheckpointStorage({ directory: dir });
  const pending = (run: string, pid: number) =>
    storage.commit({
      formatVersion: 1,
      jobId: JOB,
      taskId: SAVEPOINT_WRITES_SCOPE,
      checkpointId: 3,
      savepoint: `pending-${run}`,
      timestamp: Date.now(),
      files: [],
      type: 'full',
      payload: {
        format: 'kstate-savepoint-write',
        kind: 'pending',
        savepoint: 'z',
        run,
        checkpointId: 3,
        files: ['keyed-sp-z', 'operators-sp-z'],
        stages: [{ stage: STAGE, partitions: 2 }],
        host: hostname(),
        pid,
        started: Date.now(),
      },
    });
  // Alive: this test's parent process.
  await pending('live', process.ppid);
  await assert.rejects(
    writeJobSavepoint(storage, JOB, 'z', content(), { checkpointId: 4, backend: 'savepoint' }),
    (e) => isStreamError(e, 'CONFIG_INVALID') && /is being written by pid/.test(e.message),
  );
  await writeJobSavepoint(storage, JOB, 'other', content(), { checkpointId: 4, backend: 'savepoint' });
  assert.deepEqual(await records(dir), ['pending-live.json']);
  // Dead: a process that has exited. The files it names are removed, unless a metadata lists them.
  const child = spawn(process.execPath, ['-e', '0']);
  const pid = child.pid!;
  await new Promise((r) => child.on('exit', r));
  await storage.deleteSavepoint('pending-live', { jobId: JOB, taskId: SAVEPOINT_WRITES_SCOPE });
  await pending('dead', pid);
  const killed = new FilesystemCheckpointStorage({ directory: dir }); // as the dead process
  for (const p of [0, 1])
    await killed.writeFile({ jobId: JOB, taskId: `${STAGE}-p${p}` }, 3, 'keyed-sp-z', new Uint8Array([1]));
  const lines: string[] = [];
  const done = await settleSavepointWrites(storage, JOB, (l) => lines.push(l));
  assert.deepEqual(done.cleaned, [{ savepoint: 'z', files: 2 }]);
  assert.match(lines.join('\n'), /removed the leftovers of an interrupted write of savepoint 'z'/);
  assert.deepEqual(await records(dir), []);
  for (const p of [0, 1]) {
    const files = await readdir(join(dir, JOB, `${STAGE}-p${p}`, 'files'));
    assert.ok(!files.some((f) => f.startsWith('3-')), files.join(' '));
    assert.equal(files.length, 2, "the savepoint 'other' keeps its two files");
  }
});
