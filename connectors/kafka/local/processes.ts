/**
 * Child processes the harness must never leave behind. Every broker (and the storage formatter before
 * it) is registered here until it is stopped, so that an exit of this process (normal, an uncaught
 * error, or SIGINT/SIGTERM/SIGHUP) kills it and removes its data dir. A SIGKILL of this process is
 * covered by a watchdog: a small `sh` per broker that waits for its stdin pipe from us to close.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';

export interface Tracked {
  /** Graceful: SIGTERM, wait, SIGKILL after the grace period, remove files. */
  stop(): Promise<void>;
  /** Immediate and synchronous, for the `exit` hook: SIGKILL and remove files. */
  killNow(): void;
}

const tracked = new Set<Tracked>();
let hooksInstalled = false;
let signalHandlersWanted = false;
let stopping = false;

const SIGNAL_EXIT_CODES: Readonly<Record<string, number>> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

function onSignal(signal: NodeJS.Signals): void {
  if (stopping) {
    // Second signal: no more patience.
    for (const t of tracked) t.killNow();
    process.exit(SIGNAL_EXIT_CODES[signal] ?? 1);
  }
  stopping = true;
  process.stderr.write(`kafka harness: ${signal}, stopping the broker\n`);
  void Promise.allSettled([...tracked].map((t) => t.stop())).then(() =>
    process.exit(SIGNAL_EXIT_CODES[signal] ?? 1),
  );
}

/**
 * Registers a process group of work to clean up. With `exitOnSignal`, SIGINT/SIGTERM/SIGHUP stop every
 * tracked broker and exit this process (130/143/129); callers that own their signal handling (with-broker)
 * pass false and stop the broker themselves.
 */
export function track(t: Tracked, exitOnSignal: boolean): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', () => {
      for (const each of tracked) each.killNow();
    });
  }
  if (exitOnSignal && !signalHandlersWanted) {
    signalHandlersWanted = true;
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  }
  tracked.add(t);
  return () => {
    tracked.delete(t);
  };
}

/** Stops every tracked broker (for callers that handle signals themselves). */
export async function stopAll(): Promise<void> {
  await Promise.allSettled([...tracked].map((t) => t.stop()));
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitOf(child);
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
  });
  if ((await Promise.race([exited.then(() => 'exited' as const), late])) === 'late') child.kill('SIGKILL');
  clearTimeout(timer);
  await exited;
}

/**
 * A watchdog that, once this process is gone (its stdin pipe from us closes), stops `pid` (TERM, then
 * KILL after `graceS`) and removes `dir` (pass '' to keep it). Killed with SIGKILL on a normal stop.
 */
export function spawnWatchdog(pid: number, graceS: number, dir: string): ChildProcess {
  const script = [
    'while read -r _; do :; done',
    'kill -TERM "$1" 2>/dev/null',
    'i=0',
    'while kill -0 "$1" 2>/dev/null; do',
    '  i=$((i + 1))',
    '  if [ "$i" -gt $(($2 * 5)) ]; then kill -KILL "$1" 2>/dev/null; break; fi',
    '  sleep 0.2',
    'done',
    'if [ -n "$3" ]; then rm -rf -- "$3"; fi',
  ].join('\n');
  const watchdog = spawn(
    '/bin/sh',
    ['-c', script, 'kstate-kafka-watchdog', String(pid), String(graceS), dir],
    {
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
    },
  );
  watchdog.on('error', () => undefined);
  watchdog.stdin?.on('error', () => undefined);
  watchdog.unref();
  const stdin = watchdog.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null;
  stdin?.unref?.();
  return watchdog;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
