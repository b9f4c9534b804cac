import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureKafkaInstalled } from '../../local/install.ts';
import { brokersFromEnv } from './kafka.ts';

const run = promisify(execFile);
const RUNNER = fileURLToPath(new URL('../jobs/run-count.ts', import.meta.url));
const LIST_TXNS = fileURLToPath(new URL('../java/ListTransactions.java', import.meta.url));

/** A job process; `lines` collects its stdout lines. */
export interface JobProcess {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
  /** Resolves when a line matching `pattern` appeared. */
  waitFor(pattern: RegExp, ms: number): Promise<string>;
}

/**
 * Start a job process: `runner` (default: the count job, jobs/run-count.ts) with `args` and `env`
 * added (e.g. the service CLI: `startJobProcess(env, CLI, ['run', module])`). `wrap` is a command
 * prefix that runs node, e.g. in a network namespace (`['ip', 'netns', 'exec', name]`, netns.ts).
 */
export function startJobProcess(
  env: Record<string, string>,
  runner: string = RUNNER,
  args: readonly string[] = [],
  wrap: readonly string[] = [],
): JobProcess {
  const [command, ...prefix] = [...wrap, process.execPath];
  const child = spawn(command!, [...prefix, runner, ...args], {
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

/** Transactions of ids starting with `prefix` that are still open (neither committed nor aborted), and how many ids there are. */
export async function openTransactions(prefix: string): Promise<{ ids: number; open: [string, string][] }> {
  const states = await transactionStates(prefix);
  return {
    ids: states.size,
    open: [...states].filter(([, s]) => !/^(Empty|CompleteCommit|CompleteAbort)$/i.test(s)),
  };
}

/**
 * The crash loop of the SIGKILL tests: `kills` times, run `before(k)` (e.g. produce the next chunk of
 * input), start the job process, wait for its first restore, and SIGKILL it at a random moment up to
 * `maxDelayMs` later (a seeded sequence: restore, processing or a checkpoint). Returns the delays.
 * With CRASH_LOG=<file>, each killed process's stdout lines are appended there (for diagnosis).
 */
export async function killRepeatedly(o: {
  readonly kills: number;
  readonly env: Record<string, string>;
  readonly runner?: string;
  readonly seed: number;
  readonly maxDelayMs?: number;
  readonly before?: (k: number) => Promise<void>;
}): Promise<number[]> {
  let seed = o.seed;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const delays: number[] = [];
  for (let k = 0; k < o.kills; k++) {
    await o.before?.(k);
    const p = startJobProcess(o.env, o.runner);
    await p.waitFor(/^restored /, 60_000);
    const delay = Math.floor(random() * (o.maxDelayMs ?? 1500));
    await new Promise((r) => setTimeout(r, delay));
    p.child.kill('SIGKILL');
    await p.exited;
    delays.push(delay);
    if (process.env.CRASH_LOG) {
      appendFileSync(
        process.env.CRASH_LOG,
        `--- run ${k}, killed ${delay} ms after restore\n${p.lines.join('\n')}\n`,
      );
    }
  }
  return delays;
}
