/**
 * The service's checkpoint storage, from its configuration: a directory path is a
 * FilesystemCheckpointStorage, `s3://bucket/prefix` an S3CheckpointStorage (docs/checkpoint-storage.md).
 * Every command that reads or writes checkpoints opens storage here, so `kstate run`, `checkpoints`,
 * `inspect` and `savepoint` see the same place.
 */
import { type BaseCheckpointStorage, FilesystemCheckpointStorage } from '../../../framework/index.ts';
import type { ServiceConfig } from './config.ts';

export type ServiceStorage = BaseCheckpointStorage & {
  /** Releases connections (S3); absent for directories. */
  close?(): void;
  /** Probes the store (S3: the bucket exists and the credentials may use it); absent for directories. */
  check?(): Promise<void>;
};

export interface OpenStorageOptions {
  /**
   * 'run': the service writes (a directory is created on first write). 'read': commands that only
   * read (a missing directory is CHECKPOINT_NOT_FOUND, never created).
   */
  readonly purpose: 'run' | 'read';
}

export function isObjectStore(config: Pick<ServiceConfig, 'checkpointStorage'>): boolean {
  return /^s3:\/\//i.test(config.checkpointStorage);
}

export async function openCheckpointStorage(
  config: ServiceConfig,
  o: OpenStorageOptions,
): Promise<ServiceStorage> {
  if (!isObjectStore(config)) {
    return new FilesystemCheckpointStorage({
      directory: config.checkpointStorage,
      retain: config.retainCheckpoints,
      createDirectory: o.purpose === 'run',
    });
  }
  // Loaded only when used: the AWS SDK is large, and directories do not need it.
  const { S3CheckpointStorage } = await import('../../s3/index.ts');
  return S3CheckpointStorage.fromUri(config.checkpointStorage, {
    retain: config.retainCheckpoints,
    ...(config.s3Endpoint === undefined ? {} : { endpoint: config.s3Endpoint }),
    ...(config.s3Region === undefined ? {} : { region: config.s3Region }),
    ...(config.s3ForcePathStyle === undefined ? {} : { forcePathStyle: config.s3ForcePathStyle }),
    concurrency: config.s3Concurrency,
    partSizeBytes: config.s3PartSizeMb * 1024 * 1024,
  });
}
