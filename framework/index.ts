/**
 * The public entry point of the framework. Connectors and examples import from here (or from
 * `framework/testing/index.ts`), never from deep paths.
 */
// First: on an unsupported Node, importing kstate fails here with one clear sentence (node/support.js).
import './node/require.js';

export type { Clock } from './api/clock.ts';
export { systemClock } from './api/clock.ts';
export type { CheckpointConfig, RestartStrategy, RuntimeConfig } from './api/config.ts';
export {
  aggregatingState,
  listState,
  mapState,
  reducingState,
  timeIndexedState,
  valueState,
} from './api/descriptors.ts';
export {
  type ErrorCode,
  ErrorCodes,
  type FailureClass,
  failureClass,
  isStreamError,
  PERMANENT_CODES,
  StreamError,
} from './api/errors.ts';
export type * from './api/functions.ts';
export { outputTag } from './api/functions.ts';
export type { Key, KeyId, Partitioner, PartitionerFunction, PartitionerName } from './api/keys.ts';
export type { Serializer } from './api/serializer.ts';
export type {
  CheckpointCommitter,
  CheckpointPointer,
  CommitRequest,
  Sink,
  SinkInfo,
  SinkWriter,
} from './api/sink.ts';
export type {
  PollingSourceReader,
  PullSourceReader,
  RecordErrorPolicy,
  RecordRejection,
  RecordVerdict,
  Source,
  SourceBatch,
  SourceReader,
  SourceRecord,
  WatermarkStrategy,
} from './api/source.ts';
export type * from './api/state.ts';
export * from './cep/index.ts';
export {
  BaseCheckpointStorage,
  type CreateOutcome,
  type RootPurpose,
  type StorageOptions,
} from './checkpoint/storage/base.ts';
export { FilesystemCheckpointStorage } from './checkpoint/storage/filesystem.ts';
export { checkSavepointName } from './checkpoint/storage/layout.ts';
export { MemoryCheckpointStorage } from './checkpoint/storage/memory.ts';
export type { CheckpointMetadata, CheckpointStorage, FileRef, Scope } from './checkpoint/storage/storage.ts';
export {
  BroadcastConnectedStream,
  BroadcastStream,
  ConnectedKeyedStreams,
  ConnectedStreams,
  DataStream,
  isStreamJob,
  JOB_GRAPH_VERSION,
  KeyedStream,
  STREAM_JOB_BRAND,
  StreamJob,
  WindowedStream,
} from './datastream/index.ts';
export { Deduplicate, type DedupOptions } from './dedup/dedup.ts';
export type { GraphEdge, GraphNode, JobGraph } from './graph/types.ts';
export * from './joins/index.ts';
export * from './ml/index.ts';
export type { FaultInjector, FaultPoint } from './runtime/faults.ts';
export {
  type CheckpointReport,
  inspectCheckpoint,
  keyedStateJson,
  keyedStateValue,
} from './runtime/inspect.ts';
export {
  type AssignmentSource,
  type JobListener,
  type JobOptions,
  type RunningJob,
  runJob,
  type StopOptions,
  type StopReport,
} from './runtime/job.ts';
export type { CheckpointStats } from './runtime/task.ts';
export { DirectorySavepointFiles, type SavepointFiles, textLines } from './savepoint/files.ts';
export { fromJsonValue, toJsonValue } from './savepoint/json-values.ts';
export type { NdjsonManifest } from './savepoint/manifest.ts';
export {
  estimateRescale,
  exportSavepointToDirectory,
  importSavepointFromDirectory,
  type RescaleReport,
  type RescaleSavepointOptions,
  rescaleSavepoint,
  type SavepointSizeEstimate,
} from './savepoint/operations.ts';
export type { SavepointWriteProgress } from './savepoint/publish.ts';
export type { PositionQuery } from './savepoint/rescale.ts';
export { type JobSavepoint, readJobSavepoint } from './savepoint/savepoint-io.ts';
export * from './service/index.ts';
export type { KeyedStateBackend } from './state/backend.ts';
export { HeapKeyedStateBackend } from './state/backends/heap/heap.ts';
export { LevelKeyedStateBackend, levelBackend } from './state/backends/level/level.ts';
export { keyBytes, keyGroupOf, keyId, murmur2 } from './state/keys.ts';
export {
  builtInPartitions,
  checkPartitioner,
  crc32,
  fnv1a,
  PARTITIONER_NAMES,
  partitionerFromName,
  partitionerFunction,
  partitionerName,
} from './state/partitioners.ts';
export { jsonSerializer, msgpackSerializer, userSerializer } from './state/serializers.ts';
export * from './windows/index.ts';
