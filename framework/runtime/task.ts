import { randomBytes } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Clock } from '../api/clock.ts';
import type { RuntimeConfig } from '../api/config.ts';
import { StreamError } from '../api/errors.ts';
import type { CheckpointCommitter } from '../api/sink.ts';
import type { WatermarkStrategy } from '../api/source.ts';
import type { RestoreFrom } from '../checkpoint/decisions.ts';
import { checkpointPhase, decideOnCheckpointFailure, decideTrigger } from '../checkpoint/decisions.ts';
import { encodePointedMetadata } from '../checkpoint/storage/pointer-codec.ts';
import type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from '../checkpoint/storage/storage.ts';
import type { JobPlan, StagePlan } from '../graph/plan.ts';
import type { KeyedStateBackend, KeyedStateCapture, KeyedStateHandle } from '../state/backend.ts';
import { partitionerName } from '../state/partitioners.ts';
import { type AlignmentResult, BarrierAligner } from './alignment.ts';
import { type InflightRecord, InputChannel } from './channel.ts';
import type { FaultInjector } from './faults.ts';
import type { OperatorSnapshot } from './operators/types.ts';
import { restoreTask } from './restore.ts';
import {
  type ChannelPosition,
  checkpointFiles,
  TASK_SNAPSHOT_FORMAT,
  type TaskPayload,
  writeKeyedFile,
  writeOperatorsFile,
} from './snapshot-io.ts';
import { WatermarkValve } from './watermark-valve.ts';
import { createOperators, type OperatorWiring } from './wiring.ts';

export type { RestoreFrom };

export interface CheckpointStats {
  readonly taskId: string;
  readonly checkpointId: number;
  readonly savepoint: string | undefined;
  readonly final: boolean;
  readonly unaligned: boolean;
  readonly alignmentMs: number;
  readonly syncMs: number;
  readonly asyncMs: number;
  readonly bytes: number;
  /** The keyed state backend kind (heap, level ...). */
  readonly backend: string;
  readonly inflightRecords: number;
}

export interface TaskListener {
  checkpointCompleted?(stats: CheckpointStats): void;
  checkpointFailed?(info: { taskId: string; checkpointId: number; error: unknown }): void;
  restored?(info: { taskId: string; checkpointId: number | undefined; ms: number }): void;
  /** A checkpoint committed by a sink's transaction could not be added to the storage index. */
  indexFailed?(info: { taskId: string; checkpointId: number; error: unknown }): void;
}

export interface TaskOptions {
  readonly jobId: string;
  readonly plan: JobPlan;
  readonly stage: StagePlan;
  readonly partition: number;
  readonly storage: CheckpointStorage;
  readonly createBackend: (scope: Scope) => KeyedStateBackend | Promise<KeyedStateBackend>;
  readonly clock: Clock;
  readonly config: RuntimeConfig;
  readonly restoreFrom: RestoreFrom;
  readonly faults?: FaultInjector;
  readonly listener?: TaskListener;
}

/** The id a task's checkpoints are stored under: stage (its source uids) and partition. */
export function taskScope(jobId: string, plan: JobPlan, stage: StagePlan, partition: number): Scope {
  const sources = stage.nodes
    .map((id) => plan.graph.nodes[id]!)
    .filter((n) => n.spec.kind === 'source' && !n.spec.broadcast)
    .map((n) => n.uid)
    .sort();
  return {
    jobId,
    taskId: `${sources
      .join('.')
      .replace(/[^A-Za-z0-9._-]/g, '_')
      .slice(0, 180)}-p${partition}`,
  };
}

interface PendingCheckpoint {
  readonly id: number;
  readonly savepoint: string | undefined;
  readonly final: boolean;
  readonly triggeredAt: number;
  aborted: boolean;
  done: Promise<void> | undefined;
}

const ROUND_BATCH = 64;

/**
 * One task: stage x partition. Owns the operator instances of its stage, the input channels of its
 * source partitions, one keyed backend, and its checkpoints (each one a consistent snapshot of this
 * task alone: source positions, channel state, operator state, sink committables).
 *
 * Lifecycle: `run()` restores, then processes until the input ends (a final checkpoint is taken and
 * committed first) or `stop()` is called; it rejects when the task fails. After a failure the owner
 * calls `abort()`, which waits for in-flight work and guarantees that nothing of this incarnation
 * commits afterwards, then starts a new Task.
 */
