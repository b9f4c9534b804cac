/**
 * Helpers of the tests that install the packed package outside the repository (package.test.ts,
 * deploy.test.ts): child processes with the test's own node and npm first on PATH, `npm pack` of the
 * repository, and waiting for a process group to end.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
export const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
/** npm and npx of the node running the tests (Node 24 in CI), whatever the machine's own node is. */
export const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;

export async function sh(
  command: string,
  args: readonly string[],
  cwd: string,
  timeoutMs = 600_000,
  env: Record<string, string> = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileP(command, args, {
      cwd,
      env: { ...process.env, PATH, ...env },
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `${command} ${args.join(' ')} (in ${cwd}) failed: ${x.message}\n${x.stdout ?? ''}\n${x.stderr ?? ''}`,
    );
  }
}

/** Waits until no process of group `pgid` is left. */
export async function groupGone(pgid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`process group ${pgid} still runs ${ms} ms after SIGTERM`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * `npm pack` of the repository into `dir`; the tarball's path. prepack's build empties and rewrites
 * dist/, so two packs of one checkout at once (package.test.ts and deploy.test.ts under
 * --test-concurrency, or two people's runs) would pack each other's half-written dist/: a lock
 * directory in the OS temp directory, per checkout, lets one pack at a time. A lock whose holder
 * process is gone is taken over.
 */
export async function packRepository(dir: string): Promise<string> {
  const lock = join(
    tmpdir(),
    `kstate-pack-${createHash('sha256').update(REPO).digest('hex').slice(0, 12)}.lock`,
  );
  const deadline = Date.now() + 20 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (!holderAlive(lock)) rmSync(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`${lock} is still held after 20 minutes`);
      else await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    const packed = await sh('npm', ['pack', '--json', '--pack-destination', dir], REPO);
    const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string }[];
    return join(dir, info[0]!.filename);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Whether the process that holds `lock` runs (a lock without its pid file yet counts as held). */
function holderAlive(lock: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(lock, 'pid'), 'utf8'));
  } catch {
    return true;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
