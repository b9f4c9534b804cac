import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { brokersFromEnv } from '../kafka.ts';

const RUNNER = fileURLToPath(new URL('./ml-run.ts', import.meta.url));

/** The ML job in a child process (`ml-run.ts`); `lines` collects its stdout lines. */
export interface MlProcess {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
  /** Resolves with the first line matching `pattern` (seen before or after the call). */
  waitFor(pattern: RegExp, ms: number): Promise<string>;
}

export function startMlProcess(env: Record<string, string>): MlProcess {
  const child = spawn(process.execPath, [RUNNER], {
    env: { ...process.env, KAFKA_BROKERS: brokersFromEnv().join(','), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      const due = waiters.filter((w) => w.pattern.test(line));
      waiters = waiters.filter((w) => !due.includes(w));
      for (const w of due) w.resolve(line);
    }
  });
  child.stderr!.on('data', (d: Buffer) => lines.push(`stderr: ${d.toString().trim()}`));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    lines,
    exited,
    waitFor(pattern, ms) {
      const seen = lines.find((l) => pattern.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () =>
            reject(
              new Error(
                `no line matching ${pattern} within ${ms} ms; last lines:\n${lines.slice(-15).join('\n')}`,
              ),
            ),
          ms,
        );
        waiters.push({
          pattern,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
    },
  };
}