export class Task {
  readonly scope: Scope;
  readonly #o: TaskOptions;
  readonly #attempt = randomBytes(4).toString('hex');
  #backend!: KeyedStateBackend;
  #wiring!: OperatorWiring;
  #channels: InputChannel[] = [];
  #aligner!: BarrierAligner;
  #valve: WatermarkValve | undefined;

  #nextCheckpointId = 1;
  #pending: PendingCheckpoint[] = [];
  #requested: {
    savepoint?: string;
    resolve: (m: CheckpointMetadata) => void;
    reject: (e: unknown) => void;
  }[] = [];
  #commitChain: Promise<void> = Promise.resolve();
  #lastTriggerAt = 0;
  #lastCompletedAt: number | undefined;
  /** Records, timers and watermark steps so far; compared with its value at the last trigger. */
  #activity = 0;
  #activityAtTrigger = -1;
  #positionsAtTrigger = '';
  /** The id of the last checkpoint that completed in this run (not restored). */
  #completedInRun: number | undefined;
  #consecutiveFailures = 0;
  #completedIds = new Set<number>();
  /** Handle of the checkpoint of the backend's previous capture, once known (undefined: none, or failed). */
  #previousHandle: Promise<KeyedStateHandle | undefined> = Promise.resolve(undefined);
  #committer: CheckpointCommitter | undefined;
  #savepointWaiters = new Map<
    number,
    { resolve: (m: CheckpointMetadata) => void; reject: (e: unknown) => void }
  >();

  #failure: unknown;
  #stopRequested = false;
  #cancelled = false;
  #wakeResolve: (() => void) | undefined;
  #cancelWakeTimer: (() => void) | undefined;
  #pumps: Promise<void>[] = [];
  #readers: { close(): Promise<void> }[] = [];
  readonly #held = new Set<string>();
  /** The savepoint this task's run started from (see TaskPayload.fromSavepoint). */
  #fromSavepoint: string | undefined;
  /** Uids of the broadcast sources (every task reads all their partitions). */
  #broadcastUids = new Set<string>();
  /** The record being emitted from a source, while its operators process it (for record errors). */
  #current: { channel: InputChannel; origin: unknown; timestamp: number | undefined } | undefined;
  /** Records taken from channels so far (for tests and metrics). */
  recordsIn = 0;

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

  constructor(options: TaskOptions) {
    this.#o = options;
    this.scope = taskScope(options.jobId, options.plan, options.stage, options.partition);
  }

  get lastCompletedCheckpoint(): number | undefined {
    return this.#completedIds.size === 0 ? undefined : Math.max(...this.#completedIds);
  }

  /** Restore, process, and return when the input has ended (after the final checkpoint) or on stop. */
  async run(): Promise<void> {
    await this.#restore();
    // The first periodic checkpoint comes at this task's phase of the interval (spread, not together).
    const interval = this.#o.config.checkpoints.intervalMs;
    this.#lastTriggerAt = this.#o.clock.now() - Math.floor(interval * checkpointPhase(this.scope.taskId));
    await this.#loop();
  }

  /** Ask for a savepoint; resolves with its metadata once committed. */
  savepoint(name: string): Promise<CheckpointMetadata> {
    return new Promise((resolve, reject) => {
      this.#requested.push({ savepoint: name, resolve, reject });
      this.#wake();
    });
  }

  /** Ask for a checkpoint now (outside the interval); resolves once committed. */
  checkpointNow(): Promise<CheckpointMetadata> {
    return new Promise((resolve, reject) => {
      this.#requested.push({ resolve, reject });
      this.#wake();
    });
  }

  /** Stop processing without a final checkpoint; `run()` then returns. */
  stop(): void {
    this.#stopRequested = true;
    this.#wake();
  }

  /** Hold back (or release) the channels of one source: the task stops taking their records. */
  hold(sourceUid: string, held: boolean): void {
    if (held) this.#held.add(sourceUid);
    else this.#held.delete(sourceUid);
    for (const c of this.#channels) if (c.sourceUid === sourceUid) c.held = held;
    this.#wake();
  }

  /** Tear down after a failure or stop: nothing of this incarnation commits after this resolves. */
  async abort(): Promise<void> {
    this.#cancelled = true;
    this.#stopRequested = true;
    this.#cancelWakeTimer?.();
    for (const c of this.#channels) c.stop();
    for (const p of this.#pending) p.aborted = true;
    // In-flight file writes are not awaited (a hung storage must not block the restart); they can
    // no longer commit. A metadata commit already under way is awaited, so the next incarnation
    // restores from a settled storage.
    await this.#commitChain.catch(() => {});
    await Promise.allSettled(this.#readers.map((r) => r.close()));
    await Promise.allSettled(this.#pumps);
    if (this.#wiring) await Promise.allSettled(this.#wiring.operators.map((o) => o.abort()));
    await this.#backend?.close().catch(() => {});
    for (const r of this.#requested)
      r.reject(new StreamError('JOB_CANCELLED', `task ${this.scope.taskId} stopped before the savepoint`));
    for (const w of this.#savepointWaiters.values())
      w.reject(
        new StreamError('JOB_CANCELLED', `task ${this.scope.taskId} stopped before the savepoint completed`),
      );
    this.#requested = [];
    this.#savepointWaiters.clear();
  }

  // ---------------------------------------------------------------- restore and wiring

  async #restore(): Promise<void> {
    const { storage, restoreFrom, listener, plan, stage, partition, jobId, clock } = this.#o;
    const started = performance.now();
    // Operators first (they hold no state yet): a sink may be the task's checkpoint committer.
    this.#backend = await this.#o.createBackend(this.scope);
    this.#wiring = await createOperators({
      plan,
      stage,
      partition,
      jobId,
      clock,
      backend: this.#backend,
      watermarkOf: (i) => this.#valve?.of(i) ?? Number.NEGATIVE_INFINITY,
      taskId: this.scope.taskId,
      attempt: this.#attempt,
      currentSource: () => this.#current?.channel.sourceUid,
      recordError: (error, keyBytes) => this.#recordError(error, keyBytes),
    });
    this.#broadcastUids = new Set(this.#wiring.sources.filter((s) => s.broadcast).map((s) => s.uid));
    const committers = new Set(
      this.#wiring.operators.map((o) => o.committer?.()).filter((c) => c !== undefined),
    );
    if (committers.size > 1) {
      throw new StreamError(
        'GRAPH_INVALID',
        `task ${this.scope.taskId} has sinks with ${committers.size} different checkpoint committers: all transactional sinks of a task must share one transaction`,
      );
    }
    this.#committer = [...committers][0];

    const { restored, nextCheckpointId, fromSavepoint } = await restoreTask({
      storage,
      scope: this.scope,
      attempt: this.#attempt,
      backend: this.#backend,
      partitions: stage.partitions,
      from: restoreFrom,
      restoreFallback: this.#o.config.checkpoints.restoreFallback,
      committer: this.#committer,
      inputs: this.#wiring.sources.flatMap((s) => (s.broadcast ? [] : [{ source: s.source, partition }])),
    });
    this.#nextCheckpointId = nextCheckpointId;
    this.#fromSavepoint = fromSavepoint;

    // The next checkpoint may build on the restored one.
    this.#previousHandle = Promise.resolve(restored?.keyedHandle);

    // Channels: one per source partition read by this task, positioned as restored.
    const strategies: WatermarkStrategy<unknown>[] = [];
    const positions = new Map<string, { pos: ChannelPosition; inflight: readonly InflightRecord[] }>();
    restored?.payload.channels.forEach((c, i) => {
      positions.set(`${c.source}#${c.partition}`, { pos: c, inflight: restored.operators.inflight[i] ?? [] });
    });
    for (const src of this.#wiring.sources) {
      const parts = src.broadcast ? [...Array(src.source.partitions()).keys()] : [partition];
      for (const p of parts) {
        const saved = positions.get(`${src.uid}#${p}`);
        const channel = new InputChannel({
          index: this.#channels.length,
          sourceUid: src.uid,
          partition: p,
          capacity: this.#o.config.channelCapacity,
          position: saved?.pos.position,
          now: clock.now(),
          wake: () => this.#wake(),
        });
        channel.held = this.#held.has(src.uid);
        if (saved && saved.inflight.length > 0) channel.prepend(saved.inflight);
        this.#channels.push(channel);
        strategies.push(src.watermarks);
        src.channels.push(channel.index);
      }
    }
    this.#wiring.computeUpstreamChannels(this.#channels.length);
    this.#valve = new WatermarkValve(strategies, this.#wiring.upstreamChannels, clock.now());
    this.#aligner = new BarrierAligner(this.#o.config.checkpoints.guarantee);

    const opSnaps = restored?.operators.operators ?? {};
    for (const op of this.#wiring.operators) await op.open(restored ? (opSnaps[op.uid] ?? {}) : undefined);

    for (const c of this.#channels) {
      const src = this.#wiring.sources.find((s) => s.uid === c.sourceUid)!;
      const reader = await src.source.createReader(c.partition, c.position);
      // Before its first poll returns, a fresh channel's position is where its reader starts (a checkpoint
      // triggered at once, as at a task's phase of the interval, must carry it: the Kafka sink commits it).
      c.position ??= (reader as { position?: () => unknown }).position?.();
      this.#readers.push(reader);
      this.#pumps.push(c.pump(reader, this.#o.config.pollBatch, 5));
    }
    if (restored) this.#completedIds.add(restored.meta.checkpointId);
    listener?.restored?.({
      taskId: this.scope.taskId,
      checkpointId: restored?.meta.checkpointId,
      ms: performance.now() - started,
    });
  }

  // ---------------------------------------------------------------- the loop

  async #loop(): Promise<void> {
    let rounds = 0;
    let rr = 0;
    let finalRequested = false;
    for (;;) {
      if (this.#failure !== undefined) throw this.#failure;
      for (const c of this.#channels) if (c.failure !== undefined) throw wrapSourceError(c, c.failure);
      if (this.#stopRequested) return;

      const now = this.#o.clock.now();
      this.#checkTimeouts(now);
      this.#maybeTrigger(now);
      for (const op of this.#wiring.operators) {
        const due = op.nextProcessingTimer();
        if (due !== undefined && due <= now) this.#activity++;
        op.fireProcessingTimers(now);
      }

      let worked = 0;
      const n = this.#channels.length;
      for (let k = 0; k < n; k++) {
        const c = this.#channels[(rr + k) % n]!;
        for (let i = 0; i < ROUND_BATCH && c.available && !this.#syncWait; i++) {
          this.#handle(c, now);
          worked++;
        }
      }
      rr++;
      this.#updateWatermarks(now);

      if (!finalRequested && this.#channels.every((c) => c.finished)) {
        finalRequested = true;
        await this.#finish();
        return;
      }
      const backpressure = this.#sinkBackpressure();
      if (backpressure) {
        await backpressure;
        continue;
      }
      if (this.#syncWait) {
        // Synchronous checkpoint (or the final one): processing waits for the snapshot write.
        await this.#syncWait;
        this.#syncWait = undefined;
        continue;
      }
      if (worked === 0) await this.#sleep(now);
      else if (++rounds % 8 === 0) await yieldToEventLoop();
    }
  }

  #sinkBackpressure(): Promise<void> | undefined {
    for (const op of this.#wiring.operators) {
      const p = op.ready?.();
      if (p) return p;
    }
    return undefined;
  }

  #handle(c: InputChannel, now: number): void {
    const e = c.take()!;
    switch (e.kind) {
      case 'record': {
        this.recordsIn++;
        this.#activity++;
        const ts = this.#valve!.onRecord(c.index, c.sourceUid, e.value, e.timestamp, now);
        this.#current = { channel: c, origin: e.origin, timestamp: ts };
        this.#wiring.emitFromSource(c.sourceUid, e.value, ts, e.tag);
        this.#current = undefined;
        return;
      }
      case 'barrier': {
        const result = this.#aligner.onBarrier(c, e.checkpointId, e.position, this.#activeChannels());
        this.#onAlignment(result);
        return;
      }
      case 'end': {
        this.#activity++;
        c.finished = true;
        this.#onAlignment(this.#aligner.onChannelFinished(this.#activeChannels()));
        return;
      }
    }
  }

  /**
   * A record error raised by an operator while it processes the record being emitted: the source the
   * record came from decides (`Source.rejected`): skip it, emit a dead letter on the source's side
   * output instead (same task, same checkpoint), or fail the task. Returns true when the record was
   * taken care of, otherwise the error to fail with.
   */
  #recordError(error: StreamError, keyBytes: Uint8Array): true | StreamError {
    const cur = this.#current;
    if (cur === undefined) return error;
    const uid = cur.channel.sourceUid;
    const source = this.#wiring.sources.find((s) => s.uid === uid)?.source;
    const verdict = source?.rejected?.({
      error,
      keyBytes,
      origin: cur.origin,
      partition: cur.channel.partition,
    });
    switch (verdict?.kind) {
      case undefined:
        return error;
      case 'fail':
        return verdict.error;
      case 'skip':
        return true;
      case 'emit':
        this.#wiring.emitFromSource(uid, verdict.value, cur.timestamp, verdict.tag);
        return true;
    }
  }

  #activeChannels(): InputChannel[] {
    return this.#channels.filter((c) => !c.finished);
  }

  #updateWatermarks(now: number): void {
    const ops = this.#wiring.operators;
    this.#activity += this.#valve!.update(now, this.#channels, (i, wm) => ops[i]!.advanceWatermark(wm));
  }

  async #sleep(now: number): Promise<void> {
    const deadlines: number[] = [];
    const c = this.#o.config.checkpoints;
    const d = decideTrigger(this.#triggerFacts(now), c);
    // Due now (this round's work changed the facts since #maybeTrigger looked): go round again.
    if (d.trigger) deadlines.push(now);
    else if (d.retryAt !== undefined) deadlines.push(d.retryAt);
    for (const p of this.#pending) deadlines.push(p.triggeredAt + c.timeoutMs);
    if (this.#aligner.aligning && c.alignmentTimeoutMs !== undefined)
      deadlines.push(this.#aligner.startedAt + c.alignmentTimeoutMs);
    for (const op of this.#wiring.operators) {
      const t = op.nextProcessingTimer();
      if (t !== undefined) deadlines.push(t);
    }
    // Only a channel that is not idle yet has an idleness deadline.
    const idleAt = this.#valve!.nextIdleAt(now, this.#channels);
    if (idleAt !== undefined) deadlines.push(idleAt);
    if (deadlines.some((t) => t <= now)) {
      // Due work (e.g. a timer registered for the past): run it after the event loop had a turn,
      // never in a microtask loop that would starve I/O.
      await yieldToEventLoop();
      return;
    }
    await new Promise<void>((resolve) => {
      this.#wakeResolve = resolve;
      if (deadlines.length > 0)
        this.#cancelWakeTimer = this.#o.clock.schedule(Math.min(...deadlines), () => this.#wake());
    });
  }

  #wake(): void {
    this.#cancelWakeTimer?.();
    this.#cancelWakeTimer = undefined;
    const w = this.#wakeResolve;
    this.#wakeResolve = undefined;
    w?.();
  }

  // ---------------------------------------------------------------- checkpoints

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
      this.#o.config.checkpoints.whenIdle === 'skip' &&
      this.#completedInRun !== undefined &&
      this.#completedInRun === this.#nextCheckpointId - 1 &&
      this.#activity === this.#activityAtTrigger &&
      this.#positionsKey() === this.#positionsAtTrigger
    );
  }

  #positionsKey(): string {
    return JSON.stringify(this.#channels.map((c) => c.position));
  }

  #maybeTrigger(now: number): void {
    if (this.#aligner.aligning) {
      const t = this.#o.config.checkpoints.alignmentTimeoutMs;
      if (t !== undefined && now - this.#aligner.startedAt >= t)
        this.#onAlignment(this.#aligner.timeout(this.#activeChannels()));
      return;
    }
    // A requested checkpoint (a savepoint, a stop's final checkpoint) waits like a periodic one while
    // the maximum number are in flight (Flink's CheckpointRequestDecider queues it the same way). Two
    // in flight reach the commit chain in the order their asynchronous parts end, which under load
    // can be the newer first: with a Kafka sink the older commit's offsets and pointer then replace
    // the newer ones, and the next start repeats the newer interval's committed output (issue 12).
    if (this.#requested.length > 0) {
      if (this.#pending.length >= this.#o.config.checkpoints.maxConcurrent) return;
      const req = this.#requested.shift()!;
      const id = this.#trigger(now, req.savepoint, false);
      this.#savepointWaiters.set(id, req);
      return;
    }
    if (decideTrigger(this.#triggerFacts(now), this.#o.config.checkpoints).trigger)
      this.#trigger(now, undefined, false);
  }

  /** Start checkpoint `id`: barriers at the tail of every channel, or an immediate unaligned snapshot. */
  #trigger(now: number, savepoint: string | undefined, final: boolean): number {
    const id = this.#nextCheckpointId++;
    this.#lastTriggerAt = now;
    this.#activityAtTrigger = this.#activity;
    this.#positionsAtTrigger = this.#positionsKey();
    this.#pending.push({ id, savepoint, final, triggeredAt: now, aborted: false, done: undefined });
    const active = this.#activeChannels();
    // Savepoints and final checkpoints are always aligned (a savepoint is self-contained).
    if (this.#o.config.checkpoints.unaligned && savepoint === undefined && !final) {
      this.#onAlignment(this.#aligner.unaligned(id, active, now));
    } else {
      for (const c of active) c.appendBarrier(id);
      this.#onAlignment(this.#aligner.start(id, active, now));
    }
    return id;
  }

  #onAlignment(result: AlignmentResult | undefined): void {
    if (!result) return;
    const pending = this.#pending.find((p) => p.id === result.checkpointId);
    for (const c of this.#channels) c.blocked = false;
    if (!pending || pending.aborted) return;
    const run = this.#snapshot(pending, result);
    pending.done = run;
    if (this.#o.config.checkpoints.snapshot === 'sync' || pending.final) {
      // Synchronous mode: processing waits for the whole checkpoint (awaited by the loop).
      this.#syncWait = run;
    }
  }

  #syncWait: Promise<void> | undefined;

  async #snapshot(p: PendingCheckpoint, a: AlignmentResult): Promise<void> {
    const { storage, faults, listener } = this.#o;
    const t0 = performance.now();
    let capture: KeyedStateCapture | undefined;
    let previousHandle: Promise<KeyedStateHandle | undefined> = Promise.resolve(undefined);
    let settleHandle: (h: KeyedStateHandle | undefined) => void = () => {};
    let handle: KeyedStateHandle | undefined;
    let operators: Record<string, OperatorSnapshot>;
    const channels: ChannelPosition[] = [];
    const inflight: InflightRecord[][] = [];
    try {
      faults?.('snapshot.capture', { taskId: this.scope.taskId, checkpointId: p.id });
      operators = {};
      for (const op of this.#wiring.operators) operators[op.uid] = op.snapshot(p.id);
      capture = this.#backend.capture(p.id);
      previousHandle = this.#previousHandle;
      this.#previousHandle = new Promise((resolve) => {
        settleHandle = resolve;
      });
      for (const c of this.#channels) {
        const records = a.inflight.get(c.index) ?? [];
        channels.push({
          source: c.sourceUid,
          partition: c.partition,
          position: a.positions.get(c.index) ?? c.position,
          inflight: records.length,
        });
        inflight.push(records);
      }
    } catch (e) {
      capture?.release();
      settleHandle(undefined);
      // A failure in the synchronous part fails the task.
      this.#failure ??= e;
      this.#wake();
      return;
    }
    const syncMs = performance.now() - t0;
    // From here on: the asynchronous part.
    await Promise.resolve();
    const t1 = performance.now();
    let meta: CheckpointMetadata;
    try {
      faults?.('snapshot.write', { taskId: this.scope.taskId, checkpointId: p.id });
      const files = checkpointFiles(storage, this.scope, p.id, this.#attempt);
      let keyedFile: FileRef | undefined;
      if (capture.writeCheckpoint && p.savepoint === undefined) {
        // The backend's own format; incremental on top of the previous capture's checkpoint when
        // that one completed (a savepoint or a failure in between makes this one full).
        const base = this.#o.config.checkpoints.incremental ? await previousHandle : undefined;
        handle = await capture.writeCheckpoint(files, base);
      } else {
        keyedFile = await writeKeyedFile(files, await capture.materialize());
      }
      const operatorsFile = await writeOperatorsFile(files, {
        format: TASK_SNAPSHOT_FORMAT,
        operators,
        inflight,
      });
      faults?.('sink.flush', { taskId: this.scope.taskId, checkpointId: p.id });
      for (const op of this.#wiring.operators) await op.flush?.(p.id);
      const payload: TaskPayload = {
        format: TASK_SNAPSHOT_FORMAT,
        stage: this.scope.taskId.replace(/-p\d+$/, ''),
        partition: this.#o.partition,
        partitions: this.#o.stage.partitions,
        partitioner: partitionerName(this.#o.stage.partitioner),
        backend: this.#backend.kind,
        unaligned: a.unaligned,
        channels,
        ...(keyedFile ? { keyedFile: keyedFile.path } : { keyedHandle: handle }),
        operatorsFile: operatorsFile.path,
        ...(this.#fromSavepoint !== undefined ? { fromSavepoint: this.#fromSavepoint } : {}),
      };
      meta = {
        formatVersion: 1,
        jobId: this.#o.jobId,
        taskId: this.scope.taskId,
        checkpointId: p.id,
        timestamp: Date.now(),
        files: [...(keyedFile ? [keyedFile] : handle!.files), operatorsFile],
        type: handle?.type ?? 'full',
        payload,
      };
    } catch (e) {
      capture.release();
      settleHandle(undefined);
      await this.#checkpointFailed(p, e);
      return;
    }
    capture.release();
    const asyncMs = performance.now() - t1;
    // Commit in the order checkpoints get here: checkpoint order while one is in flight at a time
    // (maxConcurrent 1, as Kafka sinks require; see #maybeTrigger). A cancelled incarnation never commits.
    const previous = this.#commitChain;
    let release!: () => void;
    this.#commitChain = new Promise<void>((r) => {
      release = r;
    });
    try {
      await previous.catch(() => {});
      if (this.#cancelled) return settleHandle(undefined); // orphaned files are removed by retention later
      if (p.aborted) {
        settleHandle(undefined);
        await storage.discard(this.scope, p.id).catch(() => {});
        return;
      }
      if (this.#committer) {
        // The sink's transaction commits the checkpoint: output, input positions and the pointer
        // to the metadata file, atomically. Its failure fails the task (fencing decides on restart).
        try {
          const files = checkpointFiles(storage, this.scope, p.id, this.#attempt);
          const metaFile = await files.write('metadata', encodePointedMetadata(meta));
          await this.#committer.commitCheckpoint({
            checkpointId: p.id,
            // Broadcast inputs are every task's to read: their positions live in the snapshot only.
            positions: (meta.payload as TaskPayload).channels
              .filter((c) => !this.#broadcastUids.has(c.source))
              .map((c) => ({ source: c.source, partition: c.partition, position: c.position })),
            pointer: { checkpointId: p.id, ...metaFile },
          });
          meta = { ...meta, files: [...meta.files, metaFile] };
        } catch (e) {
          settleHandle(undefined);
          this.#failure ??= e;
          return;
        }
        // The storage index (for listing and retention) follows; the checkpoint is already complete.
        await storage
          .commit(meta)
          .catch((e: unknown) =>
            listener?.indexFailed?.({ taskId: this.scope.taskId, checkpointId: p.id, error: e }),
          );
      } else {
        try {
          await storage.commit(meta);
        } catch (e) {
          settleHandle(undefined);
          await this.#checkpointFailed(p, e);
          return;
        }
      }
      settleHandle(handle);
      // The checkpoint is committed; the savepoint is a second metadata over the same files. If it
      // fails, the checkpoint still completes and only the savepoint request is rejected.
      let savepointError: unknown;
      if (p.savepoint !== undefined) {
        try {
          await storage.commit({ ...meta, savepoint: p.savepoint });
        } catch (e) {
          savepointError = e;
        }
      }
      this.#pending = this.#pending.filter((x) => x !== p);
      this.#completedIds.add(p.id);
      this.#completedInRun = Math.max(this.#completedInRun ?? 0, p.id);
      this.#lastCompletedAt = this.#o.clock.now();
      this.#consecutiveFailures = 0;
      listener?.checkpointCompleted?.({
        taskId: this.scope.taskId,
        checkpointId: p.id,
        savepoint: p.savepoint,
        final: p.final,
        unaligned: a.unaligned,
        alignmentMs: a.alignmentMs,
        syncMs,
        asyncMs,
        bytes: meta.files.reduce((s, f) => s + f.bytes, 0),
        backend: this.#backend.kind,
        inflightRecords: inflight.reduce((s, r) => s + r.length, 0),
      });
      try {
        faults?.('checkpoint.after-commit', { taskId: this.scope.taskId, checkpointId: p.id });
        for (const op of this.#wiring.operators) await op.notifyComplete(p.id);
      } catch (e) {
        this.#failure ??= e;
        this.#wake();
        return;
      }
      const waiter = this.#savepointWaiters.get(p.id);
      this.#savepointWaiters.delete(p.id);
      if (savepointError !== undefined) waiter?.reject(savepointError);
      else waiter?.resolve(p.savepoint !== undefined ? { ...meta, savepoint: p.savepoint } : meta);
    } finally {
      release();
      this.#wake();
    }
  }

  async #checkpointFailed(p: PendingCheckpoint, error: unknown): Promise<void> {
    this.#pending = this.#pending.filter((x) => x !== p);
    p.aborted = true;
    if (this.#committer && !this.#cancelled) {
      // A transactional sink cannot carry an aborted checkpoint's transaction over to the next one:
      // the task restarts from its last committed checkpoint (the open transaction is fenced). Set
      // before anything is awaited: with this checkpoint no longer pending, the loop would otherwise
      // trigger the next one and could commit it (input positions past this interval's output, which
      // the restart aborts) while the discard below waits on a store that is down.
      this.#failure ??= new StreamError(
        'CHECKPOINT_DECLINED',
        `task ${this.scope.taskId}: checkpoint ${p.id} failed (${error instanceof Error ? error.message : String(error)}); its Kafka transaction cannot be carried over, so the task restarts from its last committed checkpoint`,
        { cause: error },
      );
      this.#wake();
    }
    await this.#o.storage.discard(this.scope, p.id).catch(() => {});
    this.#o.listener?.checkpointFailed?.({ taskId: this.scope.taskId, checkpointId: p.id, error });
    const waiter = this.#savepointWaiters.get(p.id);
    this.#savepointWaiters.delete(p.id);
    waiter?.reject(error);
    if (this.#cancelled) return;
    for (const op of this.#wiring.operators) {
      try {
        op.notifyAborted(p.id);
      } catch (e) {
        this.#failure ??= e;
      }
    }
    this.#consecutiveFailures++;
    if (
      decideOnCheckpointFailure(this.#consecutiveFailures, this.#o.config.checkpoints) === 'fail-task' ||
      p.final
    ) {
      this.#failure ??= new StreamError(
        'CHECKPOINT_FAILURES_EXCEEDED',
        `task ${this.scope.taskId}: ${this.#consecutiveFailures} consecutive checkpoints failed (tolerable: ${this.#o.config.checkpoints.tolerableFailures}); last: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
    this.#wake();
  }

  #checkTimeouts(now: number): void {
    const timeout = this.#o.config.checkpoints.timeoutMs;
    for (const p of [...this.#pending]) {
      if (p.aborted || now - p.triggeredAt < timeout) continue;
      if (this.#aligner.checkpointId === p.id) {
        this.#aligner.cancel();
        for (const c of this.#channels) {
          c.blocked = false;
          c.dropBarriers(new Set([p.id]));
        }
      }
      void this.#checkpointFailed(
        p,
        new StreamError(
          'CHECKPOINT_DECLINED',
          `checkpoint ${p.id} of task ${this.scope.taskId} timed out after ${timeout} ms`,
        ),
      );
    }
  }

  /** End of input: event time to +infinity, then a final checkpoint, committed before returning. */
  async #finish(): Promise<void> {
    const ops = this.#wiring.operators;
    this.#valve!.finish((i, wm) => ops[i]!.advanceWatermark(wm));
    for (;;) {
      await Promise.allSettled(this.#pending.map((p) => p.done));
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#stopRequested) return; // stopped or aborted before the final checkpoint committed
      const id = this.#trigger(this.#o.clock.now(), undefined, true);
      await this.#syncWait;
      this.#syncWait = undefined;
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#completedIds.has(id)) break;
    }
    for (const op of ops) await op.close();
    await Promise.allSettled(this.#readers.map((r) => r.close()));
    await this.#backend.close();
  }
}

function wrapSourceError(c: InputChannel, e: unknown): unknown {
  if (e instanceof StreamError) return e;
  return new StreamError(
    'USER_FUNCTION_FAILED',
    `source '${c.sourceUid}' partition ${c.partition} failed: ${e instanceof Error ? e.message : String(e)}`,
    {
      cause: e,
    },
  );
}
