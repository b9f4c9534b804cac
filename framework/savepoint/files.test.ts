/**
 * Savepoint files in a directory (files.ts): the conformance suite every place an export goes passes
 * (connectors/s3/test/savepoint-files.test.ts runs it against S3Proxy), and the line splitter.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { savepointFilesConformance } from '../testing/conformance/savepoint-files.ts';
import { DirectorySavepointFiles, textLines } from './files.ts';

const roots: string[] = [];
after(() => Promise.all(roots.map((r) => rm(r, { recursive: true, force: true }))));

savepointFilesConformance('directory', async () => {
  const root = await mkdtemp(join(tmpdir(), 'kstate-sp-files-'));
  roots.push(root);
  // A root that does not exist yet, as `--out new-dir` is.
  return new DirectorySavepointFiles(join(root, 'export'));
});

test('a directory holding anything (also no file) is not empty: an export never mixes with it', async () => {
  const root = await mkdtemp(join(tmpdir(), 'kstate-sp-files-'));
  roots.push(root);
  await writeFile(join(root, 'notes.txt'), 'mine');
  assert.equal(await new DirectorySavepointFiles(root).isEmpty(), false);
});

test('textLines: line ends, a last line without one, characters split between chunks', async () => {
  const bytes = Buffer.from('a\r\nб😀\n\nlast');
  const chunks = async function* () {
    for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
  };
  const out: string[] = [];
  for await (const l of textLines(chunks())) out.push(l);
  assert.deepEqual(out, ['a', 'б😀', '', 'last']);
  const none: string[] = [];
  for await (const l of textLines((async function* () {})())) none.push(l);
  assert.deepEqual(none, []);
});
