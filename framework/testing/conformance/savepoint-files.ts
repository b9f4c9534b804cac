import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SavepointFiles } from '../../savepoint/files.ts';

/** A fresh, empty root each call (a new directory, a new prefix); the suite closes it. */
export type MakeSavepointFiles = () => Promise<SavepointFiles>;

export interface SavepointFilesCapabilities {
  /**
   * Bytes of the large file written in many chunks: above an object store's part size, so that it is
   * a multipart upload. Default 3 MiB.
   */
  readonly largeBytes?: number;
  /** A write that fails midway leaves no file under its name (object stores). Default false. */
  readonly atomicWrite?: boolean;
}

/**
 * The conformance suite of `SavepointFiles` (framework/savepoint/files.ts), which every place a
 * savepoint is exported to passes: a directory, an object-store prefix. Registers node:test tests:
 *
 *     savepointFilesConformance('directory', async () => new DirectorySavepointFiles(await mkdtemp(...)));
 *
 * What it checks: a new root is empty and lists nothing; written files read back (whole and by line,
 * `\n` and `\r\n`, a last line without a line end, multi-byte characters in any chunking) and are
 * listed relative and sorted, nested; an existing file is never replaced; a missing file is
 * `undefined` to readText and an error to readLines; a large file written in many chunks reads back
 * line for line; a write whose chunks fail rejects with that failure (and leaves nothing, where
 * `atomicWrite`).
 */
export function savepointFilesConformance(
  name: string,
  make: MakeSavepointFiles,
  capabilities: SavepointFilesCapabilities = {},
): void {
  const largeBytes = capabilities.largeBytes ?? 3 * 1024 * 1024;
  async function using(fn: (files: SavepointFiles) => Promise<void>): Promise<void> {
    const files = await make();
    try {
      await fn(files);
    } finally {
      files.close?.();
    }
  }
  const lines = async (it: AsyncIterable<string>) => {
    const out: string[] = [];
    for await (const l of it) out.push(l);
    return out;
  };

  describe(`savepoint files conformance: ${name}`, () => {
    test('a new root is empty, lists nothing, and has no file', () =>
      using(async (files) => {
        assert.equal(await files.isEmpty(), true);
        assert.deepEqual(await files.list(), []);
        assert.equal(await files.readText('savepoint.json'), undefined);
        assert.equal(await files.readText('op/state.ndjson'), undefined);
        await assert.rejects(lines(files.readLines('op/state.ndjson')));
      }));

    test('files written read back whole and by line, listed relative, nested and sorted', () =>
      using(async (files) => {
        await files.write('savepoint.json', ['{"a":', '1}\n']);
        await files.write('op-b/s.ndjson', ['{"k":1}\n{"k":2}\n']);
        await files.write(
          'op-a/x%2Fy.ndjson',
          (async function* () {
            yield 'one\r\ntwo\n';
            yield '';
            yield 'thr';
            yield 'ee';
          })(),
        );
        await files.write('op-a/empty.ndjson', []);
        assert.equal(await files.isEmpty(), false);
        assert.deepEqual(await files.list(), [
          'op-a/empty.ndjson',
          'op-a/x%2Fy.ndjson',
          'op-b/s.ndjson',
          'savepoint.json',
        ]);
        assert.equal(await files.readText('savepoint.json'), '{"a":1}\n');
        assert.deepEqual(await lines(files.readLines('op-a/x%2Fy.ndjson')), ['one', 'two', 'three']);
        assert.deepEqual(await lines(files.readLines('op-b/s.ndjson')), ['{"k":1}', '{"k":2}']);
        assert.deepEqual(await lines(files.readLines('op-a/empty.ndjson')), []);
        assert.equal(await files.readText('op-a/empty.ndjson'), '');
        assert.ok(files.describe('op-b/s.ndjson').startsWith(files.location));
        assert.ok(files.describe('op-b/s.ndjson').endsWith('op-b/s.ndjson'));
      }));

    test('an existing file is never replaced', () =>
      using(async (files) => {
        await files.write('savepoint.json', ['first\n']);
        await assert.rejects(files.write('savepoint.json', ['second\n']));
        assert.equal(await files.readText('savepoint.json'), 'first\n');
      }));

    test('multi-byte characters survive any chunking, and a large file reads back line for line', () =>
      using(async (files) => {
        const line = (i: number) => JSON.stringify({ key: `ключ-${i}-😀`, value: 'é'.repeat(i % 50) });
        let count = 0;
        let bytes = 0;
        await files.write(
          'big/state.ndjson',
          (function* () {
            while (bytes < largeBytes) {
              const chunk: string[] = [];
              for (let j = 0; j < 997; j++) chunk.push(line(count++));
              const text = `${chunk.join('\n')}\n`;
              bytes += Buffer.byteLength(text);
              yield text;
            }
          })(),
        );
        let i = 0;
        for await (const l of files.readLines('big/state.ndjson')) {
          if (l !== line(i))
            assert.fail(`line ${i + 1}: ${l.slice(0, 80)} instead of ${line(i).slice(0, 80)}`);
          i++;
        }
        assert.equal(i, count, `${count} lines of ${bytes} bytes written`);
        // Whole, too: the same text.
        const text = await files.readText('big/state.ndjson');
        assert.equal(Buffer.byteLength(text ?? ''), bytes);
      }));

    test('a write whose chunks fail rejects with that failure', () =>
      using(async (files) => {
        const boom = new Error('the rows failed');
        const big = 'x'.repeat(1024 * 1024);
        await assert.rejects(
          files.write(
            'op/state.ndjson',
            (function* () {
              for (let i = 0; i < Math.ceil(largeBytes / big.length) + 1; i++) yield `${big}\n`;
              throw boom;
            })(),
          ),
          (e) => e === boom || (e as { cause?: unknown }).cause === boom,
        );
        if (capabilities.atomicWrite) {
          assert.equal(await files.readText('op/state.ndjson'), undefined);
          assert.deepEqual(await files.list(), []);
        }
      }));
  });
}
