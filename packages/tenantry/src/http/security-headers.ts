import helmet, { type FastifyHelmetOptions } from '@fastify/helmet';
import Fastify, { type FastifyInstance } from 'fastify';

async function headersOf(register?: (app: FastifyInstance) => Promise<unknown>): Promise<Record<string, string>> {
  const probe = Fastify({ logger: false });
  if (register) await register(probe);
  probe.get('/', async () => ({}));
  try {
    const response = await probe.inject({ method: 'GET', url: '/' });
    return Object.fromEntries(Object.entries(response.headers).map(([name, value]) => [name, String(value)]));
  } finally {
    await probe.close();
  }
}

/**
 * The response headers helmet sets with `options`, worked out once at start-up: helmet's own
 * defaults stay the source of truth, and each response gets them as one precomputed set
 * instead of running helmet's middleware chain (a dozen calls) per request. Helmet's headers
 * do not depend on the request, so the result is the same.
 *
 * @example
 * ```ts
 * const headers = await securityHeaders({ contentSecurityPolicy: false });
 * app.addHook('onRequest', (req, reply, done) => { reply.headers(headers); done(); });
 * ```
 */
export async function securityHeaders(options: FastifyHelmetOptions): Promise<Readonly<Record<string, string>>> {
  const plain = await headersOf();
  const withHelmet = await headersOf(async (app) => {
    await app.register(helmet, options);
  });
  return Object.freeze(Object.fromEntries(Object.entries(withHelmet).filter(([name]) => !(name in plain))));
}
