import type { Clock } from '../api/clock.ts';
import type { CheckpointConfig } from '../api/config.ts';
import { StreamError } from '../api/errors.ts';
import type { CheckpointCommitter } from '../api/sink.ts';
import { decideOnCheckpointFailure, decideTrigger } from '../checkpoint/decisions.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import type { KeyedStateBackend, KeyedStateCapture, KeyedStateHandle } from '../state/backend.ts';
import { type AlignmentResult, BarrierAligner } from './alignment.ts';
import type { InflightRecord, InputChannel } from './channel.ts';
import type { FaultInjector } from './faults.ts';
import type { TaskInputs } from './inputs.ts';
import type { TaskListener } from './listener.ts';
import type { OperatorSnapshot, RuntimeOperator } from './operators/types.ts';
import {
  type ChannelPosition,
  type Committed,
  commitCheckpoint,
  type TaskPayloadBase,
  writeCheckpointFiles,
} from './snapshot-io.ts';

type Outcome = { readonly ok: true } | { readonly ok: false; readonly error: unknown };

/** What asynchronous steps of a checkpoint post to the task's mailbox; the task loop applies it. */
export type CheckpointMail =
  /** (4) The asynchronous part wrote the files (or failed). */
  | { readonly kind: 'written'; readonly id: number; readonly result: Written | { readonly error: unknown } }
  /** (4) One operator's flush settled (sinks acknowledge what they prepared). */
  | { readonly kind: 'flushed'; readonly id: number; readonly outcome: Outcome }
  /** (5) The commit settled. */
  | {
      readonly kind: 'committed';
      readonly id: number;
      readonly result: Committed | { readonly error: unknown };
    }
  /** (5) One operator's notifyComplete settled. */
  | { readonly kind: 'notified'; readonly id: number; readonly outcome: Outcome }
  /** (6) The checkpoint's timeout passed. */
  | { readonly kind: 'timed-out'; readonly id: number }
  /** A failed checkpoint's files were discarded: report it (failure tolerance). */
  | { readonly kind: 'discarded'; readonly id: number };

interface Written {
  readonly meta: CheckpointMetadata;
  readonly handle: KeyedStateHandle | undefined;
  /** The metadata file a committer's pointer names (also listed in `meta.files`). */
  readonly pointedFile: FileRef | undefined;
  readonly asyncMs: number;
}

interface Checkpoint {
  readonly id: number;
  readonly savepoint: string | undefined;
  readonly final: boolean;
  phase: 'aligning' | 'writing' | 'flushing' | 'ready' | 'committing' | 'notifying';
  /** Processing waits until this checkpoint settles (snapshot 'sync', or the final checkpoint). */
  holdsInput: boolean;
  cancelTimeout: () => void;
  /** Resolves the incremental base of the next capture: this checkpoint's handle once committed. */
  settleHandle: (h: KeyedStateHandle | undefined) => void;
  /** Set by the steps, in order. */
  alignment?: AlignmentResult;
  syncMs?: number;
  inflightRecords?: number;
  written?: Written;
  committed?: Committed;
  failure?: unknown;
}

interface Request {
  readonly savepoint?: string;
  resolve(m: CheckpointMetadata): void;
  reject(e: unknown): void;
}

/** What the checkpointer works with; set by `open` once the task restored. */
export interface CheckpointerRuntime {
  readonly backend: KeyedStateBackend;
  readonly operators: readonly RuntimeOperator[];
  readonly inputs: TaskInputs;
  /** The highest event timestamp taken from channel `channel` (the watermark valve's), if any. */
  readonly eventTime: (channel: number) => number | undefined;
  readonly committer: CheckpointCommitter | undefined;
  /** Uids of broadcast sources: every task reads them, their positions live in the snapshot only. */
  readonly broadcastUids: ReadonlySet<string>;
  /** The payload fields that do not change between checkpoints (stage, partitions, lineage ...). */
  readonly payload: TaskPayloadBase;
  readonly nextCheckpointId: number;
  /** The checkpoint restored (its handle is the next capture's incremental base), if any. */
  readonly restoredId: number | undefined;
  readonly restoredHandle: KeyedStateHandle | undefined;
}

