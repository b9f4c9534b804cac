import type { Clock } from '../api/clock.ts';

/**
 * A task's mailbox (Flink's MailboxProcessor, reduced to what a single-threaded loop needs):
 * asynchronous work (a checkpoint's asynchronous part, its commit, a timeout, a source that failed)
 * posts its outcome here as a message, and the task loop applies the messages on its own turn. So no
 * promise continuation changes the task's fields or calls user code: the loop does, between rounds.
 *
 * Messages are per checkpoint or per failure, never per record: records reach the task through its
 * input channels, and `wake()` only ends the loop's wait for them.
 *
 * The loop also waits here, in `wait`: until a message is posted, `wake()` is called (records
 * arrived, a request, a sink ready again), or the clock reaches a deadline.
 */
export class Mailbox<M> {
  readonly #clock: Clock;
  #mail: M[] = [];
  #closed = false;
  #resolve: (() => void) | undefined;
  #cancelTimer: (() => void) | undefined;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Post a message for the loop's next turn (dropped once the mailbox is closed). */
  post(message: M): void {
    if (this.#closed) return;
    this.#mail.push(message);
    this.wake();
  }

  /**
   * Apply every message posted so far, in the order posted, including those posted while applying.
   * A message is taken out before it is applied, so one whose `apply` throws is not applied again.
   * Returns how many were applied.
   */
  drain(apply: (message: M) => void): number {
    let applied = 0;
    for (; this.#mail.length > 0; applied++) apply(this.#mail.shift()!);
    return applied;
  }

  /** End the loop's current wait, if it waits. */
  wake(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }

  /** Wait for a message, a `wake()`, or the clock to reach `at`. At once when mail is waiting. */
  wait(at?: number): Promise<void> {
    if (this.#mail.length > 0 || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#resolve = resolve;
      if (at !== undefined) this.#cancelTimer = this.#clock.schedule(at, () => this.wake());
    });
  }

  /** No more messages: returns those not applied, ends a wait, and drops what is posted later. */
  close(): M[] {
    this.#closed = true;
    const rest = this.#mail;
    this.#mail = [];
    this.wake();
    return rest;
  }
}
