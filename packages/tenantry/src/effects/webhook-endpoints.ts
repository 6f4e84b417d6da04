import type { Pool } from 'pg';
import { z } from 'zod';
import { TenantryError } from '../errors/catalog.ts';
import { open, seal } from '../secrets/secret-box.ts';
import { UUID_PATTERN } from '../uuid.ts';
import { EVENT_TYPE } from './outbox.ts';
import { newWebhookSecret } from './webhook-signature.ts';

/** What a tenant registers: where to, and which event types (`*`: all of them). */
export const CreateWebhookInput = z.object({
  url: z.string().min(1).max(2000),
  eventTypes: z
    .array(z.union([z.literal('*'), z.string().regex(EVENT_TYPE)]))
    .min(1)
    .max(50),
  description: z.string().max(200).optional(),
});
export type CreateWebhookInput = z.infer<typeof CreateWebhookInput>;

/** A registered endpoint, as its tenant sees it (never the secret). */
export interface WebhookEndpoint {
  readonly id: string;
  readonly tenantId: string;
  readonly url: string;
  readonly eventTypes: readonly string[];
  readonly description: string | null;
  readonly createdAt: Date;
}

/** One attempt to deliver one event to one endpoint. */
export interface WebhookDelivery {
  readonly id: string;
  readonly eventId: string;
  readonly eventType: string;
  readonly attempt: number;
  /** The receiver's HTTP status; null when no response came (refused, timed out). */
  readonly status: number | null;
  readonly ok: boolean;
  readonly error: string | null;
  readonly durationMs: number;
  readonly createdAt: Date;
}

/** An event that could not be delivered to an endpoint after every attempt. */
export interface WebhookDeadLetter {
  readonly endpointId: string;
  readonly eventId: string;
  readonly eventType: string;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly deadAt: Date;
}

/** A dead letter taken for a replay: what to send again, and where. */
export interface DeadLetterToReplay {
  readonly endpoint: WebhookEndpoint & { secret: string };
  readonly eventId: string;
  readonly eventType: string;
  /** The exact body sent the first time. */
  readonly body: string;
}

const EVENT_ID = /^\d{1,19}$/;

interface EndpointRow {
  id: string;
  tenant_id: string;
  url: string;
  event_types: string[];
  description: string | null;
  created_at: Date;
  secret?: Buffer;
}

const COLUMNS = 'id, tenant_id, url, event_types, description, created_at';

function endpointOf(r: EndpointRow): WebhookEndpoint {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    url: r.url,
    eventTypes: r.event_types,
    description: r.description,
    createdAt: r.created_at,
  };
}

/**
 * Tenants' webhook endpoints and their delivery history, in the control plane. Every
 * method takes the tenant id and filters by it, so one tenant's id of another's endpoint
 * is `NOT_FOUND`. Secrets are sealed with a key derived from `TENANTRY_SECRET` and bound
 * to the endpoint id; the clear secret is returned once, by {@link create}.
 *
 * @example
 * ```ts
 * const { endpoint, secret } = await tenantry.webhooks.create(tenantId, { url, eventTypes: ['item.created'] });
 * ```
 */
export class WebhookEndpoints {
  readonly #pool: Pool;
  readonly #key: Buffer;

  constructor(pool: Pool, key: Buffer) {
    this.#pool = pool;
    this.#key = key;
  }