export interface CheckpointerOptions {
  readonly scope: Scope;
  readonly jobId: string;
  /** This incarnation's attempt id (names the files it writes). */
  readonly attempt: string;
  readonly storage: CheckpointStorage;
  readonly clock: Clock;
  readonly config: CheckpointConfig;
  readonly faults: FaultInjector | undefined;
  readonly listener: TaskListener | undefined;
  /** Post a message to the task's mailbox (from asynchronous continuations). */
  readonly post: (mail: CheckpointMail) => void;
  /** End the task loop's wait. */
  readonly wake: () => void;
  /** Fail the task (called on the loop's turn; the first failure wins). */
  readonly fail: (error: unknown) => void;
  /** Whether the task may still commit (running or finishing, not failed, stopped or closed). */
  readonly live: () => boolean;
  /** Records, timers and watermark steps so far (compared with the count at the last trigger). */
  readonly activity: () => number;
}

/**
 * The checkpoints of one task (Flink's SubtaskCheckpointCoordinatorImpl), as numbered steps, each a
 * method named for what it does. Every method runs on the task loop's turn: the loop calls the
 * first three, and asynchronous steps post their outcome (`CheckpointMail`) to the task's mailbox,
 * which the loop hands to `apply`. So no promise continuation changes this object or calls an
 * operator (user code): the operators' flushes and notifications are started on the loop's turn.
 *
 * 1. `trigger`: the next id; barriers into every active channel, after the batch the task is taking
 *    (aligned: `InputChannel.insertBarrier`), or an immediate unaligned snapshot. Periodic by `decideTrigger`, or requested (savepoint, checkpoint
 *    now: queued while `maxConcurrent` are in flight), or the final one.
 * 2. `alignmentResult`: the barriers arrived (or were overtaken): the snapshot may be taken.
 * 3. `synchronousPart`: operator snapshots (sinks `prepareCommit`), the keyed backend's capture and
 *    the channel positions, in O(1) of the state; a failure here fails the task.
 * 4. `asynchronousPart`: write the keyed and operators files and the metadata (I/O only, over the
 *    capture), then flush the sinks (started from the loop).
 * 5. `commit`: in checkpoint order, one at a time, and only while the task is live: the committer's
 *    transaction (with the storage index after it) or the storage's metadata commit, then a
 *    savepoint's second metadata; then every operator's `notifyComplete`; the next commit waits.
 * 6. `timedOut`: a checkpoint not committing after `timeoutMs` fails; its barriers are dropped.
 * 7. `settle`: the savepoint (or checkpoint-now) waiter gets the metadata or the error.
 *
 * Failure tolerance (`failCheckpoint`): a failed checkpoint leaves the in-flight ones at once and is
 * recorded as failed before its files' discard is awaited (a task with a committer fails right
 * there: its transaction cannot be carried over, and no later checkpoint may commit past it); after
 * the discard it is reported, operators get `notifyAborted`, and more than `tolerableFailures` in a
 * row (or a failed final checkpoint) fail the task with CHECKPOINT_FAILURES_EXCEEDED.
 */
export class Checkpointer {
  readonly #o: CheckpointerOptions;
  #rt!: CheckpointerRuntime;
  #aligner!: BarrierAligner;
  #nextId = 1;
  /** Triggered and neither committed nor failed, oldest first. */
  #pending: Checkpoint[] = [];
  /** The checkpoint whose commit or notifications are under way: the next waits for it. */
  #committing: Checkpoint | undefined;
  /** The commit's I/O, awaited by `close` (nothing commits after it). */
  #commitIO: Promise<unknown> | undefined;
  /** Failed checkpoints whose discard is under way, by id. */
  readonly #failing = new Map<number, Checkpoint>();
  #requests: Request[] = [];
  readonly #waiters = new Map<number, Request>();
  #previousHandle: Promise<KeyedStateHandle | undefined> = Promise.resolve(undefined);
  readonly #completed = new Set<number>();
  #completedInRun: number | undefined;
  #lastTriggerAt = 0;
  #lastCompletedAt: number | undefined;
  #activityAtTrigger = -1;
  #positionsAtTrigger = '';
  /**
   * Per channel index, its event time when it delivered the aligning checkpoint's barrier: with
   * at-least-once alignment the channel goes on past its barrier, and the snapshot must carry the
   * event time of its position, not of the records taken after it.
   */
  #eventTimeAtBarrier = new Map<number, number | undefined>();
  #consecutiveFailures = 0;
  #closed = false;

  constructor(options: CheckpointerOptions) {
    this.#o = options;
  }

