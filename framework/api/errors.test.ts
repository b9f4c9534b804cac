import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ErrorCodes, isStreamError, PERMANENT_CODES, RETRIABLE_CODES, StreamError } from './errors.ts';

test('docs/errors.md lists exactly the codes of the catalogue, with the same meaning and retriable flag', async () => {
  const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \| ([^|]+) \|/gm)].map(
    (m) => [m[1]!, m[2]!.trim(), m[3]!.trim()] as const,
  );
  assert.deepEqual(rows.map(([c]) => c).sort(), Object.keys(ErrorCodes).sort());
  for (const [code, meaning, retriable] of rows) {
    assert.equal(meaning, ErrorCodes[code as keyof typeof ErrorCodes], code);
    assert.equal(retriable, RETRIABLE_CODES.has(code as keyof typeof ErrorCodes) ? 'yes' : 'no', code);
  }
});

test('docs/errors.md names exactly the permanent codes, and none is retriable', async () => {
  const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const line = /^Permanent codes \(`PERMANENT_CODES`[^:]*: ([^.]*)\./m.exec(doc);
  assert.ok(line, 'docs/errors.md has no "Permanent codes (`PERMANENT_CODES` ...): ..." paragraph');
  const named = [...line[1]!.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]!);
  assert.deepEqual(named.sort(), [...PERMANENT_CODES].sort());
  for (const code of PERMANENT_CODES) {
    assert.equal(RETRIABLE_CODES.has(code), false, code);
    assert.equal(new StreamError(code, 'x').permanent, true, code);
  }
  assert.equal(new StreamError('USER_FUNCTION_FAILED', 'x').permanent, false);
});

test('a StreamError carries its code, cause and the retriable flag of its code', () => {
  const cause = new Error('disk full');
  const e = new StreamError('CHECKPOINT_STORAGE_FAILED', 'writing chk-3 failed', { cause });
  assert.equal(e.retriable, false);
  assert.ok(isStreamError(e, 'CHECKPOINT_STORAGE_FAILED'));
  assert.ok(!isStreamError(e, 'CHECKPOINT_CORRUPT'));
  assert.equal((e as Error).cause, cause);
  assert.equal(new StreamError('KAFKA_RETRIABLE', 'CONCURRENT_TRANSACTIONS').retriable, true);
  for (const code of RETRIABLE_CODES) assert.ok(code in ErrorCodes, code);
});
