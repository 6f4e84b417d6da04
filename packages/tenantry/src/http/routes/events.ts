import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { requireActive } from '../../admit/admission.ts';
import { type Authenticator, authenticate } from '../../auth/authenticator.ts';
import { type Principal, requirePermission } from '../../auth/permissions.ts';
import { CHANNELS, type ChangeFeed } from '../../control/change-feed.ts';
import type { TenantRecord } from '../../control/tenant-record.ts';
import type { TenantRegistry } from '../../control/tenant-registry.ts';
import { EVENT_TYPE } from '../../effects/outbox.ts';
import { CLOSE, type HubConnection, type SocketHub } from '../../effects/socket-hub.ts';
import { type ErrorCode, isTenantryError, TenantryError } from '../../errors/catalog.ts';
import { presentedCredential } from '../../identify/credential.ts';
import { identifyTenant } from '../../identify/identify-tenant.ts';
import type { TenantCache } from '../../identify/tenant-cache.ts';
import { claimedTenant, type TenantClaim } from '../../identify/tenant-claim.ts';
import { API_KEYS_CHANNEL } from '../../migrate/api-keys-migration.ts';
import { problems } from '../schemas.ts';

/** Options of {@link eventRoutes}. */
export interface EventRoutesOptions {
  readonly hub: SocketHub;
  readonly authenticators: readonly Authenticator[];
  readonly tenants: TenantCache;
  readonly registry: TenantRegistry;
  readonly feed: ChangeFeed;
  readonly claims?: readonly TenantClaim[] | undefined;
  readonly subdomainBase?: string | undefined;
  /** How long a socket may stay unauthenticated, waiting for its `auth` message (default 5000 ms). */
  readonly authTimeoutMs?: number | undefined;
  /** Announced to clients in the `ready` message. */
  readonly heartbeatMs: number;
}

/** An authorized caller of `GET /v1/events`. */
interface Session {
  readonly principal: Principal;
  readonly tenant: TenantRecord;
  readonly credential: string;
  readonly expiresAt: number | undefined;
}

const SESSION = Symbol('tenantry.events.session');
type WithSession = FastifyRequest & { [SESSION]?: Session };

/** The close code that goes with an error of the catalog. */
function closeCodeOf(code: ErrorCode | undefined): number {
  switch (code) {
    case 'UNAUTHORIZED':
      return CLOSE.unauthorized;
    case 'FORBIDDEN':
      return CLOSE.forbidden;
    case 'TENANT_SUSPENDED':
    case 'TENANT_NOT_ACTIVE':
    case 'TENANT_NOT_FOUND':
      return CLOSE.tenantNotActive;
    case 'SOCKET_AUTH_TIMEOUT':
      return CLOSE.authTimeout;
    case 'SOCKET_BAD_MESSAGE':
      return CLOSE.badMessage;
    default:
      return CLOSE.internalError;
  }
}

