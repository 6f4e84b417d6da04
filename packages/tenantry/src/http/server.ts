import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { ERRORS } from '../errors/catalog.ts';
import type { Tenantry } from '../tenantry.ts';
import { PROBLEM_JSON, toProblem } from './problem.ts';

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** Log as JSON with pino (default true); `false` silences request logs (tests). */
  logger?: boolean;
  /** Largest accepted request body, bytes (default 1 MiB). */
  bodyLimit?: number;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The reference server: `/health` (the process is up) and `/health/ready` (PostgreSQL
 * reachable). Errors are RFC 9457 problem details with a stable `code` and the request
 * id; an `X-Request-ID` sent by the client is kept when well-formed and echoed back.
 *
 * @example
 * ```ts
 * const app = await createServer(tenantry);
 * await app.listen({ port: 3000, host: '127.0.0.1' });
 * ```
 */
export async function createServer(tenantry: Tenantry, options: ServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger:
      options.logger === false
        ? false
        : { level: 'info', redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]'] },
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    genReqId: (req) => {
      const sent = req.headers['x-request-id'];
      return typeof sent === 'string' && REQUEST_ID.test(sent) ? sent : randomUUID();
    },
    requestIdHeader: false,
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  app.setErrorHandler((error, req, reply) => {
    const problem = toProblem(error, req.id);
    if (problem.status >= 500) req.log.error({ err: error }, 'request failed');
    void reply.code(problem.status).type(PROBLEM_JSON).send(problem);
  });

  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .type(PROBLEM_JSON)
      .send({
        type: 'https://tenantry.dev/errors/NOT_FOUND',
        title: ERRORS.NOT_FOUND.message,
        status: 404,
        code: 'NOT_FOUND',
        detail: `No route for ${req.method} ${req.url.split('?')[0]}`,
        requestId: req.id,
      });
  });

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/health/ready', async (req, reply) => {
    const { database } = await tenantry.health();
    if (database) return { status: 'ready', checks: { database: 'up' } };
    return reply
      .code(503)
      .header('retry-after', '5')
      .type(PROBLEM_JSON)
      .send({
        type: 'https://tenantry.dev/errors/NOT_READY',
        title: ERRORS.NOT_READY.message,
        status: 503,
        code: 'NOT_READY',
        detail: 'PostgreSQL is unreachable',
        checks: { database: 'down' },
        requestId: req.id,
      });
  });

  return app;
}
