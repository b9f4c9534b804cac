/**
 * Puts the project's `read_committed` filter (./read-committed.ts) in place of kafkajs 2.2.4's
 * `src/consumer/filterAbortedMessages.js`, which lets records of aborted transactions through (see
 * read-committed.ts for the defect). kafkajs's `Batch` takes that function with `require` when it is
 * first loaded, so this module must run before kafkajs is loaded: ./kafkajs.ts imports it first, and
 * checks afterwards, on a case the upstream filter gets wrong, that the filter in use is ours.
 *
 * Import it for its effect only; nothing else in the project may import kafkajs (dependency rule).
 */
import { createRequire } from 'node:module';
import { filterAbortedTransactions } from './read-committed.ts';

const require = createRequire(import.meta.url);
const filterPath = require.resolve('kafkajs/src/consumer/filterAbortedMessages.js');
const batchPath = require.resolve('kafkajs/src/consumer/batch.js');

/** kafkajs's call: `filterAbortedMessages({ messages, abortedTransactions })`. */
function kstateFilterAbortedMessages(o: {
  messages: Parameters<typeof filterAbortedTransactions>[0];
  abortedTransactions: Parameters<typeof filterAbortedTransactions>[1];
}): ReturnType<typeof filterAbortedTransactions> {
  return filterAbortedTransactions(o.messages, o.abortedTransactions);
}

const installed = Symbol.for('kstate.readCommittedFilter');
const cache = require.cache as Record<string, { exports: unknown } | undefined>;
if (cache[batchPath] === undefined) {
  require(filterPath);
  const entry = cache[filterPath];
  if (entry !== undefined) {
    Object.defineProperty(kstateFilterAbortedMessages, installed, { value: true });
    entry.exports = kstateFilterAbortedMessages;
  }
}
