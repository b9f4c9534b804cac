import cluster from 'node:cluster';
import { EXIT } from './exit-codes.ts';

/**
 * SIGTERM and SIGINT of `kstate run`, from the first line of the process on (docs/service.md,
 * "Shutdown"). A service takes a second or two to load its modules and reach the broker; a signal in
 * that time used to find no handler, and the process died by the signal (143) instead of exiting 0 or
 * 130 as documented. This module imports nothing heavy, so cli.ts installs it before it loads the rest.
 *
 *   signal | before `onStop`            | after `onStop`
 *   -------+----------------------------+-------------------------------------------------
 *   first  | remembered (`requested`)   | the graceful stop; the deadline starts
 *   second | exit 130 at once           | `onSecond`, then exit 130 at once
 *
 * A first signal that arrives before the stop is attached runs it as soon as it is attached; the
 * service checks `requested` before each slow step of its start and exits 0 when nothing runs yet.
 *
 * A worker of `--workers n` also stops on the primary's `{ kstate: 'stop' }` message (and exits at once
 * on `{ kstate: 'force' }`, the primary's second signal). The stop message is a request,
 * not a signal: a SIGTERM sent to the whole process group (systemd's default KillMode, `timeout`,
 * `kill -- -pgid`) reaches a worker both itself and through the primary, and must count once.
 */
export class ShutdownSignals {
  #signals = 0;
  #first: NodeJS.Signals | undefined;
  #onStop: ((signal: NodeJS.Signals) => void) | undefined;
  #onSecond: ((signal: NodeJS.Signals) => void) | undefined;
  #deadline: { ms: number; onDeadline: () => void } | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  readonly #exit: (code: number) => void;
  readonly #process: Pick<NodeJS.Process, 'on' | 'off'>;
  readonly #listener = (signal: NodeJS.Signals) => this.#received(signal);

  /** `exit` and `process` (where signals and the primary's messages come from) are for tests. */
  constructor(o: { exit?: (code: number) => void; process?: Pick<NodeJS.Process, 'on' | 'off'> } = {}) {
    this.#exit = o.exit ?? ((code) => process.exit(code));
    this.#process = o.process ?? process;
  }

  install(): this {
    this.#process.on('SIGTERM', this.#listener);
    this.#process.on('SIGINT', this.#listener);
    if (cluster.isWorker || this.#process !== process) this.#process.on('message', this.#message);
    return this;
  }

  readonly #message = (m: unknown) => {
    const what = (m as { kstate?: unknown } | null)?.kstate;
    if (what === 'stop') this.request('SIGTERM');
    else if (what === 'force') this.#force('SIGTERM');
  };

  /** A stop asked for other than by a signal (the primary's message): the first stop, never a second. */
  request(as: NodeJS.Signals): void {
    if (this.#first !== undefined) return;
    this.#first = as;
    if (this.#deadline !== undefined) this.#armDeadline();
    this.#onStop?.(as);
  }

  uninstall(): void {
    this.#process.off('SIGTERM', this.#listener);
    this.#process.off('SIGINT', this.#listener);
    this.#process.off('message', this.#message);
    clearTimeout(this.#deadlineTimer);
  }

  /** The first signal so far, if any: the service is to stop. */
  get requested(): NodeJS.Signals | undefined {
    return this.#first;
  }

  /**
   * After the first signal, `onDeadline` runs `ms` later (from now, when the signal came before this
   * call): the graceful stop took too long.
   */
  deadline(ms: number, onDeadline: () => void): void {
    this.#deadline = { ms, onDeadline };
    if (this.#first !== undefined) this.#armDeadline();
  }

  /**
   * The graceful stop, run once on the first signal (at once when it already came); `onSecond` runs on
   * a second signal, just before the process exits 130.
   */
  onStop(stop: (signal: NodeJS.Signals) => void, onSecond?: (signal: NodeJS.Signals) => void): void {
    this.#onStop = stop;
    this.#onSecond = onSecond;
    if (this.#first !== undefined) stop(this.#first);
  }

  #received(signal: NodeJS.Signals): void {
    if (++this.#signals > 1) {
      this.#force(signal);
      return;
    }
    if (this.#first !== undefined) return; // the primary's request came first
    this.#first = signal;
    if (this.#deadline !== undefined) this.#armDeadline();
    this.#onStop?.(signal);
  }

  #force(signal: NodeJS.Signals): void {
    this.#onSecond?.(signal);
    this.#exit(EXIT.FORCED);
  }

  #armDeadline(): void {
    const d = this.#deadline!;
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(d.onDeadline, d.ms);
    this.#deadlineTimer.unref();
  }
}
