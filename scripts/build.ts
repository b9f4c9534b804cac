/**
 * `npm run build` (and `npm pack`, through `prepack`): the package's JavaScript and declarations in
 * dist/ (tsconfig.build.json), the bin made executable, and a check that nothing but the package's
 * own modules was emitted (no tests, no benchmarks). docs/package.md.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(dist, { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(`build: tsc failed (exit ${r.status})\n`);
  process.exit(1);
}
chmodSync(join(dist, 'connectors/kafka/cli/bin.js'), 0o755);

const files = readdirSync(dist, { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile())
  .map((e) => relative(dist, join(e.parentPath, e.name)));
const stray = files.filter((f) => /\.test\.|(^|\/)test\/|^scripts\//.test(f));
if (stray.length > 0) {
  process.stderr.write(
    `build: dist/ holds files that are not the package's: ${stray.slice(0, 10).join(', ')}\n`,
  );
  process.exit(1);
}
const js = files.filter((f) => f.endsWith('.js')).length;
process.stdout.write(`build: ${js} modules and their declarations in dist/\n`);
