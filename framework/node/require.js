// @ts-check
/**
 * Imported first by the library's entry modules (`kstate`, `kstate/kafka`, `kstate/testing`): on an
 * unsupported Node the import fails at once with one clear sentence (an Error with code
 * `ERR_KSTATE_NODE_VERSION`) instead of a later, unrelated failure. See ./support.js.
 */
import { nodeSupportProblem } from './support.js';

const problem = nodeSupportProblem();
if (problem !== undefined) {
  throw Object.assign(new Error(problem), { code: 'ERR_KSTATE_NODE_VERSION' });
}
