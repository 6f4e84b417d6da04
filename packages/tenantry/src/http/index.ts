/**
 * `tenantry/server`: the reference HTTP server, its authenticators and the
 * problem-details helpers.
 *
 * @packageDocumentation
 */
export type { Authenticator } from './authenticator.ts';
export { accessTokenAuthenticator, apiKeyAuthenticator } from './authenticators.ts';
export { PROBLEM_JSON, type ProblemDetails, toProblem } from './problem.ts';
export { createServer, type ServerOptions } from './server.ts';