  /** Start checkpointing a restored task; periodic checkpoints from `lastTriggerAt` on. */
  open(rt: CheckpointerRuntime, lastTriggerAt: number): void {
    this.#rt = rt;
    this.#aligner = new BarrierAligner(this.#o.config.guarantee);
    this.#nextId = rt.nextCheckpointId;
    this.#previousHandle = Promise.resolve(rt.restoredHandle);
    if (rt.restoredId !== undefined) this.#completed.add(rt.restoredId);
    this.#lastTriggerAt = lastTriggerAt;
  }

  get lastCompleted(): number | undefined {
    return this.#completed.size === 0 ? undefined : Math.max(...this.#completed);
  }

  completed(id: number): boolean {
    return this.#completed.has(id);
  }

  #holdsInput = false;

  /** A checkpoint that holds processing (snapshot 'sync', or the final one) has not settled yet. */
  get holdsInput(): boolean {
    return this.#holdsInput;
  }

  /** A step is under way whose outcome will come as mail (files written, flushes, a commit, notifications). */
  get stepUnderWay(): boolean {
    return this.#committing !== undefined || this.#pending.some((p) => p.phase !== 'aligning');
  }

  /** Nothing in flight: no checkpoint pending, committing, notifying or being discarded. */
  get idle(): boolean {
    return this.#pending.length === 0 && this.#committing === undefined && this.#failing.size === 0;
  }

