import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { z } from 'zod';
import type { IsolationTier } from '../context/tenant-context.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { open, seal } from '../secrets/secret-box.ts';
import { inTransaction } from './admin-transaction.ts';
import { parseInput } from './tenant-input.ts';
import type { ActorOption } from './tenant-registry.ts';

/** Where tenants' data lives. Credentials are never returned; see {@link PlacementRegistry.connectionUrl}. */
export interface PlacementRecord {
  readonly id: string;
  readonly name: string;
  readonly tier: IsolationTier;
  readonly schemaName: string | null;
  /** Whether sealed connection settings are stored (else: the main database). */
  readonly hasCredentials: boolean;
  readonly createdAt: Date;
}

/** A placement with its decrypted connection URL (`undefined`: the main database). Internal use only. */
export interface ResolvedPlacement extends PlacementRecord {
  readonly url: string | undefined;
}

/** Input of {@link PlacementRegistry.create}. */
export const CreatePlacementInput = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, _ and -, 1-63 characters'),
    tier: z.enum(['pool', 'schema', 'database']),
    schemaName: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/)
      .optional(),
    /** A `postgres://` URL of the server/database holding the data; sealed before storage. */
    connectionUrl: z
      .string()
      .max(2048)
      .refine((u) => /^postgres(ql)?:\/\//.test(u), 'must be a postgres:// URL')
      .optional(),
  })
  .strict();
export type CreatePlacementInput = z.input<typeof CreatePlacementInput>;

interface PlacementRow {
  id: string;
  name: string;
  tier: IsolationTier;
  schema_name: string | null;
  credentials: Buffer | null;
  created_at: Date;
}

function toRecord(row: PlacementRow): PlacementRecord {
  return Object.freeze({
    id: row.id,
    name: row.name,
    tier: row.tier,
    schemaName: row.schema_name,
    hasCredentials: row.credentials !== null,
    createdAt: row.created_at,
  });
}

/**
 * Placements: where a tenant's data lives. Connection settings are sealed with
 * AES-256-GCM (key derived from `TENANTRY_SECRET`, the placement id bound as associated
 * data) and never stored or returned in plaintext.
 */
export class PlacementRegistry {
  readonly #pool: Pool;
  readonly #key: Buffer;
  /** Placements never change once created: their decrypted form is kept for routing. */
  readonly #resolved = new Map<string, Promise<ResolvedPlacement>>();
  /** The same, by name (names are unique and never change); a miss is not kept. */
  readonly #byName = new Map<string, Promise<ResolvedPlacement>>();

  /** @internal Built by `Tenantry`. */
  constructor(pool: Pool, key: Buffer) {
    this.#pool = pool;
    this.#key = key;
  }

  /**
   * Registers a placement.
   *
   * @example
   * ```ts
   * await tenantry.placements.create({ name: 'eu-db-1', tier: 'database', connectionUrl: 'postgres://…' });
   * ```
   */
  async create(input: CreatePlacementInput, options: ActorOption = {}): Promise<PlacementRecord> {
    const data = parseInput(CreatePlacementInput, input);
    const id = randomUUID();
    const credentials = data.connectionUrl ? seal(this.#key, JSON.stringify({ url: data.connectionUrl }), id) : null;
    return inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<PlacementRow>(
        `INSERT INTO tenantry.placements (id, name, tier, schema_name, credentials) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO NOTHING RETURNING *`,
        [id, data.name, data.tier, data.schemaName ?? null, credentials],
      );
      const row = rows[0];
      if (!row) throw new TenantryError('INVALID_INPUT', `a placement named ${data.name} exists`);
      await writeAudit(client, {
        actor: options.actor ?? 'system',
        tenantId: null,
        action: 'placement.created',
        details: { name: row.name, tier: row.tier },
      });
      return toRecord(row);
    });
  }

  /** All placements, by name. */
  async list(): Promise<PlacementRecord[]> {
    const { rows } = await this.#pool.query<PlacementRow>('SELECT * FROM tenantry.placements ORDER BY name');
    return rows.map(toRecord);
  }

  /** The placement named `name`; throws `NOT_FOUND`. */
  async get(name: string): Promise<PlacementRecord> {
    const { rows } = await this.#pool.query<PlacementRow>('SELECT * FROM tenantry.placements WHERE name = $1', [name]);
    if (!rows[0]) throw new TenantryError('NOT_FOUND', 'no such placement');
    return toRecord(rows[0]);
  }

  /**
   * A placement by id, with its decrypted connection URL (`undefined`: the main database),
   * cached for routing. Throws `NOT_FOUND`.
   */
  resolve(id: string): Promise<ResolvedPlacement> {
    let found = this.#resolved.get(id);
    if (!found) {
      found = this.#pool
        .query<PlacementRow>('SELECT * FROM tenantry.placements WHERE id = $1', [id])
        .then(({ rows }) => {
          const row = rows[0];
          if (!row) throw new TenantryError('NOT_FOUND', 'no such placement');
          const url = row.credentials
            ? (JSON.parse(open(this.#key, row.credentials, row.id)) as { url: string }).url
            : undefined;
          return Object.freeze({ ...toRecord(row), url });
        });
      found.catch(() => this.#resolved.delete(id));
      this.#resolved.set(id, found);
    }
    return found;
  }

  /** Like {@link resolve}, by name. */
  resolveByName(name: string): Promise<ResolvedPlacement> {
    let found = this.#byName.get(name);
    if (!found) {
      found = this.get(name).then((record) => this.resolve(record.id));
      found.catch(() => this.#byName.delete(name));
      this.#byName.set(name, found);
    }
    return found;
  }

  /** The decrypted connection URL of a placement, or `undefined` for the main database. */
  async connectionUrl(name: string): Promise<string | undefined> {
    const { rows } = await this.#pool.query<PlacementRow>('SELECT * FROM tenantry.placements WHERE name = $1', [name]);
    const row = rows[0];
    if (!row) throw new TenantryError('NOT_FOUND', 'no such placement');
    if (!row.credentials) return undefined;
    return (JSON.parse(open(this.#key, row.credentials, row.id)) as { url: string }).url;
  }
}
