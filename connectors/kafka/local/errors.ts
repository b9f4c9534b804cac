/**
 * Every way the harness can fail on bad input, each with one line that says what is wrong and what to do.
 * The first line of `message` is that line; `details` (a log tail, mvn output) follows it when printed.
 */
export type HarnessErrorCode =
  | 'UNKNOWN_VERSION'
  | 'JAVA_MISSING'
  | 'JAVA_TOO_OLD'
  | 'MVN_MISSING'
  | 'MVN_FAILED'
  | 'BAD_PORT'
  | 'PORT_IN_USE'
  | 'FORMAT_FAILED'
  | 'BROKER_EXITED'
  | 'S3PROXY_EXITED'
  | 'START_TIMEOUT'
  | 'BROKERS_UNREACHABLE';

export interface HarnessErrorOptions {
  readonly details?: string;
  readonly cause?: unknown;
  /** The broker's java process, when one was started (it has been stopped when the error is thrown). */
  readonly pid?: number;
  /** The broker's data dir, when one was made (it has been removed unless KAFKA_KEEP_DATA is set). */
  readonly dataDir?: string;
}

export class HarnessError extends Error {
  readonly code: HarnessErrorCode;
  readonly details: string | undefined;
  readonly pid: number | undefined;
  readonly dataDir: string | undefined;

  constructor(code: HarnessErrorCode, line: string, options: HarnessErrorOptions = {}) {
    super(line, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HarnessError';
    this.code = code;
    this.details = options.details;
    this.pid = options.pid;
    this.dataDir = options.dataDir;
  }
}

/**
 * What a CLI prints for an error: the one line, then the details indented, if any. `harness` names the
 * harness in the prefix (the S3 harness passes 's3 harness').
 */
export function formatHarnessError(error: unknown, harness = 'kafka harness'): string {
  if (error instanceof HarnessError) {
    const details =
      error.details === undefined || error.details.trim() === ''
        ? ''
        : `\n${error.details
            .trimEnd()
            .split('\n')
            .map((line) => `    ${line}`)
            .join('\n')}`;
    return `${harness}: ${error.message}${details}`;
  }
  return `${harness}: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
}

/** The last `count` non-empty lines of a text, for error details. */
export function lastLines(text: string, count: number): string {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .slice(-count)
    .join('\n');
}
