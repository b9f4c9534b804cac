import { StreamError } from '../../api/errors.ts';
import type { KeyId } from '../../api/keys.ts';
import type {
  CheckpointFiles,
  KeyedStateCapture,
  KeyedStateHandle,
  KeyedStateSnapshot,
  StateMeta,
} from '../backend.ts';
import type { StoredValueCodec } from '../value-codec.ts';
import {
  type ChainPosition,
  type CheckpointContent,
  writeChainCheckpoint,
} from './checkpoint/write-checkpoint.ts';

/**
 * What every keyed backend's capture shares: its lifetime, and the asynchronous part of a
 * checkpoint in the chain format. A backend implements the primitives: `_materialize` (the canonical
 * snapshot), `_content` (what `writeChainCheckpoint` writes), `_free` (drop what the capture kept).
 *
 * Lifetime: `materialize()` and `writeCheckpoint()` read what the capture froze at the barrier, and
 * may run at once. `release()` while a read runs is deferred until every read has settled; then the
 * capture is freed, once. A read started after `release()` is refused (CHECKPOINT_DECLINED).
 */
export abstract class BackendCapture implements KeyedStateCapture {
  readonly checkpointId: number;
  readonly #at: ChainPosition;
  #reading = 0;
  #released = false;
  #freed = false;

  protected constructor(checkpointId: number, at: ChainPosition) {
    this.checkpointId = checkpointId;
    this.#at = at;
  }

  /** The canonical snapshot of the state at the capture (values serialized). */
  protected abstract _materialize(): Promise<KeyedStateSnapshot>;
  /** What the capture holds, for the checkpoint skeleton (write-checkpoint.ts). */
  protected abstract _content(): CheckpointContent;
  /** Drops what the backend kept for this capture. Called once, when released and no read runs. */
  protected abstract _free(): void;
  /** The error a read that threw `e` fails with (a backend may translate its own). Default: `e`. */
  protected _readFailed(e: unknown): unknown {
    return e;
  }

  materialize(): Promise<KeyedStateSnapshot> {
    return this.#read(() => this._materialize());
  }

  writeCheckpoint(files: CheckpointFiles, previous: KeyedStateHandle | undefined): Promise<KeyedStateHandle> {
    return this.#read(() => writeChainCheckpoint(this.#at, this._content(), files, previous));
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    if (this.#reading === 0) this.#free();
  }

  /**
   * A value's stored bytes, for a checkpoint of this capture: a serializer that throws fails the
   * checkpoint (CHECKPOINT_DECLINED naming the state and key), not the task.
   */
  protected encode(meta: StateMeta, codec: StoredValueCodec, key: KeyId, value: unknown): Uint8Array {
    try {
      return codec.encode(value);
    } catch (e) {
      throw new StreamError(
        'CHECKPOINT_DECLINED',
        `checkpoint ${this.checkpointId}: serializer '${meta.serializerId}' cannot serialize the value of state ` +
          `'${meta.name}' key ${JSON.stringify(key)}: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
  }

  async #read<T>(read: () => Promise<T>): Promise<T> {
    if (this.#released) {
      throw new StreamError(
        'CHECKPOINT_DECLINED',
        `the keyed state capture of checkpoint ${this.checkpointId} was released before it was read`,
      );
    }
    this.#reading++;
    try {
      return await read();
    } catch (e) {
      throw this._readFailed(e);
    } finally {
      this.#reading--;
      if (this.#released && this.#reading === 0) this.#free();
    }
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this._free();
  }
}
