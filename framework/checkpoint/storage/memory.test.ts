import { storageConformance } from './conformance.ts';
import { MemoryCheckpointStorage } from './memory.ts';

storageConformance('memory', async ({ retain }) => {
  const storage = new MemoryCheckpointStorage({ retain });
  return {
    storage,
    corrupt: async (path) => storage.corrupt(path),
    truncate: async (path, length) => storage.truncate(path, length),
  };
});
