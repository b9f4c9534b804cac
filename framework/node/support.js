// @ts-check
/**
 * Which Node.js versions kstate runs on: one rule, read by every entry point (the `kstate` bin, the
 * library's entry modules, the repository's `npm run` scripts through `node --import`) and by `.ci/run`,
 * and kept equal to package.json `engines.node` by a unit test.
 *
 * Plain JavaScript on purpose: it must load on a Node that cannot run TypeScript (Node 20, and 22
 * before 22.18 strips no types by default), so that such a Node gets this module's one clear
 * sentence instead of `ERR_UNKNOWN_FILE_EXTENSION` with a stack trace.
 *
 * The rule: 22.18 or newer on the 22 line (the first 22.x that runs `.ts` files without a flag), or
 * 23.6 and newer (23.6 made type stripping the default; 24 is the current line).
 */

/** package.json `engines.node`. */
export const NODE_ENGINES = '>=22.18.0 <23 || >=23.6.0';

/**
 * @param {string} version `process.versions.node` form, e.g. `22.12.0`
 * @returns {boolean}
 */
export function nodeSupported(version) {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major === 22) return minor >= 18;
  if (major === 23) return minor >= 6;
  return major > 23;
}

/**
 * The message for an unsupported Node, or undefined when this one is supported.
 * @param {string} [version] default: this process's
 * @param {string} [execPath] default: this process's
 * @returns {string | undefined}
 */
export function nodeSupportProblem(version = process.versions.node, execPath = process.execPath) {
  if (nodeSupported(version)) return undefined;
  return [
    `kstate needs Node.js 22.18 or newer (22.18+ or 24), and this is Node ${version} (${execPath}).`,
    'Install Node 24 and run again: from https://nodejs.org, with a version manager (`nvm install 24`,',
    '`fnm install 24`, `volta install node@24`), or without root from npm: `npm install --prefix ~/.node24 node@24`',
    'then put ~/.node24/node_modules/.bin first on PATH.',
  ].join('\n');
}
