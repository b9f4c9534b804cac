import { mapState, valueState } from '../api/descriptors.ts';
import type { Collector, KeyedContext, OutputTag } from '../api/functions.ts';
import type { Key } from '../api/keys.ts';
import type { CompiledPattern } from './compile.ts';
import { advanceTime, type PartialMatch, step } from './nfa.ts';

/** A match: the events each stage took (stages that took none are absent), first and last event time. */
export interface CepMatch<E> {
  /** Id of the pattern (the static operator's `id` option, or the dynamic pattern's id). */
  readonly pattern: string;
  readonly version: number;
  readonly events: Readonly<Record<string, readonly E[]>>;
  readonly start: number;
  readonly end: number;
}

/** A partial match that could not complete within the pattern's `within`: the events it had. */
export interface CepTimeout<E> extends CepMatch<E> {
  /** The time at which it timed out (first event time + within). */
  readonly timedOutAt: number;
}

export interface ActivePattern<E> {
  readonly id: string;
  readonly version: number;
  readonly nfa: CompiledPattern<E>;
}

export interface EngineOptions<E> {
  /** `event` (default): events wait in keyed state until the watermark passes them. `processing`: at once. */
  readonly timeDomain?: 'event' | 'processing';
  /** Timed-out partial matches go here; without it they are dropped. */
  readonly timedOut?: OutputTag<CepTimeout<E>>;
  /**
   * Late events (time <= watermark on arrival) and, in event time, events without a timestamp;
   * without it they are dropped and counted (`kstate_late_records_dropped_total`).
   */
  readonly late?: OutputTag<E>;
}

/** Partial matches of one pattern for one key, with the pattern version they belong to. */
interface PatternKeyState {
  readonly v: number;
  readonly p: PartialMatch[];
}

/**
 * The per-key CEP machinery both operators share. Keyed state, per key:
 *
 * | state | type | holds |
 * | --- | --- | --- |
 * | `cep.pending` | map time -> events | event-time events not yet passed by the watermark |
 * | `cep.events` | map seq -> [time, event] | the shared buffer: events some partial match holds |
 * | `cep.partials` | map pattern id -> { v, p } | partial matches per pattern and its version |
 * | `cep.seq` | value | the next event seq (cleared when the key holds no partial match) |
 *
 * Every event is stored once; partial matches hold seqs. An event leaves the buffer as soon as no
 * partial match holds it, a partial match leaves at `within` (or when it can no longer complete), and
 * a pending event leaves when the watermark passes it: a key without partial matches holds nothing.
 */
export class CepEngine<E> {
  readonly #options: EngineOptions<E>;
  readonly #pending = mapState<number, E[]>('cep.pending');
  readonly #events = mapState<number, [number, E]>('cep.events');
  readonly #partials = mapState<string, PatternKeyState>('cep.partials');
  readonly #seq = valueState<number>('cep.seq');

  constructor(options: EngineOptions<E>) {
    this.#options = options;
  }

  get timeDomain(): 'event' | 'processing' {
    return this.#options.timeDomain ?? 'event';
  }

