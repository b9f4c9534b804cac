import { keyedStateBackendConformance } from '../../../testing/conformance/keyed-state-backend.ts';
import { HeapKeyedStateBackend } from './heap.ts';

keyedStateBackendConformance('heap', () => new HeapKeyedStateBackend({ materializeChunk: 64 }));
