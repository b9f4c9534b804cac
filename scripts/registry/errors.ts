/**
 * Every way the registry harness can fail, each with one line that says what is wrong and what to do.
 * `details` (a log tail, mvn output) follows the line when printed.
 */
export type RegistryHarnessErrorCode =
  | 'JAVA_MISSING'
  | 'JAVA_TOO_OLD'
  | 'MVN_MISSING'
  | 'MVN_FAILED'
  | 'BAD_PORT'
  | 'PORT_IN_USE'
  | 'REGISTRY_EXITED'
  | 'START_TIMEOUT'
  | 'REGISTRY_UNREACHABLE';

export class RegistryHarnessError extends Error {
  readonly code: RegistryHarnessErrorCode;
  readonly details: string | undefined;

  constructor(
    code: RegistryHarnessErrorCode,
    line: string,
    options: { readonly details?: string; readonly cause?: unknown } = {},
  ) {
    super(line, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryHarnessError';
    this.code = code;
    this.details = options.details;
  }
}

/** What a CLI prints for an error: `registry harness: <line>`, then the details indented. */
export function formatRegistryHarnessError(error: unknown): string {
  if (error instanceof RegistryHarnessError) {
    const details =
      error.details === undefined || error.details.trim() === ''
        ? ''
        : `\n${error.details
            .trimEnd()
            .split('\n')
            .map((line) => `    ${line}`)
            .join('\n')}`;
    return `registry harness: ${error.message}${details}`;
  }
  return `registry harness: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
}
