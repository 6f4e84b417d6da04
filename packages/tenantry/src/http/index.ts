/**
 * `tenantry/server`: the reference HTTP server and the problem-details helpers.
 *
 * @packageDocumentation
 */
export { PROBLEM_JSON, type ProblemDetails, toProblem } from './problem.ts';
export { createServer, type ServerOptions } from './server.ts';
