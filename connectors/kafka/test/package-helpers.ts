/**
 * Helpers of the tests that install the packed package outside the repository (package.test.ts,
 * deploy.test.ts): child processes with the test's own node and npm first on PATH, `npm pack` of the
 * repository, and waiting for a process group to end.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
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

/** `npm pack` of the repository (prepack builds dist/) into `dir`; the tarball's path. */
export async function packRepository(dir: string): Promise<string> {
  const packed = await sh('npm', ['pack', '--json', '--pack-destination', dir], REPO);
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string }[];
  return join(dir, info[0]!.filename);
}
