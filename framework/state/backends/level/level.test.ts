import { keyedStateBackendConformance } from '../../../testing/conformance/keyed-state-backend.ts';
import { temporaryLevelBackend } from './testing.ts';

keyedStateBackendConformance('level', () =>
  temporaryLevelBackend({ cacheEntries: 64, writeBatchEntries: 16 }),
);