/** An access token's `exp` in ms (it was verified already; only read here). */
function tokenExpiry(principal: Principal, credential: string): number | undefined {
  if (principal.kind !== 'user') return undefined;
  try {
    const payload = JSON.parse(Buffer.from(credential.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

const Query = z.object({
  /** Comma-separated event types to receive (default: all). */
  types: z
    .string()
    .max(2000)
    .refine((v) => v.split(',').every((t) => EVENT_TYPE.test(t)), 'comma-separated event types (resource.verb)')
    .optional(),
});

/**
 * `GET /v1/events`: the tenant's committed events over a WebSocket (see docs/events.md,
 * "WebSockets"). The upgrade authenticates with `Authorization: Bearer` (API key or access
 * token with `events:read`); without a credential the socket opens and its first message
 * must be `{"type":"auth","token":…}` within `authTimeoutMs`. Either way the connection is
 * then bound to the credential's tenant in the {@link SocketHub}. A revoked key, a key or
 * user that lost `events:read`, and a tenant no longer active close the sockets concerned
 * as soon as the change feed reports the change.
 *
 * `createServer` registers it; an application with its own Fastify registers
 * `@fastify/websocket` first, then this plugin with its hub and change feed.
 *
 * @example
 * ```ts
 * await app.register(websocket);
 * const stream = new TenantEventStream({ pool: tenantry.adminPool, feed });
 * await stream.start();
 * await app.register(eventRoutes, {
 *   hub: new SocketHub(stream), authenticators, tenants, registry: tenantry.tenants, feed, heartbeatMs: 30_000,
 * });
 * ```
 */
export async function eventRoutes(app: FastifyInstance, opts: EventRoutesOptions): Promise<void> {
  const { hub, feed } = opts;
  const authTimeoutMs = opts.authTimeoutMs ?? 5000;

  /** Steps 1–3 for a socket; throws the coded error that refuses it. */
  async function authorize(credential: string | undefined, req: FastifyRequest): Promise<Session> {
    const principal = await authenticate(credential, opts.authenticators);
    const claim = claimedTenant(req, opts.claims ?? ['header'], opts.subdomainBase);
    const tenant = await identifyTenant(principal, claim, opts.tenants);
    requirePermission(principal, 'events:read');
    requireActive(tenant.status);
    return {
      principal,
      tenant,
      credential: credential as string,
      expiresAt: tokenExpiry(principal, credential as string),
    };
  }

  /** Whether a bound connection may stay: its credential still valid and allowed, its tenant active. */
  async function recheck(connection: HubConnection, fresh: boolean): Promise<number | undefined> {
    const principal = await authenticate(connection.credential, opts.authenticators).catch(() => undefined);
    if (!principal || principal.tenantId !== connection.tenantId) return CLOSE.unauthorized;
    if (!principal.permissions.has('events:read')) return CLOSE.forbidden;
    const tenant = fresh ? await opts.registry.find(connection.tenantId) : await opts.tenants.get(connection.tenantId);
    return tenant?.status === 'active' ? undefined : CLOSE.tenantNotActive;
  }
  hub.setRecheck((connection) => recheck(connection, false));

  // Revocations and tenant changes, from any instance, as soon as they commit. The API key
  // store and the tenant cache listen on the same feed and dropped their entries already.
  const offKeys = feed.on(API_KEYS_CHANNEL, (keyId) => {
    if (keyId === undefined) void hub.recheck();
    else
      void hub.recheckWhere(
        (c) => c.kind === 'api-key' && c.subject === keyId,
        (c) => recheck(c, true),
      );
  });
  const offTenants = feed.on(CHANNELS.tenants, (tenantId) => {
    if (tenantId === undefined) void hub.recheck();
    else if (hub.tenantIds().includes(tenantId)) {
      void opts.registry.find(tenantId).then(
        (tenant) => {
          if (tenant?.status !== 'active') hub.closeTenant(tenantId);
        },
        () => {},
      );
    }
  });
  await feed.start();
  app.addHook('onClose', async () => {
    offKeys();
    offTenants();
    hub.close();
  });

  async function bind(socket: WebSocket, session: Session, types: ReadonlySet<string> | undefined): Promise<void> {
    const bound = await hub.add({
      socket,
      tenantId: session.tenant.id,
      kind: session.principal.kind,
      subject: session.principal.subject,
      credential: session.credential,
      expiresAt: session.expiresAt,
      types,
    });
    if (!bound) return;
    socket.send(JSON.stringify({ type: 'ready', tenantId: session.tenant.id, heartbeatMs: opts.heartbeatMs }));
    socket.on('message', (data, isBinary) => {
      const message = isBinary ? undefined : parse(data.toString());
      if (message?.type === 'ping') socket.send('{"type":"pong"}');
      else refuse(socket, new TenantryError('SOCKET_BAD_MESSAGE', 'after auth, only {"type":"ping"} is accepted'));
    });
  }

  const r = app.withTypeProvider<ZodTypeProvider>();
  r.route({
    method: 'GET',
    url: '/v1/events',
    schema: {
      tags: ['events'],
      summary: "The tenant's events, live, over a WebSocket (needs events:read)",
      description:
        'Upgrade to a WebSocket (`Authorization: Bearer <API key or access token>`, or a first message `{"type":"auth","token":"…"}`). ' +
        'The server sends `{"type":"ready"}`, then `{"type":"event","event":{…}}` for each event of the tenant committed from then on. ' +
        'Close codes: 4400 bad message, 4401 unauthenticated or revoked, 4403 forbidden, 4408 auth timeout, 4410 tenant not active, ' +
        '4413 slow consumer, 4429 too many sockets, 1001 server closing. A plain GET is answered 426.',
      querystring: Query,
      security: [{ tenantCredential: [] }],
      response: { 426: problems(426)[426], ...problems(400, 401, 403, 404) },
    },
    preHandler: async (req) => {
      const credential = presentedCredential(req.headers);
      // A browser cannot set headers on a WebSocket: it authenticates with its first message.
      if (!credential && (req as FastifyRequest & { ws?: boolean }).ws) return;
      (req as WithSession)[SESSION] = await authorize(credential, req);
    },
    handler: async () => {
      throw new TenantryError('UPGRADE_REQUIRED');
    },
    wsHandler: (socket, req) => {
      const types = req.query.types ? new Set(req.query.types.split(',')) : undefined;
      const session = (req as WithSession)[SESSION];
      socket.on('error', () => {});
      if (session) {
        bind(socket, session, types).catch((error: Error) => refuse(socket, error));
        return;
      }
      const timer = setTimeout(() => refuse(socket, new TenantryError('SOCKET_AUTH_TIMEOUT')), authTimeoutMs);
      socket.on('close', () => clearTimeout(timer));
      socket.once('message', (data, isBinary) => {
        clearTimeout(timer);
        const message = isBinary ? undefined : parse(data.toString());
        if (message?.type !== 'auth' || typeof message.token !== 'string' || message.token.length > 4096) {
          refuse(socket, new TenantryError('SOCKET_BAD_MESSAGE', 'the first message is {"type":"auth","token":"…"}'));
          return;
        }
        authorize(message.token, req)
          .then((s) => bind(socket, s, types))
          .catch((error: Error) => refuse(socket, error));
      });
    },
  });
}

function parse(text: string): { type?: unknown; token?: unknown } | undefined {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Tells the client why (a catalog code, nothing more), then closes with the matching code. */
function refuse(socket: WebSocket, error: Error): void {
  const code = isTenantryError(error) ? error.code : undefined;
  const closeCode = code === 'SOCKET_LIMIT' ? CLOSE.tooManySockets : closeCodeOf(code);
  if (socket.readyState === socket.OPEN) {
    const detail = code ? error.message : 'internal error';
    socket.send(JSON.stringify({ type: 'error', code: code ?? 'INTERNAL', detail }));
    socket.close(closeCode, code ?? 'INTERNAL');
  }
}
