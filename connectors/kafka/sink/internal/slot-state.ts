import { StreamError } from '../../../../framework/index.ts';

/**
 * The lifecycle of one transaction slot (one transactional producer of a task), as an explicit table
 * in the manner of kafkajs's `producer/eosManager/transactionStateMachine.js`:
 *
 * ```
 *  fencing --fenced--> idle --begin--> open --close--> prepared --commit--> committing --committed--> idle
 *                                       |                  |                     |
 *                                       +------abort-------+--------abort--------+--> aborting --aborted--> idle
 *  every state --fail--> failed (closed stays closed)        every state --shutdown--> closed
 * ```
 *
 * - `fencing`: connecting; InitProducerId fences a previous owner and aborts what it left open.
 * - `idle`: no transaction; the slot may begin one for the next interval that needs it.
 * - `open`: the transaction of the current checkpoint interval; records are sent into it.
 * - `prepared`: its interval was closed by a barrier; no record joins it any more, the ones already
 *   written may still be on their way (sends drain in order); waits for its checkpoint to commit.
 * - `committing`: offsets and pointer sent, EndTxn(commit) under way (retriable errors retried).
 * - `aborting`: EndTxn(abort) under way.
 * - `failed`: a send, commit or abort failed for good; the task fails and restarts (the next owner's
 *   fencing aborts what is left). A best-effort abort leaves it failed.
 * - `closed`: the task closed the slot; nothing more happens on it (a failure that comes back from
 *   a call made before the close leaves it closed).
 *
 * `send` is a guard, not a change: records may be sent only into an open or prepared transaction.
 * Every other (state, event) pair is a bug and raises KAFKA_TRANSACTION_STATE_INVALID, so that it
 * fails the task instead of hanging it.
 */
export type SlotState =
  | 'fencing'
  | 'idle'
  | 'open'
  | 'prepared'
  | 'committing'
  | 'aborting'
  | 'failed'
  | 'closed';

export type SlotEvent =
  | 'fenced'
  | 'begin'
  | 'send'
  | 'close'
  | 'commit'
  | 'committed'
  | 'abort'
  | 'aborted'
  | 'fail'
  | 'shutdown';

/** The allowed transitions: state -> event -> next state. Anything missing is a wrong transition. */
export const SLOT_TRANSITIONS: {
  readonly [S in SlotState]: { readonly [E in SlotEvent]?: SlotState };
} = {
  fencing: { fenced: 'idle', fail: 'failed', shutdown: 'closed' },
  idle: { begin: 'open', fail: 'failed', shutdown: 'closed' },
  open: { send: 'open', close: 'prepared', abort: 'aborting', fail: 'failed', shutdown: 'closed' },
  prepared: { send: 'prepared', commit: 'committing', abort: 'aborting', fail: 'failed', shutdown: 'closed' },
  committing: { committed: 'idle', abort: 'aborting', fail: 'failed', shutdown: 'closed' },
  aborting: { aborted: 'idle', fail: 'failed', shutdown: 'closed' },
  failed: { abort: 'failed', fail: 'failed', shutdown: 'closed' },
  closed: { fail: 'closed', shutdown: 'closed' },
};

/** The one place that decides: the next state, or the catalogued error for a wrong transition. */
export function nextSlotState(where: string, state: SlotState, event: SlotEvent): SlotState {
  const next = SLOT_TRANSITIONS[state][event];
  if (next === undefined) {
    throw new StreamError(
      'KAFKA_TRANSACTION_STATE_INVALID',
      `${where}: '${event}' is not allowed in state '${state}' (allowed: ${Object.keys(SLOT_TRANSITIONS[state]).join(', ') || 'nothing'})`,
    );
  }
  return next;
}

/**
 * One slot's state, changed only through `apply`. `untilIdle` lets an interval wait for the slot its
 * transaction needs while an older interval's transaction still holds it (commits run in checkpoint
 * order, so that wait always ends); it rejects when the slot fails or closes instead.
 */
export class SlotMachine {
  readonly where: string;
  #state: SlotState = 'fencing';
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #failure: unknown;

  constructor(where: string) {
    this.where = where;
  }

  get state(): SlotState {
    return this.#state;
  }

  /** Apply `event`, or throw KAFKA_TRANSACTION_STATE_INVALID. `failure` is what made a `fail`. */
  apply(event: SlotEvent, failure?: unknown): SlotState {
    const next = nextSlotState(this.where, this.#state, event);
    this.#state = next;
    if (event === 'fail') this.#failure ??= failure;
    if (next === 'idle' || next === 'failed' || next === 'closed') {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) {
        if (next === 'idle') w.resolve();
        else w.reject(this.#ended());
      }
    }
    return next;
  }

  /** Resolves once the slot is idle; rejects if it fails or closes first. */
  untilIdle(): Promise<void> {
    if (this.#state === 'idle') return Promise.resolve();
    if (this.#state === 'failed' || this.#state === 'closed') return Promise.reject(this.#ended());
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #ended(): unknown {
    return (
      this.#failure ??
      new StreamError('KAFKA_TRANSACTION_STATE_INVALID', `${this.where}: the slot is ${this.#state}`)
    );
  }
}
