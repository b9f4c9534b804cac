import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as nodeFs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { StreamError } from '../../api/errors.ts';
import { bytesOf, checkpointMeta, rejectsWith, storageConformance } from './conformance.ts';
import {
  type CheckpointFs,
  FilesystemCheckpointStorage,
  type FilesystemStorageOptions,
} from './filesystem.ts';
import { sha256Hex } from './metadata-codec.ts';
import type { Scope } from './storage.ts';

async function tempDir(): Promise<string> {
  return nodeFs.mkdtemp(join(tmpdir(), 'kstate-chk-'));
}

storageConformance('filesystem', async ({ retain }) => {
  const directory = await tempDir();
  const storage = new FilesystemCheckpointStorage({ directory, retain });
  const abs = (path: string): string => join(directory, path);
  return {
    storage,
    corrupt: async (path) => {
      const bytes = await nodeFs.readFile(abs(path));
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
      await nodeFs.writeFile(abs(path), bytes);
    },
    truncate: (path, length) => nodeFs.truncate(abs(path), length),
    close: () => nodeFs.rm(directory, { recursive: true, force: true }),
  };
});

const SCOPE: Scope = { jobId: 'orders-job', taskId: 's0-p3' };

/** A fresh directory, removed after the test. */
async function fresh(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await tempDir();
  t.after(() => nodeFs.rm(dir, { recursive: true, force: true }));
  return dir;
}

function errno(code: string, syscall: string, path: unknown): Error & { code: string } {
  return Object.assign(new Error(`${code}: injected, ${syscall} '${String(path)}'`), { code, syscall, path });
}

/** A storage with one committed checkpoint (1, listing `state`) to be kept intact by what follows. */
async function withCommitted(
  directory: string,
  options: Partial<FilesystemStorageOptions> = {},
): Promise<{ storage: FilesystemCheckpointStorage; check(): Promise<void> }> {
  const first = new FilesystemCheckpointStorage({ directory });
  const ref = await first.writeFile(SCOPE, 1, 'state', bytesOf('committed state'));
  const meta = checkpointMeta(SCOPE, 1, [ref]);
  await first.commit(meta);
  const storage = new FilesystemCheckpointStorage({ directory, ...options });
  return {
    storage,
    async check() {
      const reader = new FilesystemCheckpointStorage({ directory });
      assert.deepEqual(await reader.latest(SCOPE), meta);
      assert.equal(new TextDecoder().decode(await reader.readFile(ref)), 'committed state');
    },
  };
}

/** Every `.tmp-*` file under `dir`. */
async function temps(dir: string): Promise<string[]> {
  const all = await nodeFs.readdir(dir, { recursive: true });
  return all.filter((p) => p.split('/').some((seg) => seg.startsWith('.tmp-')));
}

