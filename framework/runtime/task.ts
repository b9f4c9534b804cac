import { randomBytes } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { CheckpointMetadata, Scope } from '../checkpoint/storage/storage.ts';
import type { KeyedStateBackend } from '../state/backend.ts';
import type { InputChannel, QueuedRecord } from './channel.ts';
import { Checkpointer, type CheckpointMail } from './checkpointer.ts';
import { sourceFailure, TaskInputs } from './inputs.ts';
import { Mailbox } from './mailbox.ts';
import { type CurrentRecord, handleRecordError } from './record-errors.ts';
import { openTask, type TaskOptions, taskScope } from './task-open.ts';
import { canMove, isLive, type TaskState } from './task-state.ts';
import type { WatermarkValve } from './watermark-valve.ts';
import type { OperatorWiring } from './wiring.ts';

export type { RestoreFrom } from '../checkpoint/decisions.ts';
export type { CheckpointStats, TaskListener } from './listener.ts';
export { type TaskOptions, taskScope } from './task-open.ts';

/** What the task's mailbox carries: the checkpointer's messages, and failures from outside the loop. */
type TaskMail =
  | CheckpointMail
  | { readonly kind: 'source-failed'; readonly channel: InputChannel; readonly error: unknown }
  | { readonly kind: 'failed'; readonly error: unknown };

/** Records taken from one channel per round before the loop moves to the next one. */
const ROUND_BATCH = 64;

/**
 * One task: stage x partition. Owns the operator instances of its stage, the input channels of its
 * source partitions (`TaskInputs`), one keyed backend, its event time (`WatermarkValve`) and its
 * checkpoints (`Checkpointer`: each one a consistent snapshot of this task alone).
 *
 * Lifecycle (`task-state.ts`): `run()` restores, then loops until the input ends (after the final
 * checkpoint committed: finished) or `stop()`; it rejects when the task fails. The owner then calls
 * `abort()` (closed: nothing of this incarnation commits afterwards), and after a failure starts a new Task.
 *
 * The loop owns the task: each turn it applies the mailbox (what asynchronous work posted: a
 * checkpoint's asynchronous part done, its commit, a timeout, a source failure), then triggers
 * checkpoints, fires processing-time timers, takes a round of records (up to ROUND_BATCH per channel,
 * round-robin) through the chained operators, and advances the watermarks. No promise continuation
 * changes a field of the task or calls user code.
 */
export class Task {
  readonly scope: Scope;
  readonly partition: number;
  readonly #o: TaskOptions;
  readonly #attempt = randomBytes(4).toString('hex');
  #state: TaskState = { name: 'created' };
  readonly #mailbox: Mailbox<TaskMail>;
  readonly #inputs = new TaskInputs();
  readonly #checkpointer: Checkpointer;
  #backend: KeyedStateBackend | undefined;
  #wiring: OperatorWiring | undefined;
  #valve: WatermarkValve | undefined;
  /** Records, timers and watermark steps so far (a checkpoint is skipped when nothing happened). */
  #activity = 0;
  /** The record being emitted from a source, while its operators process it (for record errors). */
  readonly #current: CurrentRecord = {};
  /** The sink backpressure promise the loop last waited on (woken once when it settles). */
  #backpressure: Promise<void> | undefined;
  /** The final checkpoint's id, once triggered. */
  #finalId: number | undefined;
  /** The teardown so far (`abort()` may come again, e.g. while the restore still ran). */
  #closing: Promise<void> = Promise.resolve();
  #operatorsAborted = false;
  #backendClosed = false;
  /** The loop's clock reading for the round under way (records' processing time). */
  #now = 0;
  /** Records taken from channels so far (for tests and metrics). */
  recordsIn = 0;

