/**
 * Installs ./end-txn-retry.ts (kafkajs retries EndTxn on the coordinator's retriable answers) into the
 * kafkajs that ./kafkajs.ts loaded. Import it for its effect; the Kafka sink does.
 */
import { createRequire } from 'node:module';
import './kafkajs.ts';
import { installEndTxnRetry } from './end-txn-retry.ts';

const require = createRequire(import.meta.url);
installEndTxnRetry(require(require.resolve('kafkajs/src/cluster/index.js')));
