import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { NODE_ENGINES, nodeSupported, nodeSupportProblem } from './support.js';

test('the supported versions: 22.18+, 23.6+, 24 and later', () => {
  for (const v of ['22.18.0', '22.20.1', '23.6.0', '24.0.0', '24.11.1', '26.1.0'])
    assert.equal(nodeSupported(v), true, v);
  for (const v of ['18.20.0', '20.20.2', '21.7.3', '22.0.0', '22.12.0', '22.17.9', '23.5.0'])
    assert.equal(nodeSupported(v), false, v);
});

test('package.json engines, .ci/run and this module agree', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    engines: { node: string };
  };
  assert.equal(pkg.engines.node, NODE_ENGINES);
  // .ci/run asks this module (through any node) whether the machine's node will do.
  const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
  assert.match(ci, /framework\/node\/support\.js/);
});

test('the message names the version found, the one needed and how to get it', () => {
  const m = nodeSupportProblem('20.20.2', '/usr/bin/node');
  assert.ok(m);
  assert.match(m, /Node 20\.20\.2 \(\/usr\/bin\/node\)/);
  assert.match(m, /22\.18 or newer/);
  assert.match(m, /nvm install 24/);
  assert.equal(nodeSupportProblem(process.versions.node), undefined);
});

test('every npm script that runs TypeScript preloads the check', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    scripts: Record<string, string>;
  };
  for (const [name, script] of Object.entries(pkg.scripts)) {
    for (const m of script.matchAll(/(?:^|&&\s*)node\s+(\S+)/g)) {
      if (m[1] === '--import' || m[1] === './framework/node/require-cli.js') continue;
      assert.fail(`npm script '${name}' runs node ${m[1]} without --import ./framework/node/require-cli.js`);
    }
  }
});

test('on this (supported) node the CLI preload is silent', () => {
  const r = spawnSync(
    process.execPath,
    ['--import', './framework/node/require-cli.js', '-e', 'console.log("ran")'],
    {
      cwd: new URL('../..', import.meta.url),
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'ran');
});
