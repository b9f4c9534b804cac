import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { packageVersion } from './version.ts';

/** What `kstate` does before any command: the version, the usage. */
const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url));

function kstate(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [CLI, ...args], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, JSON.stringify(value));
}

test('kstate --version and -V print the version of package.json', async () => {
  const { version } = JSON.parse(
    await readFile(new URL('../../../package.json', import.meta.url), 'utf8'),
  ) as { version: string };
  assert.equal(packageVersion(), version);
  for (const flag of ['--version', '-V'])
    assert.deepEqual(await kstate([flag]), { code: 0, stdout: `${version}\n`, stderr: '' });
});

test('kstate alone prints the usage on stderr and exits 64; --help prints it on stdout and exits 0', async () => {
  const bare = await kstate([]);
  assert.equal(bare.code, 64);
  assert.equal(bare.stdout, '');
  assert.match(bare.stderr, /^kstate: no command given\nkstate <command> \[options\]\n\ncommands:\n/);
  assert.match(bare.stderr, /\n {2}topics create\|describe /);
  const help = await kstate(['--help']);
  assert.equal(help.code, 0);
  assert.equal(help.stderr, '');
  assert.equal(`kstate: no command given\n${help.stdout}`, bare.stderr);
});

test('the version is found by walking up to the package.json named kstate, as from dist/ and node_modules/', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'version-'));
  try {
    // A built package: dist/ may hold a package.json of its own (no name) between the module and the root.
    await writeJson(join(dir, 'pkg/package.json'), { name: 'kstate', version: '9.8.7' });
    await writeJson(join(dir, 'pkg/dist/package.json'), { type: 'module' });
    const built = join(dir, 'pkg/dist/connectors/kafka/cli/cli.js');
    assert.equal(packageVersion(pathToFileURL(built)), '9.8.7');
    assert.equal(packageVersion(built), '9.8.7');
    // Installed in an application: its own package.json above is not kstate's.
    await writeJson(join(dir, 'app/package.json'), { name: 'app', version: '1.0.0' });
    await writeJson(join(dir, 'app/node_modules/kstate/package.json'), { name: 'kstate', version: '2.0.0' });
    // A package.json that does not parse on the way is passed over.
    await mkdir(join(dir, 'app/node_modules/kstate/dist'), { recursive: true });
    await writeFile(join(dir, 'app/node_modules/kstate/dist/package.json'), '{');
    assert.equal(
      packageVersion(pathToFileURL(join(dir, 'app/node_modules/kstate/dist/connectors/kafka/cli/cli.js'))),
      '2.0.0',
    );
    // No kstate package above: undefined, not another package's version.
    assert.equal(packageVersion(pathToFileURL(join(dir, 'app/src/x.js'))), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the offline commands need no broker: kstate checkpoints with no KSTATE_BROKERS or KAFKA_BROKERS', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kstate-offline-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, KSTATE_CHECKPOINT_DIR: dir };
    delete env.KSTATE_BROKERS;
    delete env.KAFKA_BROKERS;
    const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'checkpoints', 'no-such-job'], { env }, (err, _out, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
    assert.doesNotMatch(r.stderr, /no Kafka brokers configured/);
    assert.equal(r.code, 69, r.stderr); // nothing there for that job: UNAVAILABLE, not a configuration error
    const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'run', 'job.ts'], { env }, (err, _out, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
    assert.equal(run.code, 78);
    assert.match(run.stderr, /no Kafka brokers configured/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
