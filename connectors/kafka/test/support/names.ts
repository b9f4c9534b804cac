/**
 * Unique broker-side names for tests: every test gets its own topics, groups and transactional ids,
 * so tests never share broker state (and can run in parallel against one broker or a shared cluster).
 */
import { randomBytes } from 'node:crypto';

const LEGAL = /[^a-zA-Z0-9._-]+/g;

/** `<prefix>-<base36 time>-<8 hex>`; the prefix is reduced to characters legal in topic names. */
export function uniqueName(prefix: string): string {
  const clean =
    prefix
      .replace(LEGAL, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 120) || 'test';
  return `${clean}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export interface TestNames {
  /** The shared unique stem of this test's names. */
  readonly stem: string;
  topic(label?: string): string;
  group(label?: string): string;
  transactionalId(label?: string): string;
}

/** Names for one test: `names('smoke tx').topic('out')` -> `smoke-tx-<time>-<rand>.out`. */
export function names(prefix: string): TestNames {
  const stem = uniqueName(prefix);
  const join = (kind: string, label?: string) =>
    label === undefined ? `${stem}.${kind}` : `${stem}.${kind}.${label}`;
  return {
    stem,
    topic: (label) => join('topic', label),
    group: (label) => join('group', label),
    transactionalId: (label) => join('txn', label),
  };
}
