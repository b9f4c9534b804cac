import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LevelBackendOptions, LevelKeyedStateBackend } from './level.ts';

let root: string | undefined;
let next = 0;

/**
 * For tests: a level backend in a fresh directory under one temporary root per process, removed when
 * the process exits.
 */
export function temporaryLevelBackend(
  options: Omit<LevelBackendOptions, 'directory'> = {},
): Promise<LevelKeyedStateBackend> {
  return LevelKeyedStateBackend.open({ ...options, directory: temporaryDirectory() });
}

/** A fresh directory under the process's temporary root. */
export function temporaryDirectory(): string {
  if (root === undefined) {
    const r = mkdtempSync(join(tmpdir(), 'kstate-level-'));
    root = r;
    process.on('exit', () => rmSync(r, { recursive: true, force: true }));
  }
  return join(root, String(next++));
}
