/** The public testing kit: sources, sinks, clock, operator harness, conformance suites. */
import '../node/require.js';

export {
  bytesOf,
  checkpointMeta,
  type MakeStorage,
  rejectsWith,
  type StorageUnderTest,
  storageConformance,
} from '../checkpoint/storage/conformance.ts';
export { ManualClock } from './clock.ts';
export { keyedStateBackendConformance } from './conformance/keyed-state-backend.ts';
export {
  type MakeSavepointFiles,
  type SavepointFilesCapabilities,
  savepointFilesConformance,
} from './conformance/savepoint-files.ts';
export { type FaultPlan, plannedFaults } from './faults.ts';
export { KeyedOperatorHarness } from './harness.ts';
export { NO_OPENSSL, selfSignedFiles } from './self-signed.ts';
export { CollectedOutput, CollectingSink } from './sinks.ts';
export { SlowStorage } from './slow-storage.ts';
export { TestSource } from './sources.ts';
