import { StreamError } from '../api/errors.ts';
import type { WindowTime } from './assigners.ts';

/**
 * When a window emits its result. Every trigger here *fires without purging*: a firing emits the
 * result of everything the window holds so far, and the window keeps its contents until its
 * cleanup time (end - 1 + allowed lateness), as Flink's EventTimeTrigger, ProcessingTimeTrigger and
 * CountTrigger.
 *
 * - `eventTimeTrigger()` (default of event-time windows): once, when the watermark reaches
 *   `end - 1`; then again for each record that arrives late but within the allowed lateness.
 * - `processingTimeTrigger()` (default of processing-time windows): once, when the task clock
 *   reaches `end - 1`.
 * - `countTrigger(n)`: every `n` records the window receives (counted per window), and never on
 *   time: a window whose count is not a multiple of `n` at its cleanup time drops its remainder.
 */
export type WindowTrigger =
  | { readonly kind: 'event-time' }
  | { readonly kind: 'processing-time' }
  | { readonly kind: 'count'; readonly count: number };

export const eventTimeTrigger = (): WindowTrigger => ({ kind: 'event-time' });
export const processingTimeTrigger = (): WindowTrigger => ({ kind: 'processing-time' });

export function countTrigger(count: number): WindowTrigger {
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) {
    throw new StreamError('CONFIG_INVALID', `countTrigger: count must be a positive integer, got ${count}`);
  }
  return { kind: 'count', count };
}

/** The trigger of windows in `time`, checked: a time trigger must match the windows' time domain. */
export function resolveTrigger(
  time: WindowTime,
  trigger: WindowTrigger | undefined,
  uid: string,
): WindowTrigger {
  if (trigger === undefined) return time === 'event' ? eventTimeTrigger() : processingTimeTrigger();
  const kind = (trigger as { kind?: unknown }).kind;
  if (kind === 'count') return countTrigger((trigger as { count: number }).count);
  if (kind === 'event-time' || kind === 'processing-time') {
    if (kind !== `${time}-time`) {
      throw new StreamError(
        'CONFIG_INVALID',
        `window operator '${uid}': a ${kind} trigger cannot fire ${time}-time windows; use ${time === 'event' ? 'eventTimeTrigger()' : 'processingTimeTrigger()'} (the default) or countTrigger(n)`,
      );
    }
    return trigger;
  }
  throw new StreamError(
    'CONFIG_INVALID',
    `window operator '${uid}': unknown trigger ${JSON.stringify(trigger)}; use eventTimeTrigger(), processingTimeTrigger() or countTrigger(n)`,
  );
}
