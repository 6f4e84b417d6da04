/**
 * `tenantry/server`: the reference HTTP server, its authenticators and the
 * problem-details helpers.
 *
 * @packageDocumentation
 */
export type { Authenticator } from '../auth/authenticator.ts';
export { accessTokenAuthenticator, apiKeyAuthenticator } from '../auth/authenticators.ts';
export { PROBLEM_JSON, type ProblemDetails, problemOf, toProblem } from './problem.ts';
export { createServer, type ServerOptions } from './server.ts';
