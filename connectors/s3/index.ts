/** kstate/s3: checkpoint storage in an S3-compatible object store (docs/checkpoint-storage.md). */
import '../../framework/node/require.js';

export { type S3ErrorContext, s3Error } from './errors.ts';
export { S3CheckpointStorage, type S3RequestCounts, type S3StorageOptions } from './s3-storage.ts';
export {
  S3SavepointFiles,
  type S3SavepointFilesCounts,
  type S3SavepointFilesOptions,
} from './savepoint-files.ts';
export { isS3Uri, parseS3Uri, type S3Location } from './uri.ts';
