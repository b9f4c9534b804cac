/** Running a job as a service: metrics, health endpoints. */
export * from '../metrics/index.ts';
export type { AdminAccess } from './admin-auth.ts';
export type { ServiceAnswer, ServiceRoute } from './http.ts';
export {
  type ReadyVerdict,
  type ServiceHttp,
  type ServiceHttpOptions,
  startServiceHttp,
} from './http.ts';
export { StateQueries, type StateQueriesOptions } from './queries.ts';
export {
  type KeyRangeQuery,
  type QueryAnswer,
  type QueryAnswerer,
  queryRoutes,
  type StateQuery,
} from './query-http.ts';
export { StateQueryRegistry } from './query-registry.ts';
export { localRouting, type PartitionOwner, type QueryRouting } from './query-routing.ts';
