/**
 * The fraud patterns, as data: `{id, version, pattern}` records in examples/fraud/patterns/*.json,
 * the form the job reads from its broadcast pattern topic (docs/examples.md shows them).
 * `loadPattern` checks a file with the CEP library's validator, so a broken file fails here with
 * every error and its JSON path, not later in the job.
 */
import { readFileSync } from 'node:fs';
import { type PatternJson, type PatternRecord, validatePatternJson } from '../../framework/index.ts';

const DIR = new URL('./patterns/', import.meta.url);

/** Read a pattern record file (relative to examples/fraud/patterns/) without validating its pattern. */
export function readPatternFile(file: string): unknown {
  const text = readFileSync(new URL(file, DIR), 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`examples/fraud/patterns/${file}: not JSON: ${(e as Error).message}`);
  }
}

/** A pattern record from a file, its envelope and its pattern validated; throws listing every error. */
export function loadPattern(file: string): PatternRecord & { readonly pattern: PatternJson } {
  const r = readPatternFile(file) as Partial<PatternRecord>;
  const where = `examples/fraud/patterns/${file}`;
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || !Number.isInteger(r.version)) {
    throw new Error(`${where}: a pattern record is {"id": string, "version": integer, "pattern": {...}}`);
  }
  const v = validatePatternJson(r.pattern);
  if (!v.ok) {
    throw new Error(
      `${where}: invalid pattern: ${v.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`,
    );
  }
  return r as PatternRecord & { pattern: PatternJson };
}

/** The patterns the job starts with. */
export const initialPatterns = () =>
  ['card-testing.json', 'country-hopping.json', 'decline-retries.json'].map(loadPattern);

/** The swap: country-hopping version 2 (a wider window) replaces version 1. */
export const countryHoppingV2 = () => loadPattern('country-hopping.v2.json');

/** A malformed update of card-testing (version 2): the job rejects it and keeps version 1. */
export const malformedCardTesting = () => readPatternFile('rejected/card-testing.v2.json');

/** The longest `within` of the given patterns: planted scenarios keep this far from each other. */
export const maxWithin = (records: readonly { pattern: PatternJson }[]): number =>
  Math.max(...records.map((r) => r.pattern.within));
