/**
 * kafkajs 2.2.4 calls setTimeout with a negative delay when it is not throttled
 * (`network/requestQueue/index.js`, scheduleCheckPendingRequests), which Node >= 23 reports as a
 * TimeoutNegativeWarning on stderr. Node treats the delay as 1 ms, exactly what kafkajs means, so the
 * warning is noise; this drops that one warning type and nothing else. Import it for its effect.
 */
const original = process.emitWarning;
const marker = Symbol.for('kstate.quietTimeoutNegativeWarning');
const flagged = process as unknown as Record<symbol, boolean>;

if (flagged[marker] !== true) {
  flagged[marker] = true;
  process.emitWarning = function emitWarning(this: unknown, warning: string | Error, ...rest: unknown[]) {
    const [typeOrOptions] = rest;
    const type =
      typeof typeOrOptions === 'string'
        ? typeOrOptions
        : typeof typeOrOptions === 'object' && typeOrOptions !== null
          ? (typeOrOptions as { type?: string }).type
          : warning instanceof Error
            ? warning.name
            : undefined;
    if (type === 'TimeoutNegativeWarning') return;
    return (original as (...args: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
}

export {};
