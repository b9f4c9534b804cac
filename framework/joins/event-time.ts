import { StreamError } from '../api/errors.ts';
import type { ProcessContext } from '../api/functions.ts';

/**
 * The event time of the record being processed, or RECORD_TIMESTAMP_MISSING naming the operator:
 * an event-time operator cannot place a record that has no time.
 */
export function eventTimeOf(ctx: ProcessContext, what: string): number {
  const ts = ctx.timestamp;
  if (ts === undefined || !Number.isFinite(ts)) {
    throw new StreamError(
      'RECORD_TIMESTAMP_MISSING',
      `${what} (operator '${ctx.info.operatorUid}') got a record without a timestamp: give its source event time (the Kafka record timestamp, or watermarks.timestamp)`,
    );
  }
  return ts;
}

/** Checks a duration option: a finite number >= min. */
export function checkMs(name: string, value: number, min: number, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new StreamError(
      'CONFIG_INVALID',
      `${what}: ${name} must be a finite number >= ${min}, got ${value}`,
    );
  }
}
