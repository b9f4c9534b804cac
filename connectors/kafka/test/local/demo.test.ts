import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const DEMO = fileURLToPath(new URL('../../../../scripts/demo.ts', import.meta.url));

test('the README demo runs as a service, stops on request and verifies its committed totals', async () => {
  const { stdout } = await run(process.execPath, [DEMO], {
    env: { ...process.env, DEMO_SECONDS: '6', DEMO_RATE: '1000' },
    timeout: 120_000,
  });
  assert.match(stdout, /demo: job running/);
  assert.match(stdout, /demo: verified: \d+ customers, \d+ orders; each order counted exactly once/);
});
