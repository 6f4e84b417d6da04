import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { IdempotencyScope, IdempotencyStore } from '../effects/idempotency-store.ts';
import { TenantryError } from '../errors/catalog.ts';

/** Visible ASCII, as in the IETF Idempotency-Key draft's examples (UUIDs, random strings). */
const KEY = /^[\x21-\x7e]{1,255}$/;
const METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Response headers worth replaying; the rest (rate limit, request id, dates) belong to each response. */
const KEPT_HEADERS = ['content-type', 'location', 'etag'];

const CLAIM = Symbol('tenantry.idempotencyClaim');
type Claimed = FastifyRequest & { [CLAIM]?: { scope: IdempotencyScope; claim: string } };

/** Options of {@link idempotencyPlugin}. */
export interface IdempotencyPluginOptions {
  readonly store: IdempotencyStore;
}

/** The request a key stands for: its path with query, and its body. */
function fingerprintOf(request: FastifyRequest): Buffer {
  return createHash('sha256')
    .update(JSON.stringify([request.url, request.body ?? null]))
    .digest();
}

/**
 * Idempotent writes for tenant routes (`tenantry/fastify`; register it after
 * `tenantryPlugin`). A `POST`, `PUT`, `PATCH` or `DELETE` with an `Idempotency-Key` header,
 * once its tenant is admitted, claims the key for its tenant, method and route: the first
 * request runs and its response (status, body, `Content-Type`/`Location`/`ETag`) is stored;
 * a retry gets the same response with `Idempotency-Replayed: true` and changes nothing. The
 * same key with another request (path, query or body) is `422 IDEMPOTENCY_KEY_REUSED`; while
 * the first is still running, `409 IDEMPOTENCY_KEY_IN_USE`. A 5xx response is not stored:
 * the key is released, and a retry runs again.
 *
 * @example
 * ```ts
 * await app.register(tenantryPlugin, { tenantry, tenants, authenticators });
 * await app.register(idempotencyPlugin, { store: new IdempotencyStore(tenantry.adminPool) });
 * ```
 */
export const idempotencyPlugin = fp(
  async (app: FastifyInstance, options: IdempotencyPluginOptions) => {
    const { store } = options;
    /** Claims the request's key, or answers with the stored response (then `true`). */
    const claim = async (
      request: Claimed,
      reply: FastifyReply,
      tenantId: string,
      header: string | string[],
    ): Promise<boolean> => {
      if (typeof header !== 'string' || !KEY.test(header)) {
        throw new TenantryError('INVALID_INPUT', 'Idempotency-Key is 1 to 255 visible ASCII characters');
      }
      const scope: IdempotencyScope = {
        tenantId,
        key: header,
        method: request.method,
        route: request.routeOptions.url ?? request.url,
      };
      const outcome = await store.claim(scope, fingerprintOf(request));
      if (outcome.kind === 'claimed') {
        request[CLAIM] = { scope, claim: outcome.claim };
        return false;
      }
      const { status, headers, body } = outcome.response;
      reply
        .code(status)
        .headers(headers)
        .header('idempotency-replayed', 'true')
        .send(body ?? undefined);
      return true;
    };

    /** Stores the response of a claimed key before it leaves (or frees the key on a 5xx). */
    const settle = async (request: Claimed, reply: FastifyReply, payload: unknown): Promise<unknown> => {
      const held = request[CLAIM] as NonNullable<Claimed[typeof CLAIM]>;
      request[CLAIM] = undefined;
      const storable = payload === null || payload === undefined || typeof payload === 'string';
      if (reply.statusCode >= 500 || !storable) {
        await store.release(held.scope, held.claim);
        return payload;
      }
      const headers: Record<string, string> = {};
      for (const name of KEPT_HEADERS) {
        const value = reply.getHeader(name);
        if (value !== undefined) headers[name] = String(value);
      }
      // Stored before the response leaves: a retry never finds the key still running
      // after its first answer was sent.
      await store.complete(held.scope, held.claim, {
        status: reply.statusCode,
        headers,
        body: (payload as string | null | undefined) ?? null,
      });
      return payload;
    };

    // Callback hooks: a request without a key (nearly all of them) costs a property read,
    // not a promise per hook.
    app.addHook('preHandler', (request: Claimed, reply, done) => {
      const header = request.headers['idempotency-key'];
      if (header === undefined || !METHODS.has(request.method) || !request.tenant) return done();
      claim(request, reply, request.tenant.id, header).then(
        (answered) => {
          // A replayed response is sent: the handler must not run.
          if (!answered) done();
        },
        (error: Error) => done(error),
      );
    });
    app.addHook('onSend', (request: Claimed, reply, payload, done) => {
      if (!request[CLAIM]) return done(null, payload);
      settle(request, reply, payload).then(
        (kept) => done(null, kept),
        (error: Error) => done(error),
      );
    });
  },
  { name: 'tenantry-idempotency', fastify: '5.x', dependencies: ['tenantry'] },
);
