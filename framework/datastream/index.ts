/**
 * The DataStream API: `new StreamJob(id).source(...).keyBy(...).window(...)...`, the top layer of the
 * framework's public API. It composes the graph model (framework/graph: types, validation, planning)
 * with the libraries built on the public API (framework/windows, joins, dedup); neither the graph nor
 * the libraries import it (the dependency rules of `npm run check` keep it so).
 */
export { isStreamJob, JOB_GRAPH_VERSION, STREAM_JOB_BRAND, StreamJob } from './stream-job.ts';
export {
  BroadcastConnectedStream,
  BroadcastStream,
  ConnectedKeyedStreams,
  ConnectedStreams,
  DataStream,
  KeyedStream,
  type OperatorOptions,
  type StatefulOptions,
  WindowedStream,
} from './streams.ts';
