/** Running a job as a service: metrics, health endpoints. */
export * from '../metrics/index.ts';
export type { ServiceRoute } from './http.ts';
export {
  type ReadyVerdict,
  type ServiceHttp,
  type ServiceHttpOptions,
  startServiceHttp,
} from './http.ts';
export {
  type KeyRangeQuery,
  localRouting,
  type PartitionOwner,
  type QueryAnswer,
  type QueryRouting,
  queryRoutes,
  StateQueries,
  type StateQueriesOptions,
  type StateQuery,
  StateQueryRegistry,
} from './queries.ts';