  /** Registers an endpoint; the secret is shown here only. The URL is not checked here (see `resolveWebhookTarget`). */
  async create(tenantId: string, input: CreateWebhookInput): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
    const data = CreateWebhookInput.parse(input);
    const secret = newWebhookSecret();
    const { rows } = await this.#pool.query<{ id: string }>('SELECT gen_random_uuid() AS id');
    const id = (rows[0] as { id: string }).id;
    const inserted = await this.#pool.query<EndpointRow>(
      `INSERT INTO tenantry.webhook_endpoints (id, tenant_id, url, event_types, description, secret)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
      [id, tenantId, data.url, [...new Set(data.eventTypes)], data.description ?? null, seal(this.#key, secret, id)],
    );
    return { endpoint: endpointOf(inserted.rows[0] as EndpointRow), secret };
  }

  /** The tenant's endpoints, oldest first. */
  async list(tenantId: string): Promise<WebhookEndpoint[]> {
    const { rows } = await this.#pool.query<EndpointRow>(
      `SELECT ${COLUMNS} FROM tenantry.webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id`,
      [tenantId],
    );
    return rows.map(endpointOf);
  }

  /** Removes one of the tenant's endpoints (and its history); `NOT_FOUND` for any other id. */
  async delete(tenantId: string, id: string): Promise<WebhookEndpoint> {
    if (!UUID_PATTERN.test(id)) throw new TenantryError('NOT_FOUND', 'no such webhook endpoint');
    const { rows } = await this.#pool.query<EndpointRow>(
      `DELETE FROM tenantry.webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING ${COLUMNS}`,
      [tenantId, id],
    );
    if (!rows[0]) throw new TenantryError('NOT_FOUND', 'no such webhook endpoint');
    return endpointOf(rows[0]);
  }

  /** The latest attempts (newest first) to deliver to one of the tenant's endpoints. */
  async deliveries(tenantId: string, id: string, limit = 50): Promise<WebhookDelivery[]> {
    if (!UUID_PATTERN.test(id)) throw new TenantryError('NOT_FOUND', 'no such webhook endpoint');
    const owned = await this.#pool.query('SELECT 1 FROM tenantry.webhook_endpoints WHERE tenant_id = $1 AND id = $2', [
      tenantId,
      id,
    ]);
    if (!owned.rowCount) throw new TenantryError('NOT_FOUND', 'no such webhook endpoint');
    const { rows } = await this.#pool.query<{
      id: string;
      event_id: string;
      event_type: string;
      attempt: number;
      status: number | null;
      ok: boolean;
      error: string | null;
      duration_ms: number;
      created_at: Date;
    }>(
      `SELECT id::text, event_id::text, event_type, attempt, status, ok, error, duration_ms, created_at
         FROM tenantry.webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY id DESC LIMIT $3`,
      [tenantId, id, Math.min(Math.max(Math.trunc(limit), 1), 200)],
    );
    return rows.map((r) => ({
      id: r.id,
      eventId: r.event_id,
      eventType: r.event_type,
      attempt: r.attempt,
      status: r.status,
      ok: r.ok,
      error: r.error,
      durationMs: r.duration_ms,
      createdAt: r.created_at,
    }));
  }

  /** The tenant's endpoints subscribed to `type`, with their secrets opened (for the deliverer). */
  async forEvent(tenantId: string, type: string): Promise<(WebhookEndpoint & { secret: string })[]> {
    const { rows } = await this.#pool.query<EndpointRow & { secret: Buffer }>(
      `SELECT ${COLUMNS}, secret FROM tenantry.webhook_endpoints
        WHERE tenant_id = $1 AND (event_types @> ARRAY[$2] OR event_types @> ARRAY['*'])
        ORDER BY created_at, id`,
      [tenantId, type],
    );
    return rows.map((r) => ({ ...endpointOf(r), secret: open(this.#key, r.secret, r.id) }));
  }

  /** Records one delivery attempt. */
  async record(
    endpoint: { id: string; tenantId: string },
    event: { id: string; type: string },
    attempt: { attempt: number; status: number | null; ok: boolean; error: string | null; durationMs: number },
  ): Promise<void> {
    await this.#pool.query(
      `INSERT INTO tenantry.webhook_deliveries
         (endpoint_id, tenant_id, event_id, event_type, attempt, status, ok, error, duration_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        endpoint.id,
        endpoint.tenantId,
        event.id,
        event.type,
        attempt.attempt,
        attempt.status,
        attempt.ok,
        attempt.error?.slice(0, 2000) ?? null,
        Math.round(attempt.durationMs),
      ],
    );
  }

  /** Throws `NOT_FOUND` unless `id` is one of the tenant's endpoints. */
  async #owned(tenantId: string, id: string): Promise<void> {
    if (!UUID_PATTERN.test(id)) throw new TenantryError('NOT_FOUND', 'no such webhook endpoint');
    const owned = await this.#pool.query('SELECT 1 FROM tenantry.webhook_endpoints WHERE tenant_id = $1 AND id = $2', [
      tenantId,
      id,
    ]);
    if (!owned.rowCount) throw new TenantryError('NOT_FOUND', 'no such webhook endpoint');
  }

  /** Records that `event` could not be delivered to `endpoint` after `attempts` attempts (again, after a failed replay). */
  async deadLetter(
    endpoint: { id: string; tenantId: string },
    event: { id: string; type: string },
    body: string,
    attempts: number,
    error: string | null,
  ): Promise<void> {
    await this.#pool.query(
      `INSERT INTO tenantry.webhook_dead_letters (endpoint_id, event_id, tenant_id, event_type, body, attempts, last_error)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (endpoint_id, event_id) DO UPDATE
         SET attempts = tenantry.webhook_dead_letters.attempts + EXCLUDED.attempts,
             last_error = EXCLUDED.last_error, dead_at = now()`,
      [endpoint.id, event.id, endpoint.tenantId, event.type, body, attempts, error?.slice(0, 2000) ?? null],
    );
  }

  /**
   * The dead letters of one of the tenant's endpoints, newest first; `NOT_FOUND` for
   * another tenant's endpoint.
   *
   * @example
   * ```ts
   * for (const d of await tenantry.webhooks.deadLetters(tenantId, endpointId)) console.log(d.eventId, d.lastError);
   * ```
   */
  async deadLetters(tenantId: string, id: string, limit = 50): Promise<WebhookDeadLetter[]> {
    await this.#owned(tenantId, id);
    const { rows } = await this.#pool.query<{
      endpoint_id: string;
      event_id: string;
      event_type: string;
      attempts: number;
      last_error: string | null;
      dead_at: Date;
    }>(
      `SELECT endpoint_id, event_id::text, event_type, attempts, last_error, dead_at
         FROM tenantry.webhook_dead_letters WHERE tenant_id = $1 AND endpoint_id = $2
        ORDER BY dead_at DESC, event_id DESC LIMIT $3`,
      [tenantId, id, Math.min(Math.max(Math.trunc(limit), 1), 200)],
    );
    return rows.map((r) => ({
      endpointId: r.endpoint_id,
      eventId: r.event_id,
      eventType: r.event_type,
      attempts: r.attempts,
      lastError: r.last_error,
      deadAt: r.dead_at,
    }));
  }

  /**
   * A dead letter of one of the tenant's endpoints, with what a replay needs; `NOT_FOUND`
   * when the endpoint is another tenant's or the event is not dead-lettered there.
   */
  async deadLetterToReplay(tenantId: string, id: string, eventId: string): Promise<DeadLetterToReplay> {
    if (!UUID_PATTERN.test(id) || !EVENT_ID.test(eventId)) throw new TenantryError('NOT_FOUND', 'no such dead letter');
    const { rows } = await this.#pool.query<EndpointRow & { secret: Buffer; event_type: string; body: string }>(
      `SELECT e.id, e.tenant_id, e.url, e.event_types, e.description, e.created_at, e.secret, d.event_type, d.body
         FROM tenantry.webhook_dead_letters d JOIN tenantry.webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.tenant_id = $1 AND e.tenant_id = $1 AND d.endpoint_id = $2 AND d.event_id = $3`,
      [tenantId, id, eventId],
    );
    const row = rows[0];
    if (!row) throw new TenantryError('NOT_FOUND', 'no such dead letter');
    return {
      endpoint: { ...endpointOf(row), secret: open(this.#key, row.secret, row.id) },
      eventId,
      eventType: row.event_type,
      body: row.body,
    };
  }

  /** Removes a dead letter once its replay was delivered. */
  async clearDeadLetter(endpointId: string, eventId: string): Promise<void> {
    await this.#pool.query('DELETE FROM tenantry.webhook_dead_letters WHERE endpoint_id = $1 AND event_id = $2', [
      endpointId,
      eventId,
    ]);
  }
}
