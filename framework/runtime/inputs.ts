import { StreamError } from '../api/errors.ts';
import type { SourceReader } from '../api/source.ts';
import { type InflightRecord, InputChannel } from './channel.ts';
import type { ChannelPosition } from './snapshot-io.ts';
import type { SourceBinding } from './wiring.ts';

/**
 * The task's side of its input channels (framework/runtime/channel.ts): one channel per source
 * partition the task reads, made, fed, held and closed here, so the task loop and the checkpointer
 * only take elements, look at availability and append barriers. This is the one seam between the
 * task and the channel's feeding (the source contract): a change there is an edit here.
 *
 * A reader's failure reaches the task through `onFailure`, once per channel: from the channel's wake
 * (a failure met while filling outside the loop), after `start` attached it, and from `checkFailed`
 * after the loop took from a channel (a failure met while refilling inside `take`).
 */
export class TaskInputs {
  readonly channels: InputChannel[] = [];
  readonly #held = new Set<string>();
  readonly #readers: SourceReader<unknown>[] = [];
  readonly #reported = new Set<InputChannel>();
  #onFailure: (channel: InputChannel, error: unknown) => void = () => {};

  /**
   * Make the channels: one per partition of each source (every partition of a broadcast source,
   * `partition` of the others), positioned as restored (`restored`, in snapshot order, with the
   * in-flight records of an unaligned checkpoint, replayed first). `wake` ends the loop's wait.
   */
  open(
    sources: readonly SourceBinding[],
    partition: number,
    capacity: number,
    restored:
      | {
          readonly channels: readonly ChannelPosition[];
          readonly inflight: readonly (readonly InflightRecord[])[];
        }
      | undefined,
    wake: () => void,
    onFailure: (channel: InputChannel, error: unknown) => void,
  ): void {
    this.#onFailure = onFailure;
    const saved = new Map<string, { position: unknown; inflight: readonly InflightRecord[] }>();
    restored?.channels.forEach((c, i) => {
      saved.set(`${c.source}#${c.partition}`, { position: c.position, inflight: restored.inflight[i] ?? [] });
    });
    for (const src of sources) {
      const parts = src.broadcast ? [...Array(src.source.partitions()).keys()] : [partition];
      for (const p of parts) {
        const s = saved.get(`${src.uid}#${p}`);
        const channel: InputChannel = new InputChannel({
          index: this.channels.length,
          sourceUid: src.uid,
          partition: p,
          capacity,
          position: s?.position,
          wake: () => {
            this.checkFailed(channel);
            wake();
          },
        });
        channel.held = this.#held.has(src.uid);
        if (s && s.inflight.length > 0) channel.prepend(s.inflight);
        this.channels.push(channel);
        src.channels.push(channel.index);
      }
    }
  }

  /** Open a reader for every channel, from its position, and start feeding the channel from it. */
  async start(sources: readonly SourceBinding[], maxBatch: number): Promise<void> {
    for (const c of this.channels) {
      const src = sources.find((s) => s.uid === c.sourceUid)!;
      const reader = await src.source.createReader(c.partition, c.position);
      // Before its first batch, a fresh channel's position is where its reader starts (a checkpoint
      // triggered at once, as at a task's phase of the interval, must carry it: the Kafka sink commits it).
      c.position ??= (reader as { position?: () => unknown }).position?.();
      this.#readers.push(reader);
      c.attach(reader, maxBatch);
      this.checkFailed(c);
    }
  }

  /** Report the channel's reader failure, once. */
  checkFailed(c: InputChannel): void {
    if (c.failure === undefined || this.#reported.has(c)) return;
    this.#reported.add(c);
    this.#onFailure(c, c.failure);
  }

  /** Hold back (or release) the channels of one source, also those not made yet. */
  hold(sourceUid: string, held: boolean): void {
    if (held) this.#held.add(sourceUid);
    else this.#held.delete(sourceUid);
    for (const c of this.channels) if (c.sourceUid === sourceUid) c.held = held;
  }

  /** Channels that have not delivered their end. */
  active(): InputChannel[] {
    return this.channels.filter((c) => !c.finished);
  }

  get allFinished(): boolean {
    return this.channels.every((c) => c.finished);
  }

  /** The channels' positions as one comparable string (has a source moved since?). */
  positionsKey(): string {
    return JSON.stringify(this.channels.map((c) => c.position));
  }

  /** Stop feeding the channels (they take nothing more from their readers). */
  stop(): void {
    for (const c of this.channels) c.stop();
  }

  /** Close every reader not closed yet (after the final checkpoint, or on teardown). Never throws. */
  async closeReaders(): Promise<void> {
    const readers = this.#readers.splice(0);
    await Promise.allSettled(readers.map((r) => r.close()));
  }
}

/** A reader's failure as the task fails with it: a StreamError as it is, else USER_FUNCTION_FAILED. */
export function sourceFailure(c: InputChannel, e: unknown): unknown {
  if (e instanceof StreamError) return e;
  return new StreamError(
    'USER_FUNCTION_FAILED',
    `source '${c.sourceUid}' partition ${c.partition} failed: ${e instanceof Error ? e.message : String(e)}`,
    { cause: e },
  );
}