  /** An input event: buffered until the watermark passes it (event time) or processed at once. */
  onElement(
    value: E,
    ctx: KeyedContext<Key>,
    out: Collector<CepMatch<E>>,
    patterns: readonly ActivePattern<E>[],
  ): void {
    if (this.timeDomain === 'processing') {
      this.#run(ctx.currentProcessingTime(), [value], ctx, out, patterns);
      return;
    }
    const ts = ctx.timestamp;
    if (ts === undefined || ts <= ctx.timerService.currentWatermark()) {
      if (this.#options.late) ctx.output(this.#options.late, value);
      else ctx.lateRecordDropped();
      return;
    }
    const pending = ctx.getMapState(this.#pending);
    pending.put(ts, [...(pending.get(ts) ?? []), value]);
    ctx.timerService.registerEventTimeTimer(ts);
  }

  /** A timer: release the events of that time (event time) and time out partial matches. */
  onTimer(
    timestamp: number,
    domain: 'event' | 'processing',
    ctx: KeyedContext<Key>,
    out: Collector<CepMatch<E>>,
    patterns: readonly ActivePattern<E>[],
  ): void {
    if (domain !== this.timeDomain) return;
    let events: E[] = [];
    if (domain === 'event') {
      const pending = ctx.getMapState(this.#pending);
      events = pending.get(timestamp) ?? [];
      if (events.length > 0) pending.remove(timestamp);
    }
    this.#run(timestamp, events, ctx, out, patterns);
  }

  #run(
    time: number,
    events: readonly E[],
    ctx: KeyedContext<Key>,
    out: Collector<CepMatch<E>>,
    patterns: readonly ActivePattern<E>[],
  ): void {
    const partialState = ctx.getMapState(this.#partials);
    const buffer = ctx.getMapState(this.#events);
    const current = new Map(patterns.map((p) => [p.id, p]));
    const loaded = new Map<string, PartialMatch[]>();
    const before = new Set<number>();
    for (const [id, st] of partialState.entries()) {
      for (const p of st.p) for (const s of p.ev) before.add(s);
      const pat = current.get(id);
      // Partial matches of a removed or changed pattern are dropped.
      if (pat === undefined || pat.version !== st.v) partialState.remove(id);
      else loaded.set(id, st.p);
    }
    const fresh = new Map<number, [number, E]>();
    const entry = (seq: number): [number, E] => fresh.get(seq) ?? buffer.get(seq)!;
    const lookup = (seq: number): E => entry(seq)[1];
    const timedOutTag = this.#options.timedOut;
    for (const pat of patterns) {
      const { alive, timedOut } = advanceTime(pat.nfa, loaded.get(pat.id) ?? [], time);
      loaded.set(pat.id, alive);
      if (timedOutTag) {
        for (const p of timedOut) {
          const m = toMatch(pat, p, entry);
          ctx.output(timedOutTag, { ...m, timedOutAt: p.t0 + pat.nfa.withinMs! }, time);
        }
      }
    }
    let seq = ctx.getState(this.#seq).value() ?? 0;
    for (const value of events) {
      const event = { seq: seq++, ts: time, value };
      fresh.set(event.seq, [time, value]);
      for (const pat of patterns) {
        const r = step(pat.nfa, loaded.get(pat.id)!, event, lookup);
        loaded.set(pat.id, r.partials);
        for (const m of r.matches) out.collect(toMatch(pat, m, entry), time);
        const within = pat.nfa.withinMs;
        if (within !== undefined && r.partials.some((p) => p.ev[0] === event.seq)) {
          if (this.timeDomain === 'event') ctx.timerService.registerEventTimeTimer(time + within);
          else ctx.timerService.registerProcessingTimeTimer(time + within);
        }
      }
    }
    const after = new Set<number>();
    for (const pat of patterns) {
      const ps = loaded.get(pat.id)!;
      for (const p of ps) for (const s of p.ev) after.add(s);
      if (ps.length > 0) partialState.put(pat.id, { v: pat.version, p: ps });
      else if (partialState.contains(pat.id)) partialState.remove(pat.id);
    }
    for (const s of before) if (!after.has(s)) buffer.remove(s);
    for (const s of after) {
      const f = fresh.get(s);
      if (f) buffer.put(s, f);
    }
    if (after.size === 0) ctx.getState(this.#seq).clear();
    else ctx.getState(this.#seq).update(seq);
  }
}

function toMatch<E>(
  pat: ActivePattern<E>,
  p: PartialMatch,
  entry: (seq: number) => [number, E],
): CepMatch<E> {
  const events: Record<string, E[]> = {};
  p.ev.forEach((seq, i) => {
    const name = pat.nfa.stages[p.at[i]!]!.name;
    const list = events[name] ?? [];
    list.push(entry(seq)[1]);
    events[name] = list;
  });
  return {
    pattern: pat.id,
    version: pat.version,
    events,
    start: p.t0,
    end: entry(p.ev[p.ev.length - 1]!)[0],
  };
}
