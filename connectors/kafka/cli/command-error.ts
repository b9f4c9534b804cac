/**
 * A command's expected failure: one line for stderr and the exit code it ends with (exit-codes.ts).
 * The CLI prints `kstate: <message>` and exits with `exit`; the cause is kept for debugging.
 */
export class CommandError extends Error {
  readonly exit: number;
  constructor(exit: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CommandError';
    this.exit = exit;
  }
}