  /** A savepoint (`savepoint` set) or a checkpoint now; resolves with its metadata once committed. */
  request(savepoint?: string): Promise<CheckpointMetadata> {
    if (this.#closed) return Promise.reject(this.#cancelled('before the savepoint'));
    return new Promise((resolve, reject) => {
      this.#requests.push({ ...(savepoint === undefined ? {} : { savepoint }), resolve, reject });
      this.#o.wake();
    });
  }

  // ------------------------------------------------------------------------- (1) trigger

  /**
   * The loop's turn: a due alignment timeout, else a requested checkpoint (waiting while
   * `maxConcurrent` are in flight, as Flink's CheckpointRequestDecider queues it: two in flight could
   * otherwise reach the commit in the order their asynchronous parts end), else a periodic one.
   */
  tick(now: number): void {
    if (this.#aligner.aligning) {
      const t = this.#o.config.alignmentTimeoutMs;
      if (t !== undefined && now - this.#aligner.startedAt >= t)
        this.#alignmentResult(this.#aligner.timeout(this.#rt.inputs.active()));
      return;
    }
    if (this.#requests.length > 0) {
      if (this.#pending.length >= this.#o.config.maxConcurrent) return;
      const req = this.#requests.shift()!;
      this.#waiters.set(this.#nextId, req);
      this.trigger(now, req.savepoint, false);
      return;
    }
    if (decideTrigger(this.#triggerFacts(now), this.#o.config).trigger) this.trigger(now, undefined, false);
  }

  /** When the loop must look again at the latest (a periodic trigger, an alignment timeout). */
  nextDeadline(now: number): number | undefined {
    const d = decideTrigger(this.#triggerFacts(now), this.#o.config);
    // Due now (the round's work changed the facts since `tick` looked): go round again.
    let at = d.trigger ? now : d.retryAt;
    const t = this.#o.config.alignmentTimeoutMs;
    if (this.#aligner.aligning && t !== undefined) at = Math.min(at ?? Infinity, this.#aligner.startedAt + t);
    return at;
  }

  /** Start checkpoint `id` (the next): barriers into every channel, or an unaligned snapshot. */
  trigger(now: number, savepoint: string | undefined, final: boolean): number {
    const id = this.#nextId++;
    this.#lastTriggerAt = now;
    this.#activityAtTrigger = this.#o.activity();
    this.#positionsAtTrigger = this.#rt.inputs.positionsKey();
    const cp: Checkpoint = {
      id,
      savepoint,
      final,
      phase: 'aligning',
      holdsInput: false,
      cancelTimeout: () => {},
      settleHandle: () => {},
    };
    this.#pending.push(cp);
    const post = this.#o.post;
    cp.cancelTimeout = this.#o.clock.schedule(now + this.#o.config.timeoutMs, () =>
      post({ kind: 'timed-out', id }),
    );
    const active = this.#rt.inputs.active();
    // Savepoints and final checkpoints are always aligned (a savepoint is self-contained).
    if (this.#o.config.unaligned && savepoint === undefined && !final) {
      this.#alignmentResult(this.#aligner.unaligned(id, active, now));
    } else {
      for (const c of active) c.insertBarrier(id);
      this.#eventTimeAtBarrier = new Map();
      this.#alignmentResult(this.#aligner.start(id, active, now));
    }
    return id;
  }

  #triggerFacts(now: number) {
    return {
      now,
      lastTriggerAt: this.#lastTriggerAt,
      lastCompletedAt: this.#lastCompletedAt,
      inFlight: this.#pending.length,
      aligning: this.#aligner.aligning,
      unchanged: this.#unchanged(),
    };
  }

  /** See TriggerFacts.unchanged. */
  #unchanged(): boolean {
    return (
      this.#o.config.whenIdle === 'skip' &&
      this.#completedInRun !== undefined &&
      this.#completedInRun === this.#nextId - 1 &&
      this.#o.activity() === this.#activityAtTrigger &&
      this.#rt.inputs.positionsKey() === this.#positionsAtTrigger
    );
  }

  // ------------------------------------------------------------------------- (2) alignment result

  /** Barrier `id` taken from channel `c`. */
  onBarrier(c: InputChannel, id: number, position: unknown): void {
    if (id === this.#aligner.checkpointId) this.#eventTimeAtBarrier.set(c.index, this.#rt.eventTime(c.index));
    this.#alignmentResult(this.#aligner.onBarrier(c, id, position, this.#rt.inputs.active()));
  }

  /** A channel delivered its end: it no longer holds an alignment back. */
  onChannelFinished(): void {
    this.#alignmentResult(this.#aligner.onChannelFinished(this.#rt.inputs.active()));
  }

  #alignmentResult(result: AlignmentResult | undefined): void {
    if (!result) return;
    for (const c of this.#rt.inputs.channels) c.blocked = false;
    const cp = this.#pending.find((p) => p.id === result.checkpointId);
    if (cp === undefined || cp.phase !== 'aligning') return;
    cp.alignment = result;
    this.#synchronousPart(cp, result);
  }

  // ------------------------------------------------------------------------- (3) synchronous part

  #synchronousPart(cp: Checkpoint, a: AlignmentResult): void {
    const { scope, faults } = this.#o;
    const t0 = performance.now();
    let capture: KeyedStateCapture | undefined;
    const previousHandle = this.#previousHandle;
    let settleHandle: (h: KeyedStateHandle | undefined) => void = () => {};
    const operators: Record<string, OperatorSnapshot> = {};
    const channels: ChannelPosition[] = [];
    const inflight: InflightRecord[][] = [];
    try {
      faults?.('snapshot.capture', { taskId: scope.taskId, checkpointId: cp.id });
      for (const op of this.#rt.operators) operators[op.uid] = op.snapshot(cp.id);
      capture = this.#rt.backend.capture(cp.id);
      this.#previousHandle = new Promise((resolve) => {
        settleHandle = resolve;
      });
      for (const c of this.#rt.inputs.channels) {
        const records = a.inflight.get(c.index) ?? [];
        // Event time as taken up to the channel's barrier, or up to its in-flight records (unaligned:
        // they are replayed, and move it again, after a restore).
        const eventTime = this.#eventTimeAtBarrier.has(c.index)
          ? this.#eventTimeAtBarrier.get(c.index)
          : this.#rt.eventTime(c.index);
        channels.push({
          source: c.sourceUid,
          partition: c.partition,
          position: a.positions.get(c.index) ?? c.position,
          inflight: records.length,
          ...(eventTime !== undefined ? { eventTime } : {}),
        });
        inflight.push(records);
      }
    } catch (e) {
      capture?.release();
      settleHandle(undefined);
      throw e; // fails the task
    }
    cp.settleHandle = settleHandle;
    cp.syncMs = performance.now() - t0;
    cp.inflightRecords = inflight.reduce((s, r) => s + r.length, 0);
    cp.holdsInput = this.#o.config.snapshot === 'sync' || cp.final;
    if (cp.holdsInput) this.#holdsInput = true;
    cp.phase = 'writing';
    void this.#asynchronousPart(cp, capture, previousHandle, { operators, inflight, channels });
  }

  // ------------------------------------------------------------------------- (4) asynchronous part

  /** I/O only, over what the synchronous part captured; posts `written`. */
  async #asynchronousPart(
    cp: Checkpoint,
    capture: KeyedStateCapture,
    previousHandle: Promise<KeyedStateHandle | undefined>,
    parts: {
      operators: Record<string, OperatorSnapshot>;
      inflight: InflightRecord[][];
      channels: ChannelPosition[];
    },
  ): Promise<void> {
    const { id, savepoint } = cp;
    // Processing goes on: the writes start once the loop has given up its turn.
    await Promise.resolve();
    const t1 = performance.now();
    let result: Written | { error: unknown };
    try {
      this.#o.faults?.('snapshot.write', { taskId: this.#o.scope.taskId, checkpointId: id });
      const { meta, handle, pointedFile } = await writeCheckpointFiles({
        storage: this.#o.storage,
        scope: this.#o.scope,
        jobId: this.#o.jobId,
        attempt: this.#o.attempt,
        checkpointId: id,
        capture,
        // The backend's own format, incremental on the previous capture's checkpoint when that one
        // completed (a savepoint, or a failure in between, makes this one full); a savepoint canonical.
        ownFormat: savepoint === undefined,
        base: this.#o.config.incremental && savepoint === undefined ? previousHandle : undefined,
        payload: { ...this.#rt.payload, unaligned: cp.alignment!.unaligned, channels: parts.channels },
        operators: parts.operators,
        inflight: parts.inflight,
        // A committer commits a pointer to the metadata, written as a file of the checkpoint.
        pointedMetadata: this.#rt.committer !== undefined,
      });
      result = { meta, handle, pointedFile, asyncMs: performance.now() - t1 };
    } catch (e) {
      result = { error: e };
    } finally {
      capture.release();
    }
    this.#o.post({ kind: 'written', id, result });
  }

  #written(cp: Checkpoint, w: Written): void {
    cp.written = w;
    cp.phase = 'flushing';
    try {
      this.#o.faults?.('sink.flush', { taskId: this.#o.scope.taskId, checkpointId: cp.id });
    } catch (e) {
      this.#failCheckpoint(cp, e);
      return;
    }
    // User code, started on the loop's turn; the checkpoint may commit once every flush settled.
    const flushing = this.#rt.operators.filter((op) => op.flush !== undefined);
    if (flushing.length === 0) {
      this.#flushed(cp);
      return;
    }
    this.#settleInMail(
      flushing.map((op) => () => op.flush!(cp.id)),
      (outcome) => ({ kind: 'flushed', id: cp.id, outcome }),
    );
  }

  #flushed(cp: Checkpoint): void {
    cp.phase = 'ready';
    this.#commitNext();
  }

