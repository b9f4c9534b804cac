import type { KafkaConnection } from './client.ts';
import { type Admin, Kafka, logLevel } from './internal/kafkajs.ts';

/**
 * Whether this instance still reaches the Kafka cluster, for /readyz (docs/service.md, "/readyz").
 *
 * How it is observed: a probe of its own, one Metadata request for no topic (kafkajs
 * `describeCluster`) every `probeEveryMs` on a connection of its own, with a short request timeout
 * and no retries. The job's own clients are not watched: they retry for a long time before a task
 * fails (that is the point of their retries), and an instance whose tasks are idle sends nothing a
 * broker must answer. A paused broker (SIGSTOP, a network partition) answers no probe, and a stopped
 * one refuses the connection: both count as no contact.
 *
 * The rule (`brokerVerdict`, pure): lost when the last answered probe is more than `lostAfterMs`
 * ago; back as soon as one is answered. The clock and the probe are injected in tests.
 */

export interface BrokerVerdict {
  readonly ready: boolean;
  readonly reason: string;
}

/** Lost when no probe has been answered for more than `lostAfterMs` (since `lastContact`). */
export function brokerVerdict(o: {
  readonly lastContact: number;
  readonly now: number;
  readonly lostAfterMs: number;
  readonly lastError?: string | undefined;
}): BrokerVerdict {
  const silentMs = o.now - o.lastContact;
  if (silentMs <= o.lostAfterMs) return { ready: true, reason: 'the brokers answer' };
  return {
    ready: false,
    reason: `lost the Kafka brokers: none has answered for ${Math.round(silentMs / 1000)} s (more than ${o.lostAfterMs} ms)${o.lastError ? `; last error: ${o.lastError}` : ''}`,
  };
}

export interface BrokerWatchOptions {
  readonly connection: KafkaConnection;
  /** No answer for longer than this: lost. */
  readonly lostAfterMs: number;
  /** Default: a third of `lostAfterMs`, between 250 ms and 5 s. */
  readonly probeEveryMs?: number;
  /** Told when contact is lost (with the reason) and when it is back. */
  readonly onChange?: (v: BrokerVerdict) => void;
  readonly now?: () => number;
  /** Replaces the Metadata request (tests). */
  readonly probe?: () => Promise<void>;
}

export class BrokerWatch {
  readonly #o: BrokerWatchOptions;
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  #lastContact: number;
  #lastError: string | undefined;
  #lost = false;
  #inFlight = false;
  #admin: Admin | undefined;
  #stopped = false;

  /** Starts probing; the start counts as contact (the job has just reached the brokers). */
  constructor(o: BrokerWatchOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#lastContact = this.#now();
    const every = o.probeEveryMs ?? Math.min(5000, Math.max(250, Math.floor(o.lostAfterMs / 3)));
    this.#timer = setInterval(() => void this.probeNow(), every);
    this.#timer.unref();
  }

  verdict(): BrokerVerdict {
    const v = brokerVerdict({
      lastContact: this.#lastContact,
      now: this.#now(),
      lostAfterMs: this.#o.lostAfterMs,
      lastError: this.#lastError,
    });
    if (v.ready === this.#lost) {
      this.#lost = !v.ready;
      this.#o.onChange?.(v);
    }
    return v;
  }

  /** One probe (none while one is in flight); resolves when it has been answered or has failed. */
  async probeNow(): Promise<void> {
    if (this.#inFlight || this.#stopped) return;
    this.#inFlight = true;
    try {
      await (this.#o.probe ?? (() => this.#metadata()))();
      this.#lastContact = this.#now();
      this.#lastError = undefined;
    } catch (e) {
      this.#lastError = e instanceof Error ? e.message : String(e);
    } finally {
      this.#inFlight = false;
      if (this.#stopped) await this.stop(); // a probe that ended after stop() leaves no connection
    }
    if (!this.#stopped) this.verdict(); // tells onChange at once
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    const admin = this.#admin;
    this.#admin = undefined;
    if (admin === undefined) return;
    // Bounded: a stop must not wait on a broker that does not answer.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      admin.disconnect().catch(() => undefined),
      new Promise<void>((r) => {
        timer = setTimeout(r, 1000);
      }),
    ]);
    clearTimeout(timer);
  }

  /** One Metadata request; a failed connection is dropped, so the next probe starts afresh. */
  async #metadata(): Promise<void> {
    const timeoutMs = Math.min(5000, Math.max(500, this.#o.lostAfterMs));
    if (this.#admin === undefined) {
      const c = this.#o.connection;
      this.#admin = new Kafka({
        clientId: `${c.clientId ?? 'kstate'}-readyz`,
        brokers: [...c.brokers],
        ...(c.ssl === undefined ? {} : { ssl: c.ssl }),
        ...(c.sasl === undefined ? {} : { sasl: c.sasl }),
        connectionTimeout: Math.min(timeoutMs, c.connectionTimeoutMs ?? 3000),
        requestTimeout: timeoutMs,
        logLevel: logLevel.NOTHING,
        retry: { retries: 0 },
      }).admin({ retry: { retries: 0 } });
    }
    const admin = this.#admin;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => {
          await admin.connect();
          await admin.describeCluster();
        })(),
        new Promise<never>((_, reject) => {
          // kafkajs's own timeouts bound each step; this bounds them all.
          timer = setTimeout(() => reject(new Error(`no answer within ${2 * timeoutMs} ms`)), 2 * timeoutMs);
        }),
      ]);
    } catch (e) {
      if (this.#admin === admin) this.#admin = undefined;
      void admin.disconnect().catch(() => undefined);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }
}
