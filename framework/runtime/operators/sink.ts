import { StreamError } from '../../api/errors.ts';
import type { SinkWriter } from '../../api/sink.ts';
import { StatelessOperator } from './stateless.ts';
import type { OperatorEnv, OperatorSnapshot } from './types.ts';
import { failUser, userRecordError } from './types.ts';

/**
 * Drives a two-phase SinkWriter: `prepareCommit` at each barrier, `commit` of every pending
 * committable up to n when checkpoint n completes (subsuming), and on restore `recover` with the
 * committables the checkpoint recorded (commits that may not have happened before the failure).
 */
export class SinkOperator extends StatelessOperator {
  readonly #writer: SinkWriter<unknown>;
  /** Committables prepared but not yet committed, oldest first. */
  #pending: [number, unknown][] = [];
  /** Records given to the writer by this operator instance (for metrics). */
  written = 0;

  constructor(uid: string, env: OperatorEnv, writer: SinkWriter<unknown>) {
    super(uid, env);
    this.#writer = writer;
  }

  override async open(restored: OperatorSnapshot | undefined): Promise<void> {
    const committables = restored?.committables ?? [];
    if (committables.length > 0 || restored) {
      await this.#writer.recover?.(committables.map(([, c]) => c).filter((c) => c !== undefined));
    }
  }

  process(_input: number, value: unknown, timestamp: number | undefined): void {
    try {
      this.#writer.write(value, timestamp);
    } catch (e) {
      // The writer's own failure fails the task; what its encoding (a user function) threw on this
      // record is a record error (nothing of the record was written).
      if (e instanceof StreamError) throw e;
      userRecordError(this.env, this.uid, 'sink write', e);
      return;
    }
    this.written++;
  }

  override snapshot(checkpointId: number): OperatorSnapshot {
    let c: unknown;
    try {
      c = this.#writer.prepareCommit(checkpointId);
    } catch (e) {
      failUser(this.uid, 'sink prepareCommit', e);
    }
    this.#pending.push([checkpointId, c]);
    return { committables: this.#pending.map(([id, x]) => [id, x]) };
  }

  override async notifyComplete(checkpointId: number): Promise<void> {
    const due = this.#pending.filter(([id]) => id <= checkpointId);
    if (due.length === 0) return;
    this.#pending = this.#pending.filter(([id]) => id > checkpointId);
    const committables = due.map(([, c]) => c).filter((c) => c !== undefined);
    if (committables.length > 0) await this.#writer.commit(committables);
  }

  committer() {
    return this.#writer.committer;
  }

  async flush(checkpointId: number): Promise<void> {
    await this.#writer.flush?.(checkpointId);
  }

  ready(): Promise<void> | undefined {
    return this.#writer.ready?.();
  }

  override async close(): Promise<void> {
    await this.#writer.close();
  }

  override async abort(): Promise<void> {
    try {
      await this.#writer.abort();
      await this.#writer.close();
    } catch {
      // abort is best effort: the restored task recovers from the last committed checkpoint
    }
  }
}