  // ------------------------------------------------------------------------- (5) commit chain

  /** Commit the oldest in-flight checkpoint when it is ready and nothing else is committing. */
  #commitNext(): void {
    const cp = this.#pending[0];
    if (this.#committing !== undefined || cp?.phase !== 'ready' || this.#closed || !this.#o.live()) return;
    cp.phase = 'committing';
    this.#committing = cp;
    const id = cp.id;
    const { meta, pointedFile } = cp.written!;
    const io = commitCheckpoint({
      storage: this.#o.storage,
      meta,
      savepoint: cp.savepoint,
      ...(this.#rt.committer && {
        committer: this.#rt.committer,
        pointedFile: pointedFile!,
        broadcastUids: this.#rt.broadcastUids,
      }),
    });
    this.#commitIO = io;
    void io.then((result) => this.#o.post({ kind: 'committed', id, result }));
  }

  #committed(cp: Checkpoint, c: Committed): void {
    const { scope, listener, faults } = this.#o;
    cp.committed = c;
    cp.cancelTimeout();
    cp.settleHandle(cp.written!.handle);
    this.#pending = this.#pending.filter((p) => p !== cp);
    this.#recordCompleted(cp.id);
    this.#lastCompletedAt = this.#o.clock.now();
    this.#consecutiveFailures = 0;
    if (c.indexError)
      listener?.indexFailed?.({ taskId: scope.taskId, checkpointId: cp.id, error: c.indexError.error });
    const a = cp.alignment!;
    listener?.checkpointCompleted?.({
      taskId: scope.taskId,
      checkpointId: cp.id,
      savepoint: cp.savepoint,
      final: cp.final,
      unaligned: a.unaligned,
      alignmentMs: a.alignmentMs,
      syncMs: cp.syncMs!,
      asyncMs: cp.written!.asyncMs,
      bytes: c.meta.files.reduce((s, f) => s + f.bytes, 0),
      backend: this.#rt.backend.kind,
      inflightRecords: cp.inflightRecords!,
    });
    cp.phase = 'notifying';
    try {
      faults?.('checkpoint.after-commit', { taskId: scope.taskId, checkpointId: cp.id });
    } catch (e) {
      this.#notifyFailed(cp, e);
      return;
    }
    // User code (subsuming: it covers every earlier checkpoint), started on the loop's turn.
    this.#settleInMail(
      this.#rt.operators.map((op) => () => op.notifyComplete(cp.id)),
      (outcome) => ({ kind: 'notified', id: cp.id, outcome }),
    );
  }

  #recordCompleted(id: number): void {
    this.#completed.add(id);
    this.#completedInRun = Math.max(this.#completedInRun ?? 0, id);
  }

  #notifyFailed(cp: Checkpoint, error: unknown): void {
    this.#o.fail(error);
    this.#release(cp);
  }

  // ------------------------------------------------------------------------- (6) timeouts

  #timedOut(cp: Checkpoint): void {
    const timeout = this.#o.config.timeoutMs;
    if (this.#aligner.checkpointId === cp.id) {
      this.#aligner.cancel();
      for (const c of this.#rt.inputs.channels) {
        c.blocked = false;
        c.dropBarriers(new Set([cp.id]));
      }
    }
    this.#failCheckpoint(
      cp,
      new StreamError(
        'CHECKPOINT_DECLINED',
        `checkpoint ${cp.id} of task ${this.#o.scope.taskId} timed out after ${timeout} ms`,
      ),
    );
  }

  // ------------------------------------------------------------------------- (7) savepoint waiters

  /** The checkpoint completed and every operator was notified: answer its waiter; the next may commit. */
  #settle(cp: Checkpoint): void {
    const waiter = this.#waiters.get(cp.id);
    this.#waiters.delete(cp.id);
    const c = cp.committed!;
    if (c.savepointError) waiter?.reject(c.savepointError.error);
    else waiter?.resolve(c.meta);
    this.#release(cp);
  }

  /** `cp` no longer holds the commit line or the input. */
  #release(cp: Checkpoint): void {
    if (this.#committing === cp) this.#committing = undefined;
    if (cp.holdsInput) {
      cp.holdsInput = false;
      this.#holdsInput =
        this.#pending.some((p) => p.holdsInput) || [...this.#failing.values()].some((p) => p.holdsInput);
    }
    this.#commitNext();
  }

  // ------------------------------------------------------------------------- failure tolerance

  /**
   * Checkpoint `cp` failed: out of the in-flight ones and recorded as failed before anything is
   * awaited (with a committer the task fails here: the loop must not trigger and commit a later
   * checkpoint, with input positions past this interval's output, while the discard below waits on a
   * store that is down). It is reported here, on the loop's turn (a task failed by it closes its
   * mailbox, so the report cannot wait for the discard). Then its files are discarded.
   */
  #failCheckpoint(cp: Checkpoint, error: unknown): void {
    const { scope, storage, listener } = this.#o;
    this.#pending = this.#pending.filter((p) => p !== cp);
    cp.cancelTimeout();
    cp.settleHandle(undefined);
    cp.failure = error;
    listener?.checkpointFailed?.({ taskId: scope.taskId, checkpointId: cp.id, error });
    if (this.#rt.committer) {
      this.#o.fail(
        new StreamError(
          'CHECKPOINT_DECLINED',
          `task ${scope.taskId}: checkpoint ${cp.id} failed (${error instanceof Error ? error.message : String(error)}); its Kafka transaction cannot be carried over, so the task restarts from its last committed checkpoint`,
          { cause: error },
        ),
      );
    }
    this.#failing.set(cp.id, cp);
    const id = cp.id;
    void storage
      .discard(scope, id)
      .catch(() => {})
      .then(() => this.#o.post({ kind: 'discarded', id }));
    this.#commitNext();
  }

  /** The failed checkpoint's files are gone: notify the waiters and operators, count it. */
  #discarded(cp: Checkpoint): void {
    const { scope, config } = this.#o;
    this.#failing.delete(cp.id);
    const error = cp.failure;
    const waiter = this.#waiters.get(cp.id);
    this.#waiters.delete(cp.id);
    waiter?.reject(error);
    for (const op of this.#rt.operators) {
      try {
        op.notifyAborted(cp.id);
      } catch (e) {
        this.#o.fail(e);
      }
    }
    this.#consecutiveFailures++;
    if (decideOnCheckpointFailure(this.#consecutiveFailures, config) === 'fail-task' || cp.final) {
      this.#o.fail(
        new StreamError(
          'CHECKPOINT_FAILURES_EXCEEDED',
          `task ${scope.taskId}: ${this.#consecutiveFailures} consecutive checkpoints failed (tolerable: ${config.tolerableFailures}); last: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        ),
      );
    }
    this.#release(cp);
  }

  // ------------------------------------------------------------------------- mail

  /** Apply a message of an asynchronous step (on the loop's turn). */
  apply(m: CheckpointMail): void {
    if (this.#closed) return;
    if (m.kind === 'discarded') {
      const failed = this.#failing.get(m.id);
      if (failed) this.#discarded(failed);
      return;
    }
    const cp =
      this.#pending.find((p) => p.id === m.id) ??
      (this.#committing?.id === m.id ? this.#committing : undefined);
    if (cp === undefined) {
      this.#late(m);
      return;
    }
    switch (m.kind) {
      case 'written':
        if ('error' in m.result) this.#failCheckpoint(cp, m.result.error);
        else this.#written(cp, m.result);
        return;
      case 'flushed':
        if (m.outcome.ok) this.#flushed(cp);
        else this.#failCheckpoint(cp, m.outcome.error);
        return;
      case 'committed':
        if (!('error' in m.result)) this.#committed(cp, m.result);
        else if (this.#rt.committer) {
          // The task fails; the transaction's outcome is decided by fencing on restart.
          this.#pending = this.#pending.filter((p) => p !== cp);
          cp.cancelTimeout();
          cp.settleHandle(undefined);
          this.#o.fail(m.result.error);
          this.#release(cp);
        } else {
          this.#committing = undefined;
          this.#failCheckpoint(cp, m.result.error);
        }
        return;
      case 'notified':
        if (m.outcome.ok) this.#settle(cp);
        else this.#notifyFailed(cp, m.outcome.error);
        return;
      case 'timed-out':
        // Once its commit is under way, the commit decides (a discard could remove files it names).
        if (cp.phase !== 'committing' && cp.phase !== 'notifying') this.#timedOut(cp);
        return;
    }
  }

  /** A message about a checkpoint that already failed (timed out): what it wrote is garbage. */
  #late(m: CheckpointMail): void {
    if (m.kind === 'written') void this.#o.storage.discard(this.#o.scope, m.id).catch(() => {});
  }

  /**
   * Start each of `calls` (operators' flushes or notifications: user code) now, on the loop's turn,
   * and post their joint outcome as `mail`: ok once every one resolved, or the first failure.
   */
  #settleInMail(calls: (() => Promise<void>)[], mail: (outcome: Outcome) => CheckpointMail): void {
    const started = calls.map((call) => {
      try {
        return call();
      } catch (error) {
        return Promise.reject(error);
      }
    });
    const post = this.#o.post;
    Promise.all(started).then(
      () => post(mail({ ok: true })),
      (error: unknown) => post(mail({ ok: false, error })),
    );
  }

  // ------------------------------------------------------------------------- teardown

  #cancelled(what: string): StreamError {
    return new StreamError('JOB_CANCELLED', `task ${this.#o.scope.taskId} stopped ${what}`);
  }

  /**
   * Teardown: nothing commits after this resolves. In-flight file writes are not awaited (a hung
   * storage must not block the restart); a commit already under way is, so the next incarnation
   * restores from a settled storage. Waiting requests are rejected with JOB_CANCELLED.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const cp of [...this.#pending, ...this.#failing.values()]) {
      cp.cancelTimeout();
      cp.settleHandle(undefined);
    }
    const committing = this.#committing;
    const result = await this.#commitIO?.catch(() => undefined);
    if (committing && result && !('error' in (result as object))) this.#recordCompleted(committing.id);
    for (const r of this.#requests) r.reject(this.#cancelled('before the savepoint'));
    for (const w of this.#waiters.values()) w.reject(this.#cancelled('before the savepoint completed'));
    this.#requests = [];
    this.#waiters.clear();
  }
}
