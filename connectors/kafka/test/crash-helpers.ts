import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureKafkaInstalled } from '../../../scripts/kafka/install.ts';
import { brokersFromEnv } from './kafka.ts';

const run = promisify(execFile);
const RUNNER = fileURLToPath(new URL('./jobs/run-count.ts', import.meta.url));
const LIST_TXNS = fileURLToPath(new URL('./java/ListTransactions.java', import.meta.url));

/** A job process; `lines` collects its stdout lines. */
export interface JobProcess {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
  /** Resolves when a line matching `pattern` appeared. */
  waitFor(pattern: RegExp, ms: number): Promise<string>;
}

/** Start a job process: `runner` (default: the count job, jobs/run-count.ts) with `env` added. */
export function startJobProcess(env: Record<string, string>, runner: string = RUNNER): JobProcess {
  const child = spawn(process.execPath, [runner], {
    env: { ...process.env, KAFKA_BROKERS: brokersFromEnv().join(','), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i = buf.indexOf('\n');
    while (i >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pattern.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
      i = buf.indexOf('\n');
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

/** Transactions of ids starting with `prefix` and their states, from the broker via the Java admin client. */
export async function transactionStates(prefix: string): Promise<Map<string, string>> {
  const kafka = await ensureKafkaInstalled(process.env.KAFKA_VERSION);
  const { stdout } = await run(
    'java',
    ['-cp', kafka.classpath, LIST_TXNS, brokersFromEnv().join(','), prefix],
    {
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  const states = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [id, state] = line.trim().split(/\s+/);
    if (id && state) states.set(id, state);
  }
  return states;
}
