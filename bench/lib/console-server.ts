import type { FastifyInstance } from 'fastify';
import { createServer } from '../../packages/tenantry/src/http/server.ts';
import type { Tenantry } from '../../packages/tenantry/src/index.ts';

/** The reference server of a console benchmark, listening, and a signed-in session's cookie. */
export interface ConsoleServer {
  readonly app: FastifyInstance;
  /** `http://127.0.0.1:<port>`. */
  readonly base: string;
  /** `tenantry_console=…`, for the `cookie` header. */
  readonly cookie: string;
}

/**
 * Starts the reference server (no logger, no hourly snapshots) on a free loopback port and
 * signs in to the console with `adminToken`, as an operator's browser would. Close `app`.
 */
export async function startConsoleServer(tenantry: Tenantry<unknown>, adminToken: string): Promise<ConsoleServer> {
  const app = await createServer(tenantry, { logger: false, adminToken, usage: { snapshotIntervalMs: 0 } });
  try {
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const signIn = await fetch(`${base}/console/sign-in`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
      body: `token=${adminToken}`,
    });
    const cookie = signIn.headers.get('set-cookie')?.split(';')[0];
    if (signIn.status !== 303 || !cookie) throw new Error(`sign-in failed: ${signIn.status}`);
    return { app, base, cookie };
  } catch (error) {
    await app.close();
    throw error;
  }
}
