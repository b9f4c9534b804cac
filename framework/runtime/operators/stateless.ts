import type { OperatorEnv, OperatorSnapshot, RuntimeOperator } from './types.ts';
import { userRecordError } from './types.ts';

/** Defaults for operators without state or timers. */
export abstract class StatelessOperator implements RuntimeOperator {
  readonly uid: string;
  protected readonly env: OperatorEnv;
  constructor(uid: string, env: OperatorEnv) {
    this.uid = uid;
    this.env = env;
  }
  abstract process(input: number, value: unknown, timestamp: number | undefined): void;
  async open(_restored: OperatorSnapshot | undefined): Promise<void> {}
  advanceWatermark(_watermark: number): void {}
  fireProcessingTimers(_now: number): void {}
  nextProcessingTimer(): number | undefined {
    return undefined;
  }
  snapshot(_checkpointId: number): OperatorSnapshot {
    return {};
  }
  async notifyComplete(_checkpointId: number): Promise<void> {}
  notifyAborted(_checkpointId: number): void {}
  async close(): Promise<void> {}
  async abort(): Promise<void> {}
}

export class MapOperator extends StatelessOperator {
  readonly #fn: (v: unknown) => unknown;
  constructor(uid: string, env: OperatorEnv, fn: (v: unknown) => unknown) {
    super(uid, env);
    this.#fn = fn;
  }
  process(_input: number, value: unknown, timestamp: number | undefined): void {
    let r: unknown;
    try {
      r = this.#fn(value);
    } catch (e) {
      userRecordError(this.env, this.uid, 'map', e);
      return;
    }
    this.env.out.emit(r, timestamp);
  }
}

export class FilterOperator extends StatelessOperator {
  readonly #fn: (v: unknown) => boolean;
  constructor(uid: string, env: OperatorEnv, fn: (v: unknown) => boolean) {
    super(uid, env);
    this.#fn = fn;
  }
  process(_input: number, value: unknown, timestamp: number | undefined): void {
    let keep: boolean;
    try {
      keep = this.#fn(value);
    } catch (e) {
      userRecordError(this.env, this.uid, 'filter', e);
      return;
    }
    if (keep) this.env.out.emit(value, timestamp);
  }
}

export class FlatMapOperator extends StatelessOperator {
  readonly #fn: (v: unknown) => Iterable<unknown>;
  constructor(uid: string, env: OperatorEnv, fn: (v: unknown) => Iterable<unknown>) {
    super(uid, env);
    this.#fn = fn;
  }
  process(_input: number, value: unknown, timestamp: number | undefined): void {
    let items: unknown[];
    try {
      items = [...this.#fn(value)];
    } catch (e) {
      userRecordError(this.env, this.uid, 'flatMap', e);
      return;
    }
    for (const item of items) this.env.out.emit(item, timestamp);
  }
}

export class UnionOperator extends StatelessOperator {
  process(_input: number, value: unknown, timestamp: number | undefined): void {
    this.env.out.emit(value, timestamp);
  }
}
