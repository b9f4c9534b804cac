/**
 * `npm run demo`: the main demo job (examples/orders/demo.ts; `kstate demo` runs the same from the
 * installed package).
 */
import { demoFailure, runDemo } from '../examples/orders/demo.ts';

runDemo().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${demoFailure(error)}\n`);
    process.exitCode = 1;
  },
);