describe('filesystem checkpoint storage', () => {
  test('lays files, checkpoints and savepoints out per task, as documented', async (t) => {
    const directory = await fresh(t);
    const storage = new FilesystemCheckpointStorage({ directory });
    const ref = await storage.writeFile(SCOPE, 7, 'keyed', bytesOf('k'));
    assert.equal(ref.path, 'orders-job/s0-p3/files/7-keyed');
    await storage.commit(checkpointMeta(SCOPE, 7, [ref]));
    await storage.commit(checkpointMeta(SCOPE, 7, [ref], { savepoint: 'v1' }));
    const tree = (await nodeFs.readdir(directory, { recursive: true })).sort();
    assert.deepEqual(tree, [
      'orders-job',
      'orders-job/s0-p3',
      'orders-job/s0-p3/chk-7.json',
      'orders-job/s0-p3/files',
      'orders-job/s0-p3/files/7-keyed',
      'orders-job/s0-p3/savepoints',
      'orders-job/s0-p3/savepoints/v1.json',
    ]);
    const doc = JSON.parse(await nodeFs.readFile(join(directory, 'orders-job/s0-p3/chk-7.json'), 'utf8'));
    assert.equal(doc.format, 'kstate-checkpoint-metadata');
    assert.equal(doc.sha256, sha256Hex(JSON.stringify(doc.metadata)));
    assert.equal(doc.metadata.checkpointId, 7);
  });

  test('a new instance over the same directory restores what an earlier one committed', async (t) => {
    const directory = await fresh(t);
    const { check } = await withCommitted(directory);
    await check();
  });

  test('edited metadata is refused by latest, list and load, naming the file', async (t) => {
    const directory = await fresh(t);
    const storage = new FilesystemCheckpointStorage({ directory });
    await storage.commit(checkpointMeta(SCOPE, 1, []));
    await storage.commit(checkpointMeta(SCOPE, 2, []));
    const file = join(directory, 'orders-job/s0-p3/chk-2.json');
    const text = await nodeFs.readFile(file, 'utf8');
    await nodeFs.writeFile(file, text.replace('"offset":200', '"offset":999'));
    await rejectsWith(storage.latest(SCOPE), 'CHECKPOINT_CORRUPT', /chk-2\.json/, /checksum mismatch/);
    await rejectsWith(storage.list(SCOPE), 'CHECKPOINT_CORRUPT', /chk-2\.json/);
    await rejectsWith(storage.load(SCOPE, 2), 'CHECKPOINT_CORRUPT', /chk-2\.json/);
    // Never a silent fall back to checkpoint 1.
    assert.equal((await storage.load(SCOPE, 1)).checkpointId, 1);
  });

  test('a truncated metadata file is refused, and list does not skip a corrupt older one', async (t) => {
    const directory = await fresh(t);
    const storage = new FilesystemCheckpointStorage({ directory });
    await storage.commit(checkpointMeta(SCOPE, 1, []));
    await storage.commit(checkpointMeta(SCOPE, 2, []));
    const file = join(directory, 'orders-job/s0-p3/chk-1.json');
    await nodeFs.truncate(file, 40);
    assert.equal((await storage.latest(SCOPE))?.checkpointId, 2); // latest needs only the newest
    await rejectsWith(storage.list(SCOPE), 'CHECKPOINT_CORRUPT', /chk-1\.json/, /not valid JSON/);
    await nodeFs.writeFile(join(directory, 'orders-job/s0-p3/chk-2.json'), '');
    await rejectsWith(storage.latest(SCOPE), 'CHECKPOINT_CORRUPT', /chk-2\.json/, /0 bytes/);
  });

  test('metadata copied to another name or of another format version is refused', async (t) => {
    const directory = await fresh(t);
    const storage = new FilesystemCheckpointStorage({ directory });
    await storage.commit(checkpointMeta(SCOPE, 2, []));
    const dir = join(directory, 'orders-job/s0-p3');
    await nodeFs.copyFile(join(dir, 'chk-2.json'), join(dir, 'chk-3.json'));
    await rejectsWith(storage.latest(SCOPE), 'CHECKPOINT_CORRUPT', /chk-3\.json/, /holds checkpoint 2/);
    await nodeFs.unlink(join(dir, 'chk-3.json'));

    const metadata = { ...checkpointMeta(SCOPE, 2, []), formatVersion: 2 };
    const body = JSON.stringify(metadata);
    const doc = `{"format":"kstate-checkpoint-metadata","version":1,"sha256":"${sha256Hex(body)}","metadata":${body}}`;
    await nodeFs.writeFile(join(dir, 'chk-2.json'), doc);
    await rejectsWith(storage.latest(SCOPE), 'SNAPSHOT_FORMAT_UNSUPPORTED', /formatVersion 2/);
  });

  test('a crash between temp write and rename leaves the previous checkpoint latest; leftovers are removed', async (t) => {
    const directory = await fresh(t);
    const storage = new FilesystemCheckpointStorage({ directory });
    const ref = await storage.writeFile(SCOPE, 1, 'state', bytesOf('one'));
    await storage.commit(checkpointMeta(SCOPE, 1, [ref]));
    // What a process killed mid-commit of checkpoint 2 leaves behind.
    const dir = join(directory, 'orders-job/s0-p3');
    await nodeFs.writeFile(
      join(dir, '.tmp-dead01-chk-2.json'),
      '{"format":"kstate-checkpoint-metadata","ver',
    );
    await nodeFs.writeFile(join(dir, 'files/.tmp-dead02-2-state'), 'half a fi');

    const restarted = new FilesystemCheckpointStorage({ directory });
    assert.equal((await restarted.latest(SCOPE))?.checkpointId, 1);
    assert.deepEqual(
      (await restarted.list(SCOPE)).map((m) => m.checkpointId),
      [1],
    );
    await restarted.commit(checkpointMeta(SCOPE, 2, [ref]));
    assert.deepEqual(await temps(directory), []);
    assert.equal((await restarted.latest(SCOPE))?.checkpointId, 2);
  });

  test('a failed metadata rename commits nothing and leaves no temporary file', async (t) => {
    const directory = await fresh(t);
    const fs: CheckpointFs = {
      ...nodeFs,
      link: async (from, to) => {
        if (String(to).endsWith('chk-2.json')) throw errno('EIO', 'link', to);
        return nodeFs.link(from, to);
      },
    };
    const { storage, check } = await withCommitted(directory, { fs });
    await rejectsWith(
      storage.commit(checkpointMeta(SCOPE, 2, [])),
      'CHECKPOINT_STORAGE_FAILED',
      /EIO/,
      /chk-2\.json/,
    );
    await check();
    assert.deepEqual(await temps(directory), []);
  });

  test('a failed directory fsync takes the metadata back: not durable, not committed', async (t) => {
    const directory = await fresh(t);
    let failSync = false;
    const fs: CheckpointFs = {
      ...nodeFs,
      open: async (path, flags, mode) => {
        const handle = await nodeFs.open(path, flags, mode);
        if (failSync && path === join(directory, 'orders-job/s0-p3')) {
          handle.sync = async () => {
            throw errno('EIO', 'fsync', path);
          };
        }
        return handle;
      },
    };
    const { storage, check } = await withCommitted(directory, { fs });
    failSync = true;
    await rejectsWith(storage.commit(checkpointMeta(SCOPE, 2, [])), 'CHECKPOINT_STORAGE_FAILED', /EIO/);
    await check();
  });

  test("another process's sweep of a write's temporary file, or removal of its empty directory: the write is made again", async (t) => {
    const directory = await fresh(t);
    // Instances of one job share a scope (its topology record): one's first retention sweeps
    // `.tmp-*` files it cannot know another process still writes, or removes the scope's directory
    // while it is empty, between this write's steps.
    let sweeps = 0;
    const sweeping: CheckpointFs = {
      ...nodeFs,
      link: async (from, to) => {
        if (sweeps++ === 0) await nodeFs.unlink(from);
        return nodeFs.link(from, to);
      },
    };
    const { storage } = await withCommitted(directory, { fs: sweeping });
    const ref = await storage.writeFile(SCOPE, 2, 'state', bytesOf('second state'));
    await storage.commit(checkpointMeta(SCOPE, 2, [ref]));
    assert.ok(sweeps >= 3, `links: ${sweeps}`);
    assert.equal((await storage.latest(SCOPE))?.checkpointId, 2);
    assert.equal(new TextDecoder().decode(await storage.readFile(ref)), 'second state');
    assert.deepEqual(await temps(directory), []);
    const other: Scope = { jobId: 'orders-job', taskId: '_topology' };
    let removals = 0;
    const removing: CheckpointFs = {
      ...nodeFs,
      open: async (path, flags, mode) => {
        if (String(path).includes('/.tmp-') && removals++ === 0) await nodeFs.rmdir(join(String(path), '..'));
        return nodeFs.open(path, flags, mode);
      },
    };
    const fresh2 = new FilesystemCheckpointStorage({ directory, fs: removing });
    await fresh2.commit(checkpointMeta(other, 1, []));
    assert.equal(removals, 2);
    assert.equal((await new FilesystemCheckpointStorage({ directory }).latest(other))?.checkpointId, 1);
  });

  test('a write that meets ENOENT every time fails after three attempts, naming the path', async (t) => {
    const directory = await fresh(t);
    let links = 0;
    const gone: CheckpointFs = {
      ...nodeFs,
      link: async (from, to) => {
        if (String(to).endsWith('chk-2.json')) {
          links++;
          throw errno('ENOENT', 'link', to);
        }
        return nodeFs.link(from, to);
      },
    };
    const { storage, check } = await withCommitted(directory, { fs: gone });
    await rejectsWith(
      storage.commit(checkpointMeta(SCOPE, 2, [])),
      'CHECKPOINT_STORAGE_FAILED',
      /ENOENT/,
      /chk-2\.json/,
    );
    assert.equal(links, 3);
    await check();
    assert.deepEqual(await temps(directory), []);
  });

  test('write failures are CHECKPOINT_STORAGE_FAILED with the errno, the path and what to do', async (t) => {
    const cases: [string, RegExp][] = [
      ['EACCES', /Permission denied/],
      ['EROFS', /read-only/],
      ['ENOSPC', /disk is full/],
      ['EDQUOT', /quota/],
    ];
    for (const [code, hint] of cases) {
      const directory = await fresh(t);
      const fs: CheckpointFs = {
        ...nodeFs,
        open: async (path, flags, mode) => {
          const handle = await nodeFs.open(path, flags, mode);
          if (String(path).includes('.tmp-') && String(path).includes('files')) {
            // Half the bytes reach the disk, then the device gives up.
            handle.writeFile = async (data) => {
              await nodeFs.appendFile(path, (data as Uint8Array).subarray(0, 5));
              throw errno(code, 'write', path);
            };
          }
          return handle;
        },
      };
      const { storage, check } = await withCommitted(directory, { fs });
      await rejectsWith(
        storage.writeFile(SCOPE, 2, 'state', bytesOf('new state, never written whole')),
        'CHECKPOINT_STORAGE_FAILED',
        new RegExp(code),
        /files\/2-state/,
        hint,
        /Nothing partial was left behind/,
      );
      await nodeFs.access(join(directory, 'orders-job/s0-p3/files/2-state')).then(
        () => assert.fail(`${code}: a partial file was left behind`),
        () => {},
      );
      assert.deepEqual(await temps(directory), [], `${code}: temporary file left behind`);
      await check();
    }
  });

  test('a real full disk (64 KiB tmpfs) is CHECKPOINT_STORAGE_FAILED ENOSPC and damages nothing', async (t) => {
    const directory = await fresh(t);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', directory], { stdio: 'pipe' });
    } catch (e) {
      t.skip(
        `cannot mount a tmpfs here (${String((e as Error).message).split('\n')[0]}); the injected ENOSPC case covers the mapping`,
      );
      return;
    }
    try {
      const { storage, check } = await withCommitted(directory);
      await rejectsWith(
        storage.writeFile(SCOPE, 2, 'big', new Uint8Array(256 * 1024)),
        'CHECKPOINT_STORAGE_FAILED',
        /ENOSPC/,
        /disk is full/,
      );
      assert.deepEqual(await temps(directory), []);
      await check();
    } finally {
      execFileSync('umount', [directory]);
    }
  });

  test('a checkpoint directory under a regular file is CHECKPOINT_STORAGE_FAILED ENOTDIR', async (t) => {
    const parent = await fresh(t);
    await nodeFs.writeFile(join(parent, 'a-file'), 'not a directory');
    const directory = join(parent, 'a-file', 'checkpoints');
    const storage = new FilesystemCheckpointStorage({ directory });
    await rejectsWith(
      storage.writeFile(SCOPE, 1, 'state', bytesOf('x')),
      'CHECKPOINT_STORAGE_FAILED',
      /ENOTDIR/,
      new RegExp(directory),
    );
    await rejectsWith(
      new FilesystemCheckpointStorage({ directory: join(parent, 'a-file') }).latest(SCOPE),
      'CHECKPOINT_STORAGE_FAILED',
      /not a directory/,
    );
  });

  test('a missing directory with createDirectory: false is CHECKPOINT_NOT_FOUND naming it, and is not created', async (t) => {
    const directory = join(await fresh(t), 'not-mounted');
    const storage = new FilesystemCheckpointStorage({ directory, createDirectory: false });
    const named = new RegExp(`${directory} does not exist`);
    await rejectsWith(storage.latest(SCOPE), 'CHECKPOINT_NOT_FOUND', named);
    await rejectsWith(storage.list(SCOPE), 'CHECKPOINT_NOT_FOUND', named);
    await rejectsWith(storage.load(SCOPE, 1), 'CHECKPOINT_NOT_FOUND', named);
    await rejectsWith(storage.writeFile(SCOPE, 1, 'state', bytesOf('x')), 'CHECKPOINT_NOT_FOUND', named);
    await rejectsWith(storage.commit(checkpointMeta(SCOPE, 1, [])), 'CHECKPOINT_NOT_FOUND', named);
    await assert.rejects(nodeFs.access(directory));
  });

  test('with createDirectory (default), a missing directory means "nothing yet" to latest, but load refuses', async (t) => {
    const directory = join(await fresh(t), 'new', 'checkpoints');
    const storage = new FilesystemCheckpointStorage({ directory });
    assert.equal(await storage.latest(SCOPE), undefined);
    assert.deepEqual(await storage.list(SCOPE), []);
    await rejectsWith(
      storage.load(SCOPE, 3),
      'CHECKPOINT_NOT_FOUND',
      new RegExp(`${directory} does not exist`),
    );
    await rejectsWith(storage.loadSavepoint('v1', SCOPE), 'CHECKPOINT_NOT_FOUND', new RegExp(directory));
    await assert.rejects(nodeFs.access(directory)); // reads never create it
    await storage.commit(checkpointMeta(SCOPE, 1, []));
    assert.equal((await storage.latest(SCOPE))?.checkpointId, 1);
  });

  test('files left by a crashed attempt are replaced by the retry, and collected once the kept window passes them', async (t) => {
    const directory = await fresh(t);
    const crashed = new FilesystemCheckpointStorage({ directory });
    await crashed.commit(checkpointMeta(SCOPE, 1, []));
    await crashed.writeFile(SCOPE, 2, 'state', bytesOf('from the attempt that crashed'));
    await crashed.writeFile(SCOPE, 2, 'extra', bytesOf('not written by the retry'));
    await crashed.writeFile(SCOPE, 5, 'state', bytesOf('an even later attempt'));

    const restarted = new FilesystemCheckpointStorage({ directory });
    const ref = await restarted.writeFile(SCOPE, 2, 'state', bytesOf('retry'));
    await restarted.commit(checkpointMeta(SCOPE, 2, [ref]));
    assert.equal(new TextDecoder().decode(await restarted.readFile(ref)), 'retry');
    const files = () => nodeFs.readdir(join(directory, 'orders-job/s0-p3/files'));
    // At or above the oldest kept checkpoint (1), a file may be another process's, still being written.
    assert.deepEqual((await files()).sort(), ['2-extra', '2-state', '5-state']);
    for (let id = 3; id <= 8; id++) await restarted.commit(checkpointMeta(SCOPE, id, []));
    assert.deepEqual(await files(), []); // kept: 6, 7, 8
  });

  test('without hard links (link EPERM), files are still never overwritten', async (t) => {
    const directory = await fresh(t);
    const fs: CheckpointFs = {
      ...nodeFs,
      link: async (_from, to) => {
        throw errno('EPERM', 'link', to);
      },
    };
    const storage = new FilesystemCheckpointStorage({ directory, fs });
    const ref = await storage.writeFile(SCOPE, 1, 'state', bytesOf('one'));
    await storage.commit(checkpointMeta(SCOPE, 1, [ref]));
    await rejectsWith(storage.writeFile(SCOPE, 1, 'state', bytesOf('two')), 'CHECKPOINT_STORAGE_FAILED');
    await rejectsWith(
      storage.commit(checkpointMeta(SCOPE, 1, [], { timestamp: 1 })),
      'CHECKPOINT_STORAGE_FAILED',
    );
    assert.equal(new TextDecoder().decode(await storage.readFile(ref)), 'one');
    assert.deepEqual(await temps(directory), []);
  });

  test('a cleanup failure after commit is reported, not thrown, and retried on the next commit', async (t) => {
    const directory = await fresh(t);
    let failDeletes = true;
    const reported: StreamError[] = [];
    const fs: CheckpointFs = {
      ...nodeFs,
      unlink: async (path) => {
        if (failDeletes && String(path).includes('/files/1-')) throw errno('EBUSY', 'unlink', path);
        return nodeFs.unlink(path);
      },
    };
    const storage = new FilesystemCheckpointStorage({
      directory,
      retain: 1,
      fs,
      onCleanupError: (e) => reported.push(e),
    });
    const r1 = await storage.writeFile(SCOPE, 1, 'state', bytesOf('one'));
    await storage.commit(checkpointMeta(SCOPE, 1, [r1]));
    await storage.commit(checkpointMeta(SCOPE, 2, [])); // prunes 1; deleting its file fails
    assert.equal(reported.length, 1);
    assert.equal(reported[0]?.code, 'CHECKPOINT_STORAGE_FAILED');
    assert.match(reported[0]?.message ?? '', /commit itself succeeded.*files\/1-state: EBUSY/);
    assert.equal((await storage.latest(SCOPE))?.checkpointId, 2);
    failDeletes = false;
    await storage.commit(checkpointMeta(SCOPE, 3, []));
    await rejectsWith(storage.readFile(r1), 'CHECKPOINT_NOT_FOUND');
  });

  test('an unreadable retained metadata file stops file deletion and is reported', async (t) => {
    const directory = await fresh(t);
    const reported: StreamError[] = [];
    const storage = new FilesystemCheckpointStorage({
      directory,
      retain: 2,
      onCleanupError: (e) => reported.push(e),
    });
    const r1 = await storage.writeFile(SCOPE, 1, 'state', bytesOf('one'));
    await storage.commit(checkpointMeta(SCOPE, 1, [r1]));
    await storage.commit(checkpointMeta(SCOPE, 2, [r1]));
    await nodeFs.writeFile(join(directory, 'orders-job/s0-p3/chk-2.json'), '{"broken');
    // A process plans retention from what it wrote itself; the damage is seen by the next one that
    // scans the scope (a restart), which must then delete nothing.
    const restarted = new FilesystemCheckpointStorage({
      directory,
      retain: 2,
      onCleanupError: (e) => reported.push(e),
    });
    await restarted.commit(checkpointMeta(SCOPE, 3, []));
    assert.equal(reported[0]?.code, 'CHECKPOINT_CORRUPT');
    assert.match(reported[0]?.message ?? '', /chk-2\.json/);
    assert.equal(new TextDecoder().decode(await storage.readFile(r1)), 'one');
  });
});
