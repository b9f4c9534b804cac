// @ts-check
/**
 * For commands: the `kstate` bin imports it first, and the repository's `npm run` scripts preload it
 * (`node --import ./framework/node/require-cli.js script.ts`), so an unsupported Node prints one clear
 * message (./support.js) and exits 1 before any TypeScript is loaded.
 */
import { nodeSupportProblem } from './support.js';

const problem = nodeSupportProblem();
if (problem !== undefined) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
