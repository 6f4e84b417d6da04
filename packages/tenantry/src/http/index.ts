/**
 * `tenantry/server`: the reference HTTP server, its authenticators and the
 * problem-details helpers.
 *
 * @packageDocumentation
 */
export type { Authenticator } from '../auth/authenticator.ts';
export { accessTokenAuthenticator, apiKeyAuthenticator } from '../auth/authenticators.ts';
export { TenantEventStream, type TenantEventStreamDeps } from '../effects/event-stream.ts';
export {
  CLOSE,
  eventFrame,
  type HubConnection,
  type HubSocket,
  type HubStats,
  SocketHub,
  type SocketHubOptions,
} from '../effects/socket-hub.ts';
export { type DbMetricsOptions, dbMetrics } from './db-metrics.ts';
export { PROBLEM_JSON, type ProblemDetails, problemOf, toProblem } from './problem.ts';
export { dbAdminRoutes } from './routes/db-admin.ts';
export { type EventRoutesOptions, eventRoutes } from './routes/events.ts';
export { createServer, type ServerOptions } from './server.ts';
