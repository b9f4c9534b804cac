import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isStreamError, StreamJob } from '../../../framework/index.ts';
import type { ServiceConfig } from './config.ts';
import { loadJobModule } from './job-module.ts';

const builder = new URL('../../../framework/datastream/stream-job.ts', import.meta.url).href;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'job-module-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function moduleFile(name: string, body: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, body);
  return path;
}

const config = {} as ServiceConfig;

test('a job built with another copy of kstate (another StreamJob class) is recognised by its brand', async () => {
  // `?second-copy` loads the builder module a second time: its StreamJob is another class, as a second
  // install of the package would give.
  const path = await moduleFile(
    'other-copy.mjs',
    `const { StreamJob } = await import(${JSON.stringify(`${builder}?second-copy`)});\nexport default (config) => new StreamJob('other-copy');\n`,
  );
  const job = await loadJobModule(path, config);
  assert.equal(job instanceof StreamJob, false, 'the test needs a StreamJob of another class');
  assert.equal(job.jobId, 'other-copy');
});

test('a job of another job-graph version, and a module without a job, are refused with what to do', async () => {
  const other = await moduleFile(
    'other-version.mjs',
    `export default { jobId: 'x', [Symbol.for('kstate.StreamJob')]: 999 };\n`,
  );
  await assert.rejects(
    loadJobModule(other, config),
    (e: unknown) =>
      isStreamError(e, 'CONFIG_INVALID') &&
      /job graph is version 999, and this kstate runs version 1/.test(e.message),
  );
  const none = await moduleFile('none.mjs', 'export default { jobId: "x" };\n');
  await assert.rejects(
    loadJobModule(none, config),
    (e: unknown) => isStreamError(e, 'CONFIG_INVALID') && /does not export a job/.test(e.message),
  );
});
