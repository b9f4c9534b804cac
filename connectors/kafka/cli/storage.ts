/**
 * The service's checkpoint storage, from its configuration: a directory path is a
 * FilesystemCheckpointStorage, `s3://bucket/prefix` an S3CheckpointStorage (docs/checkpoint-storage.md).
 * Every command that reads or writes checkpoints opens storage here, so `kstate run`, `checkpoints`,
 * `inspect` and `savepoint` see the same place. Savepoint exports (`--out`, `--from`) open their
 * directory or s3:// prefix here too, with the same S3 client settings (endpoint, region, path style,
 * concurrency, part size; credentials always from the AWS SDK's default chain).
 */
import {
  type BaseCheckpointStorage,
  DirectorySavepointFiles,
  FilesystemCheckpointStorage,
  type SavepointFiles,
} from '../../../framework/index.ts';
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

/** How the offline commands' S3 errors end (they commit no checkpoint, unlike a running job). */
const OFFLINE_OUTCOME =
  "The job's committed checkpoints are not affected; run the command again once the store answers.";
const FILES_OUTCOME: Readonly<Record<string, string>> = {
  '--out': 'The export is incomplete (savepoint.json is written last): export again into an unused prefix.',
  '--from': 'The import wrote nothing; run it again once the store answers.',
};

/** True for `s3://...` (any case of the scheme). */
export function isObjectStore(location: string): boolean {
  return /^s3:\/\//i.test(location.trim());
}

type S3Settings = Pick<
  ServiceConfig,
  's3Endpoint' | 's3Region' | 's3ForcePathStyle' | 's3Concurrency' | 's3PartSizeMb'
>;

/** The S3 client options of the configuration, shared by checkpoint storage and savepoint exports. */
function s3Options(config: S3Settings) {
  return {
    ...(config.s3Endpoint === undefined ? {} : { endpoint: config.s3Endpoint }),
    ...(config.s3Region === undefined ? {} : { region: config.s3Region }),
    ...(config.s3ForcePathStyle === undefined ? {} : { forcePathStyle: config.s3ForcePathStyle }),
    concurrency: config.s3Concurrency,
    partSizeBytes: config.s3PartSizeMb * 1024 * 1024,
  };
}

export async function openCheckpointStorage(
  config: ServiceConfig,
  o: OpenStorageOptions,
): Promise<ServiceStorage> {
  if (!isObjectStore(config.checkpointStorage)) {
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
    ...s3Options(config),
    ...(o.purpose === 'read' ? { errorOutcome: OFFLINE_OUTCOME } : {}),
  });
}

/**
 * Where `kstate savepoint export --out` writes and `import --from` reads: a directory, or an
 * `s3://bucket/prefix` (written as objects of the same names). `setting` names the option in messages
 * (a malformed address is CONFIG_INVALID naming it; a missing bucket says to fix it).
 */
export async function openSavepointFiles(
  location: string,
  config: S3Settings,
  setting: string,
): Promise<SavepointFiles> {
  if (!isObjectStore(location)) return new DirectorySavepointFiles(location);
  const { S3SavepointFiles } = await import('../../s3/index.ts');
  return S3SavepointFiles.fromUri(location, {
    ...s3Options(config),
    setting,
    errorOutcome: FILES_OUTCOME[setting] ?? OFFLINE_OUTCOME,
  });
}
