/**
 * Where things live inside checkpoint storage, as storage-relative POSIX paths. Both storages use
 * the same layout, so a FileRef means the same thing in memory and on disk:
 *
 * ```
 * <jobId>/<taskId>/chk-<checkpointId>.json     committed checkpoint metadata
 * <jobId>/<taskId>/savepoints/<name>.json      committed savepoint metadata
 * <jobId>/<taskId>/files/<checkpointId>-<name> snapshot files (immutable, shared by later checkpoints)
 * ```
 *
 * Every segment is checked here, so no caller-supplied id or name can escape its scope (`..`, `/`),
 * and names never start with `.`, which keeps them apart from temporary files (`.tmp-*`).
 */
import { StreamError } from '../../api/errors.ts';
import type { Scope } from './storage.ts';

/** Kafka's legal topic characters, so a jobId that names topics also names directories. */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;
const CHECKPOINT_FILE = /^chk-(0|[1-9][0-9]{0,15})\.json$/;
const SAVEPOINT_FILE = /^(.+)\.json$/;
const DATA_FILE = /^(0|[1-9][0-9]{0,15})-(.+)$/;

export const FILES_DIR = 'files';
export const SAVEPOINTS_DIR = 'savepoints';
/** Prefix of temporary files; no valid name starts with `.`, so they never collide. */
export const TEMP_PREFIX = '.tmp-';

function checkSegment(what: string, value: unknown): string {
  if (typeof value !== 'string' || !SEGMENT.test(value)) {
    throw new StreamError(
      'CONFIG_INVALID',
      `checkpoint storage: ${what} ${JSON.stringify(value)} is not usable as a path segment; ` +
        'use 1-200 characters from [A-Za-z0-9._-], not starting with "."',
    );
  }
  return value;
}

export function checkScope(scope: Scope): void {
  if (typeof scope !== 'object' || scope === null) {
    throw new StreamError(
      'CONFIG_INVALID',
      `checkpoint storage: scope must be { jobId, taskId }, got ${scope}`,
    );
  }
  checkSegment('jobId', scope.jobId);
  checkSegment('taskId', scope.taskId);
}

export function checkCheckpointId(id: unknown): number {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    throw new StreamError(
      'CONFIG_INVALID',
      `checkpoint storage: checkpoint id ${String(id)} must be a non-negative safe integer`,
    );
  }
  return id;
}

export function checkFileName(name: unknown): string {
  return checkSegment('file name', name);
}

export function checkSavepointName(name: unknown): string {
  return checkSegment('savepoint name', name);
}

export function scopeDir(scope: Scope): string {
  return `${scope.jobId}/${scope.taskId}`;
}

export function filesDir(scope: Scope): string {
  return `${scopeDir(scope)}/${FILES_DIR}`;
}

export function savepointsDir(scope: Scope): string {
  return `${scopeDir(scope)}/${SAVEPOINTS_DIR}`;
}

export function dataFilePath(scope: Scope, checkpointId: number, name: string): string {
  return `${filesDir(scope)}/${checkpointId}-${name}`;
}

export function checkpointMetaPath(scope: Scope, checkpointId: number): string {
  return `${scopeDir(scope)}/chk-${checkpointId}.json`;
}

export function savepointMetaPath(scope: Scope, name: string): string {
  return `${savepointsDir(scope)}/${name}.json`;
}

/** The checkpoint id in a `chk-<id>.json` name, or undefined for any other name. */
export function parseCheckpointMetaName(fileName: string): number | undefined {
  const m = CHECKPOINT_FILE.exec(fileName);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** The savepoint name in a `<name>.json` name of the savepoints directory, or undefined. */
export function parseSavepointMetaName(fileName: string): string | undefined {
  const m = SAVEPOINT_FILE.exec(fileName);
  return m?.[1] !== undefined && SEGMENT.test(m[1]) ? m[1] : undefined;
}

/** The checkpoint id that wrote a data file, from its `<checkpointId>-<name>` name, or undefined. */
export function parseDataFileName(fileName: string): number | undefined {
  const m = DATA_FILE.exec(fileName);
  return m?.[1] !== undefined && m[2] !== undefined && SEGMENT.test(m[2]) ? Number(m[1]) : undefined;
}

export interface DataFileLocation {
  readonly jobId: string;
  readonly taskId: string;
  readonly checkpointId: number;
}

/**
 * Parses the path of a FileRef (`<jobId>/<taskId>/files/<checkpointId>-<name>`), or returns
 * undefined when it is anything else (an absolute path, `..`, another directory ...).
 */
export function parseDataFilePath(path: unknown): DataFileLocation | undefined {
  if (typeof path !== 'string') return undefined;
  const parts = path.split('/');
  if (parts.length !== 4) return undefined;
  const [jobId, taskId, dir, fileName] = parts as [string, string, string, string];
  if (!SEGMENT.test(jobId) || !SEGMENT.test(taskId) || dir !== FILES_DIR) return undefined;
  const checkpointId = parseDataFileName(fileName);
  return checkpointId === undefined ? undefined : { jobId, taskId, checkpointId };
}

export function describeScope(scope: Scope): string {
  return `job "${scope.jobId}" task "${scope.taskId}"`;
}
