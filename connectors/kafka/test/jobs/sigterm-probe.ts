/**
 * Preloaded by cli.test.ts (`node --import`): says on stderr when the process first listens for
 * SIGTERM and how many framework modules had loaded by then, so that a test can signal `kstate run`
 * at that very moment and check that nothing slow ran before it.
 */
import { registerHooks } from 'node:module';

let frameworkModules = 0;
registerHooks({
  load(url, context, next) {
    if (url.includes('/framework/')) frameworkModules++;
    return next(url, context);
  },
});

const on = process.on;
let reported = false;
process.on = function (this: NodeJS.Process, event: string | symbol, listener: (...args: unknown[]) => void) {
  const result = on.call(this, event, listener);
  if (event === 'SIGTERM' && !reported) {
    reported = true;
    process.stderr.write(`sigterm-probe: listening after ${frameworkModules} framework modules\n`);
  }
  return result;
} as typeof process.on;
