import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The version of the kstate package this module belongs to: the `version` of the nearest
 * package.json named "kstate" above `from` (default: this module). Walking up by name rather than a
 * fixed number of levels makes the same code right in the repository
 * (connectors/kafka/cli/version.ts), in a build (dist/connectors/kafka/cli/version.js, where a
 * package.json of another name, e.g. one that only sets "type", may sit in between) and in an
 * installed package (node_modules/kstate/dist/...). `undefined` when there is none.
 */
export function packageVersion(from: string | URL = import.meta.url): string | undefined {
  let dir = dirname(typeof from === 'string' && !from.startsWith('file:') ? from : fileURLToPath(from));
  for (;;) {
    const pkg = readPackage(join(dir, 'package.json'));
    if (pkg?.name === 'kstate' && typeof pkg.version === 'string') return pkg.version;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

function readPackage(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    const pkg: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof pkg === 'object' && pkg !== null ? pkg : undefined;
  } catch {
    return undefined;
  }
}