  constructor(options: TaskOptions) {
    this.#o = options;
    this.scope = taskScope(options.jobId, options.plan, options.stage, options.partition);
    this.partition = options.partition;
    this.#mailbox = new Mailbox(options.clock);
    this.#checkpointer = new Checkpointer({
      scope: this.scope,
      jobId: options.jobId,
      attempt: this.#attempt,
      storage: options.storage,
      clock: options.clock,
      config: options.config.checkpoints,
      faults: options.faults,
      listener: options.listener,
      post: (m) => this.#mailbox.post(m),
      wake: () => this.#mailbox.wake(),
      fail: (e) => this.#fail(e),
      live: () => isLive(this.#state),
      activity: () => this.#activity,
    });
  }

  /** Records each operator emitted since this task started (for metrics). */
  recordsOut(): { uid: string; records: number }[] {
    return this.#wiring?.emitted() ?? [];
  }

  /** Late records each process-function operator dropped since this task started (for metrics). */
  lateRecordsDropped(): { uid: string; records: number }[] {
    return this.#wiring?.lateDropped() ?? [];
  }

  /** Records this task's sinks took since it started: its output (for metrics). */
  recordsWritten(): number {
    return this.#wiring?.written() ?? 0;
  }

  /** Current event-time watermark of each operator (-Infinity before the first). */
  watermarks(): { uid: string; watermark: number }[] {
    return (this.#wiring?.operators ?? []).map((op, i) => ({
      uid: op.uid,
      watermark: this.#valve?.of(i) ?? Number.NEGATIVE_INFINITY,
    }));
  }

  get lastCompletedCheckpoint(): number | undefined {
    return this.#checkpointer.lastCompleted;
  }

  /** Restore, process, and return when the input has ended (after the final checkpoint) or on stop. */
  async run(): Promise<void> {
    if (!this.#to({ name: 'restoring' })) return;
    try {
      const { valve } = await openTask({
        options: this.#o,
        scope: this.scope,
        attempt: this.#attempt,
        inputs: this.#inputs,
        checkpointer: this.#checkpointer,
        operatorHooks: {
          watermarkOf: (i) => this.#valve?.of(i) ?? Number.NEGATIVE_INFINITY,
          currentSource: () => this.#current.channel?.sourceUid,
          recordError: (error, keyBytes, user) =>
            handleRecordError(
              {
                taskId: this.scope.taskId,
                wiring: this.#wiring!,
                defaultPolicy: this.#o.config.onUserFunctionError,
                listener: this.#o.listener,
              },
              this.#current,
              error,
              keyBytes,
              user,
            ),
        },
        wake: () => this.#mailbox.wake(),
        sourceFailed: (channel, error) => this.#mailbox.post({ kind: 'source-failed', channel, error }),
        adopt: (part) => {
          if ('backend' in part) this.#backend = part.backend;
          else this.#wiring = part.wiring;
        },
      });
      this.#valve = valve;
      if (!this.#to({ name: 'running' })) return this.#ended();
      await this.#loop();
    } catch (e) {
      this.#fail(e);
      throw e;
    }
  }

  /** Ask for a savepoint; resolves with its metadata once committed. */
  savepoint(name: string): Promise<CheckpointMetadata> {
    return this.#checkpointer.request(name);
  }

  /** Ask for a checkpoint now (outside the interval); resolves once committed. */
  checkpointNow(): Promise<CheckpointMetadata> {
    return this.#checkpointer.request();
  }

  /** Stop processing without a final checkpoint; `run()` then returns. */
  stop(): void {
    this.#to({ name: 'stopped' });
    this.#mailbox.wake();
  }

  /** Hold back (or release) the channels of one source: the task stops taking their records. */
  hold(sourceUid: string, held: boolean): void {
    this.#inputs.hold(sourceUid, held);
    this.#mailbox.wake();
  }

  /**
   * Tear down after a failure or stop: nothing of this incarnation commits after this resolves.
   * Safe to call again (each part is torn down once; a second call also covers what a restore still
   * under way at the first made since).
   */
  abort(): Promise<void> {
    const close = () => this.#close();
    this.#closing = this.#closing.then(close, close);
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#to({ name: 'closed' });
    this.#mailbox.close();
    this.#inputs.stop();
    await this.#checkpointer.close();
    await this.#inputs.closeReaders();
    if (this.#wiring && !this.#operatorsAborted) {
      this.#operatorsAborted = true;
      await Promise.allSettled(this.#wiring.operators.map((o) => o.abort()));
    }
    if (this.#backend && !this.#backendClosed) {
      this.#backendClosed = true;
      await this.#backend.close().catch(() => {});
    }
  }

  #to(next: TaskState): boolean {
    if (!canMove(this.#state.name, next.name)) return false;
    this.#state = next;
    return true;
  }

  /** Fail the task (on the loop's turn, or as the loop ends): the first failure wins. */
  #fail(error: unknown): void {
    if (this.#to({ name: 'failed', error })) this.#mailbox.wake();
  }

  /** The loop ends in the state it is in: rejects when it failed. */
  #ended(): void {
    if (this.#state.name === 'failed') throw this.#state.error;
  }

  // ---------------------------------------------------------------- the loop

  async #loop(): Promise<void> {
    const ops = this.#wiring!.operators;
    const cp = this.#checkpointer;
    let rounds = 0;
    let rr = 0;
    for (;;) {
      const applied = this.#mailbox.drain(this.#apply);
      if (!isLive(this.#state)) return this.#ended();
      if (applied > 0 && cp.stepUnderWay) {
        // What the mail started (the next step of a checkpoint) may settle at once: wait for its
        // message up to one turn of the event loop, so a checkpoint's steps follow each other
        // without a round (or other tasks' turns) between them.
        await Promise.race([this.#mailbox.wait(), yieldToEventLoop()]);
        continue;
      }
      const now = this.#o.clock.now();
      this.#now = now;
      if (cp.holdsInput) {
        // A synchronous checkpoint (or the final one): processing waits until it settled.
        await this.#mailbox.wait();
        continue;
      }
      if (this.#state.name === 'finishing') {
        if (await this.#finish(now)) return;
        continue;
      }
      const backpressure = this.#sinkBackpressure();
      if (backpressure) {
        await this.#waitFor(backpressure);
        continue;
      }
      cp.tick(now);
      for (const op of ops) {
        const due = op.nextProcessingTimer();
        if (due !== undefined && due <= now) this.#activity++;
        op.fireProcessingTimers(now);
      }
      let worked = 0;
      const channels = this.#inputs.channels;
      const n = channels.length;
      for (let k = 0; k < n; k++) {
        const c = channels[(rr + k) % n]!;
        let took = 0;
        while (took < ROUND_BATCH && c.available && !cp.holdsInput) {
          const records = c.takeRecords(ROUND_BATCH - took, this.#onRecord);
          this.recordsIn += records;
          this.#activity += records;
          if (records === 0) this.#handle(c); // a barrier or the end
          took += Math.max(records, 1);
        }
        if (took > 0) this.#inputs.checkFailed(c);
        worked += took;
      }
      rr++;
      this.#activity += this.#valve!.update(now, channels, (i, wm) => ops[i]!.advanceWatermark(wm));
      if (this.#inputs.allFinished) {
        // End of input: event time to +infinity (every timer fires), then the final checkpoint.
        this.#to({ name: 'finishing' });
        this.#valve!.finish((i, wm) => ops[i]!.advanceWatermark(wm));
        continue;
      }
      // Other tasks and I/O get a turn every 8 rounds; every round while a checkpoint step is under
      // way, whose file writes and commit continue only in such turns.
      if (worked === 0) await this.#sleep(now);
      else if (++rounds % 8 === 0 || cp.stepUnderWay) await yieldToEventLoop();
    }
  }

  /** Apply one message of the mailbox (on the loop's turn). */
  readonly #apply = (m: TaskMail): void => {
    switch (m.kind) {
      case 'source-failed':
        this.#fail(sourceFailure(m.channel, m.error));
        return;
      case 'failed':
        this.#fail(m.error);
        return;
      default:
        this.#checkpointer.apply(m);
    }
  };

  /** One record of a channel's run (`takeRecords`), through the chained operators. */
  readonly #onRecord = (r: QueuedRecord, c: InputChannel): void => {
    const ts = this.#valve!.onRecord(c.index, c.sourceUid, r.value, r.timestamp, this.#now);
    const cur = this.#current; // one object, filled per record (no allocation per record)
    cur.channel = c;
    cur.origin = r.origin;
    cur.timestamp = ts;
    this.#wiring!.emitFromSource(c.sourceUid, r.value, ts, r.tag);
    cur.channel = cur.origin = undefined;
  };

  /** The element at the head of `c` when `takeRecords` took none: a barrier or the end (or a record: processed). */
  #handle(c: InputChannel): void {
    const e = c.take()!;
    switch (e.kind) {
      case 'record':
        this.recordsIn++;
        this.#activity++;
        this.#onRecord(e, c);
        return;
      case 'barrier':
        this.#checkpointer.onBarrier(c, e.checkpointId, e.position);
        return;
      case 'end':
        this.#activity++;
        c.finished = true;
        this.#checkpointer.onChannelFinished();
    }
  }

  /** Backpressure from a sink: a promise while one cannot take more records. */
  #sinkBackpressure(): Promise<void> | undefined {
    for (const op of this.#wiring!.operators) {
      const p = op.ready?.();
      if (p) return p;
    }
    return undefined;
  }

  /** Wait until `backpressure` settles, or mail arrives (a commit may be what frees the sink). */
  async #waitFor(backpressure: Promise<void>): Promise<void> {
    if (this.#backpressure !== backpressure) {
      this.#backpressure = backpressure;
      backpressure.then(
        () => this.#mailbox.wake(),
        (error: unknown) => this.#mailbox.post({ kind: 'failed', error }),
      );
    }
    await this.#mailbox.wait();
  }

  /** Nothing to take: wait for records, mail, or the next deadline (trigger, timer, idleness). */
  async #sleep(now: number): Promise<void> {
    let next = this.#checkpointer.nextDeadline(now);
    const earlier = (t: number | undefined) => {
      if (t !== undefined && (next === undefined || t < next)) next = t;
    };
    for (const op of this.#wiring!.operators) earlier(op.nextProcessingTimer());
    // Only a channel that is not idle yet has an idleness deadline.
    earlier(this.#valve!.nextIdleAt(now, this.#inputs.channels));
    // Due work (e.g. a timer registered for the past): run it after the event loop had a turn,
    // never in a microtask loop that would starve I/O.
    if (next !== undefined && next <= now) await yieldToEventLoop();
    else await this.#mailbox.wait(next);
  }

  /**
   * Finishing: once no checkpoint is in flight, the final checkpoint; once it completed, close the
   * operators, readers and backend. Returns true when the task finished.
   */
  async #finish(now: number): Promise<boolean> {
    const cp = this.#checkpointer;
    if (!cp.idle) {
      await this.#mailbox.wait();
      return false;
    }
    if (this.#finalId === undefined || !cp.completed(this.#finalId)) {
      this.#finalId = cp.trigger(now, undefined, true);
      return false;
    }
    for (const op of this.#wiring!.operators) await op.close();
    await this.#inputs.closeReaders();
    this.#o.listener?.taskEnding?.({ taskId: this.scope.taskId, partition: this.partition });
    this.#backendClosed = true;
    await this.#backend!.close();
    this.#to({ name: 'finished' });
    return true;
  }
}
