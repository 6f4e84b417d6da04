import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient, QueryResult } from 'pg';
import { integerOption } from '../config.ts';
import type { TenantStatus } from '../context/tenant-context.ts';
import { isCursorTime } from '../cursor-time.ts';
import { auditStatement, writeAudit } from '../effects/audit.ts';
import { eventStatement, writeEvent } from '../effects/outbox.ts';
import { TenantryError } from '../errors/catalog.ts';
import { OUTBOX_CHANNEL, OUTBOX_NOTIFY_SETTING } from '../migrate/outbox-migration.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';
import { type PipelinedStatement, runPipelined } from '../wire/statement-pipeline.ts';
import { inTransaction } from './admin-transaction.ts';
import { CHANNELS, notifyTenantChanged } from './change-feed.ts';
import type { ChangeNotifier } from './change-notifier.ts';
import { CreateTenantInput, parseInput, UpdateTenantInput } from './tenant-input.ts';
import { type TenantTransition, transitionTenant } from './tenant-lifecycle.ts';
import type { TenantErasure, TenantPlacement, TenantPlacer } from './tenant-placer.ts';
import { type TenantRecord, type TenantRow, toRecord } from './tenant-record.ts';

/** Who made a change; recorded in the audit log. Default `system`. */
export interface ActorOption {
  readonly actor?: string;
}

/** One page of {@link TenantRegistry.list}. */
export interface TenantPage {
  readonly tenants: readonly TenantRecord[];
  /** Pass as `cursor` for the next page; absent on the last one. */
  readonly nextCursor?: string;
}

type CreateData = ReturnType<typeof CreateTenantInput.parse>;

/** A new tenant's row (ON CONFLICT (slug): none when taken), its audit entry and its event. */
function createStatements(
  id: string,
  data: CreateData,
  placed: TenantPlacement,
  options: ActorOption,
): PipelinedStatement[] {
  const actor = options.actor ?? 'system';
  const summary = { slug: data.slug, tier: data.tier, plan: data.plan };
  return [
    {
      text: `INSERT INTO tenantry.tenants
               (id, slug, name, tier, placement_id, schema_name, database_name, data_here,
                plan, max_users, max_storage_mb, statement_timeout_ms, features, settings)
             VALUES ($10, $1, $2, $3, $11, $12, $13, $14, $4, $5, $6, coalesce($7, 30000), $8, $9)
             ON CONFLICT (slug) DO NOTHING
             RETURNING *`,
      values: [
        data.slug,
        data.name,
        data.tier,
        data.plan,
        data.limits.maxUsers ?? null,
        data.limits.maxStorageMb ?? null,
        data.limits.statementTimeoutMs ?? null,
        JSON.stringify(data.features),
        JSON.stringify(data.settings),
        id,
        placed.placementId,
        placed.schemaName,
        placed.databaseName,
        placed.inMainDatabase,
      ],
    },
    auditStatement({ actor, tenantId: id, action: 'tenant.created', details: summary }),
    eventStatement({ tenantId: id, type: 'tenant.created', actor, payload: { tenantId: id, ...summary } }),
  ];
}

/** The inserted tenant of {@link createStatements}' first result. */
function inserted(result: QueryResult | undefined, slug: string): TenantRecord {
  const row = (result as QueryResult<TenantRow> | undefined)?.rows[0];
  if (!row) throw new TenantryError('TENANT_SLUG_TAKEN', slug);
  return toRecord(row);
}

/**
 * The tenant registry and lifecycle, on the control plane. Every change is audited in
 * its own transaction, and creation and status changes write their event in the outbox
 * there too (`tenant.created`, `tenant.suspended`, …; see `tenantry.events`); bad input
 * throws `INVALID_INPUT` and changes nothing.
 */
export class TenantRegistry {
  readonly #pool: Pool;
  readonly #erasure: TenantErasure;
  readonly #placer: TenantPlacer;
  readonly #notifier: ChangeNotifier | undefined;

  /**
   * @internal Built by `Tenantry`; `placer` provisions where a new tenant's rows live,
   * `erasure` removes everything of it (and verifies that) when it is deleted for good;
   * `notifier`, when given, sends a create's notifications after its commit (without it,
   * inside the transaction, which serialises concurrent creates' commits).
   */
  constructor(pool: Pool, placer: TenantPlacer, erasure: TenantErasure, notifier?: ChangeNotifier) {
    this.#pool = pool;
    this.#placer = placer;
    this.#erasure = erasure;
    this.#notifier = notifier;
  }

  /**
   * Provisions a tenant, active, in its tier: shared tables (`pool`, the default), a schema
   * of its own (`schema`: a warm one is claimed when available) or a database of its own
   * (`database`: copied from the placement's template). Either everything is created or
   * nothing is.
   *
   * @example
   * ```ts
   * const acme = await tenantry.tenants.create({ slug: 'acme', name: 'Acme Inc.', plan: 'pro' });
   * const bank = await tenantry.tenants.create({ slug: 'bank', name: 'Bank', tier: 'database' });
   * ```
   */
  async create(input: CreateTenantInput, options: ActorOption = {}): Promise<TenantRecord> {
    const data = parseInput(CreateTenantInput, input);
    // Cheap check first: a taken slug must not cost a database, which is created outside the
    // tenant's transaction. A schema (claimed or created in the transaction) and a pool-tier
    // row are undone with it: the INSERT … ON CONFLICT (slug) is their check.
    if (data.tier === 'database') {
      const taken = await this.#pool.query('SELECT 1 FROM tenantry.tenants WHERE slug = $1', [data.slug]);
      if (taken.rowCount) throw new TenantryError('TENANT_SLUG_TAKEN', data.slug);
    }
    const id = randomUUID();
    const prepared = await this.#placer.prepare({
      id,
      tier: data.tier,
      placement: data.placement,
      statementTimeoutMs: data.limits.statementTimeoutMs ?? 30_000,
    });
    let created: TenantRecord;
    try {
      created = await this.#insert(id, data, prepared, options);
    } catch (error) {
      await this.#placer.abort(prepared).catch(() => {});
      throw error;
    }
    if (this.#notifier) {
      // Other instances' caches may hold a miss for this slug or id; event streams may wait.
      await Promise.all([
        this.#notifier.notify(CHANNELS.tenants, created.id),
        this.#notifier.notify(OUTBOX_CHANNEL, created.id),
      ]);
    }
    return created;
  }

  /**
   * The tenant's row, audit entry and event, committed together. A placement that needs no
   * SQL (the pool tier) makes it one round trip: the statements up to one Sync run as one
   * implicit transaction, committed by it, undone as a whole by any error. Otherwise
   * `BEGIN` with the placement's first statement (claim or create a schema, activate a
   * database), then the rows and `COMMIT` in one more round trip.
   */
  async #insert(id: string, data: CreateData, prepared: unknown, options: ActorOption): Promise<TenantRecord> {
    // With a notifier, no NOTIFY in the transaction (and none from the outbox trigger): they
    // go out after the commit, so concurrent creates commit together.
    const notify = this.#notifier
      ? {
          before: [{ text: `SELECT pg_catalog.set_config('${OUTBOX_NOTIFY_SETTING}', 'after_commit', true)` }],
          after: [],
        }
      : { before: [], after: [{ text: 'SELECT pg_notify($1, $2)', values: [CHANNELS.tenants, id] }] };
    const client = await this.#pool.connect();
    try {
      const atOnce = this.#placer.placeAtOnce?.(prepared);
      if (atOnce) {
        const results = await this.#rows(
          client,
          [...notify.before, ...createStatements(id, data, atOnce, options), ...notify.after],
          data.slug,
        );
        return inserted(results[notify.before.length], data.slug);
      }
      try {
        const placed = await this.#placer.place(client, id, prepared, [{ text: 'BEGIN' }, ...notify.before]);
        const results = await this.#rows(
          client,
          [...createStatements(id, data, placed, options), ...notify.after, { text: 'COMMIT' }],
          data.slug,
        );
        return inserted(results[0], data.slug);
      } catch (error) {
        // Also after a failed COMMIT, where it only warns: nothing is left open either way.
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      }
    } finally {
      client.release();
    }
  }

  /** Runs a create's statements; a taken slug surfaces as `TENANT_SLUG_TAKEN`. */
  async #rows(client: PoolClient, statements: readonly PipelinedStatement[], slug: string): Promise<QueryResult[]> {
    try {
      return await runPipelined(client, statements);
    } catch (error) {
      // A taken slug inserts no tenant, and the references to it then fail (the event's
      // trigger positions it in outbox_heads first: either reference may be the one).
      const constraint = (error as { constraint?: string }).constraint;
      if (constraint === 'outbox_heads_tenant_id_fkey' || constraint === 'outbox_tenant_id_fkey') {
        throw new TenantryError('TENANT_SLUG_TAKEN', slug);
      }
      throw error;
    }
  }

  /** The tenant with this id or slug, or `undefined`. Malformed references are simply not found. */
  async find(idOrSlug: string): Promise<TenantRecord | undefined> {
    if (typeof idOrSlug !== 'string' || idOrSlug.length === 0 || idOrSlug.length > 100) return undefined;
    const column = UUID.test(idOrSlug) ? 'id' : 'slug';
    const { rows } = await this.#pool.query<TenantRow>(`SELECT * FROM tenantry.tenants WHERE ${column} = $1`, [
      idOrSlug.toLowerCase(),
    ]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** Like {@link find}, but throws `TENANT_NOT_FOUND`. */
  async get(idOrSlug: string): Promise<TenantRecord> {
    const tenant = await this.find(idOrSlug);
    if (!tenant) throw new TenantryError('TENANT_NOT_FOUND');
    return tenant;
  }

  /** Where the tenant's rows are (placement and own database), for connection routing. */
  async locate(tenantId: string): Promise<{ placementId: string; database: string | null }> {
    const tenant = await this.get(tenantId);
    return { placementId: tenant.placementId, database: tenant.databaseName };
  }

  /** Tenants in creation order, `limit` (1–500, default 50) at a time. */
  async list(options: { cursor?: string; limit?: number; status?: TenantStatus } = {}): Promise<TenantPage> {
    const limit = integerOption(options.limit, 50, 1, 500, 'limit', 'INVALID_INPUT');
    let after: { at: string; id: string } | undefined;
    if (options.cursor !== undefined) {
      try {
        after = JSON.parse(Buffer.from(options.cursor, 'base64url').toString('utf8'));
        if (!isCursorTime(after?.at) || typeof after?.id !== 'string' || !UUID.test(after.id)) {
          throw new Error('shape');
        }
      } catch {
        throw new TenantryError('INVALID_INPUT', 'cursor is not one this API returned');
      }
    }
    const { rows } = await this.#pool.query<TenantRow & { at: string }>(listQuery(after, options.status, limit + 1));
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    const nextCursor =
      rows.length > limit && last
        ? Buffer.from(JSON.stringify({ at: last.at, id: last.id })).toString('base64url')
        : undefined;
    return { tenants: page.map(toRecord), ...(nextCursor ? { nextCursor } : {}) };
  }

  /** Changes name, plan, limits, features or settings; audited with the fields changed. */
  async update(idOrSlug: string, input: UpdateTenantInput, options: ActorOption = {}): Promise<TenantRecord> {
    const data = parseInput(UpdateTenantInput, input);
    if (Object.keys(data).length === 0) throw new TenantryError('INVALID_INPUT', 'nothing to update');
    const current = await this.get(idOrSlug);
    const updated = await inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<TenantRow>(
        `UPDATE tenantry.tenants SET
           name = coalesce($2, name), plan = coalesce($3, plan),
           max_users = CASE WHEN $4 THEN $5 ELSE max_users END,
           max_storage_mb = CASE WHEN $6 THEN $7 ELSE max_storage_mb END,
           statement_timeout_ms = coalesce($8, statement_timeout_ms),
           features = coalesce($9, features), settings = coalesce($10, settings),
           updated_at = now()
         WHERE id = $1 RETURNING *`,
        [
          current.id,
          data.name ?? null,
          data.plan ?? null,
          data.limits !== undefined && 'maxUsers' in data.limits,
          data.limits?.maxUsers ?? null,
          data.limits !== undefined && 'maxStorageMb' in data.limits,
          data.limits?.maxStorageMb ?? null,
          data.limits?.statementTimeoutMs ?? null,
          data.features ? JSON.stringify(data.features) : null,
          data.settings ? JSON.stringify(data.settings) : null,
        ],
      );
      const row = rows[0];
      if (!row) throw new TenantryError('TENANT_NOT_FOUND');
      await notifyTenantChanged(client, row.id);
      await writeAudit(client, {
        actor: options.actor ?? 'system',
        tenantId: row.id,
        action: 'tenant.updated',
        details: { fields: Object.keys(data) },
      });
      return toRecord(row);
    });
    await this.#placer.changed?.(updated);
    return updated;
  }

  /**
   * Gives a tenant another slug; audited (`tenant.renamed`). `TENANT_SLUG_TAKEN` when the
   * slug is in use. Clients that name the tenant by slug follow; its id does not change.
   *
   * @example
   * ```ts
   * await tenantry.tenants.rename('acme', 'acme-corp', { actor: 'admin:ops' });
   * ```
   */
  async rename(idOrSlug: string, slug: string, options: ActorOption = {}): Promise<TenantRecord> {
    const { slug: to } = parseInput(CreateTenantInput.pick({ slug: true }), { slug });
    const current = await this.get(idOrSlug);
    return inTransaction(this.#pool, (client) => renameIn(client, current, to, options.actor ?? 'system'));
  }

  /**
   * Puts `replacement` in the place of `current`, in one transaction: `current` is
   * soft-deleted and gets the slug `replaced-<its id>`, `replacement` takes its slug. Then
   * erase `current` (`delete(…, { hard: true })`). What an import with `replace` runs once
   * the new tenant is verified; if this fails, nothing changed.
   *
   * @example
   * ```ts
   * const restored = await tenantry.tenants.replace('acme', imported.id);
   * await tenantry.tenants.delete(old.id, { hard: true });
   * ```
   */
  async replace(current: string, replacement: string, options: ActorOption = {}): Promise<TenantRecord> {
    const [old, next] = [await this.get(current), await this.get(replacement)];
    const actor = options.actor ?? 'system';
    const replaced = await inTransaction(this.#pool, async (client) => {
      if (old.status !== 'deleted') {
        const { rowCount } = await client.query(
          `UPDATE tenantry.tenants SET status = 'deleted', status_changed_at = now(), updated_at = now()
            WHERE id = $1 AND status = $2`,
          [old.id, old.status],
        );
        if (rowCount === 0) throw new TenantryError('INVALID_TENANT_STATE', 'the tenant changed meanwhile');
        await writeAudit(client, {
          actor,
          tenantId: old.id,
          action: 'tenant.deleted',
          details: { from: old.status, to: 'deleted', replacedBy: next.id },
        });
        await writeEvent(client, {
          tenantId: old.id,
          type: 'tenant.deleted',
          actor,
          payload: { tenantId: old.id, slug: old.slug, from: old.status, to: 'deleted' },
        });
      }
      await renameIn(client, old, `replaced-${old.id.replaceAll('-', '').slice(0, 16)}`, actor);
      return renameIn(client, next, old.slug, actor);
    });
    await this.#placer.changed?.(replaced);
    return replaced;
  }

  async #transition(idOrSlug: string, kind: TenantTransition, options: ActorOption): Promise<TenantRecord> {
    const current = await this.get(idOrSlug);
    const changed = await transitionTenant(this.#pool, current, kind, options.actor ?? 'system');
    await this.#placer.changed?.(changed);
    return changed;
  }

  /** Suspends an active tenant: its tenant work is refused with `TENANT_SUSPENDED` until resumed. */
  suspend(idOrSlug: string, options: ActorOption = {}): Promise<TenantRecord> {
    return this.#transition(idOrSlug, 'suspend', options);
  }

  /** Resumes a suspended tenant. */
  resume(idOrSlug: string, options: ActorOption = {}): Promise<TenantRecord> {
    return this.#transition(idOrSlug, 'resume', options);
  }

  /** Starts offboarding: tenant work is refused; maintenance (export, purge) still runs. */
  offboard(idOrSlug: string, options: ActorOption = {}): Promise<TenantRecord> {
    return this.#transition(idOrSlug, 'offboard', options);
  }

  /**
   * Soft delete: status `deleted`, rows kept. With `hard: true`, then erases it: every row
   * of the tenant in every tier, its keys, memberships, sessions and the accounts of users
   * who belong to no other tenant, then verifies that nothing is left and records the
   * verification in the audit log (see `tenantry.eraseTenant()` for the report).
   */
  async delete(idOrSlug: string, options: ActorOption & { hard?: boolean } = {}): Promise<TenantRecord> {
    let tenant = await this.get(idOrSlug);
    if (tenant.status !== 'deleted') tenant = await this.#transition(tenant.id, 'delete', options);
    if (options.hard) await this.#erasure.erase(tenant, options.actor ?? 'system');
    return tenant;
  }
}

/**
 * One keyset page of {@link TenantRegistry.list}: only the conditions in use, each a range
 * of an index (`(created_at, id)`, or `(status, created_at, id)` with a status), so a page
 * deep in a large fleet reads its `limit` rows and no more. The cursor's time is UTC
 * without a zone (`at`), turned back into the column's type on the parameter side: an
 * expression on the column would hide it from the index.
 */
export function listQuery(
  after: { at: string; id: string } | undefined,
  status: TenantStatus | undefined,
  limit: number,
): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const where: string[] = [];
  if (status !== undefined) {
    values.push(status);
    where.push(`status = $${values.length}`);
  }
  if (after) {
    values.push(after.at, after.id);
    where.push(`(created_at, id) > ($${values.length - 1}::timestamp AT TIME ZONE 'UTC', $${values.length}::uuid)`);
  }
  values.push(limit);
  return {
    text: `SELECT *, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at FROM tenantry.tenants
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id LIMIT $${values.length}`,
    values,
  };
}

/** Renames in the caller's transaction; audited with the old and new slug. */
async function renameIn(client: PoolClient, tenant: TenantRecord, slug: string, actor: string): Promise<TenantRecord> {
  const { rows } = await client
    .query<TenantRow>(
      `UPDATE tenantry.tenants SET slug = $2, updated_at = now() WHERE id = $1
        AND NOT EXISTS (SELECT 1 FROM tenantry.tenants o WHERE o.slug = $2 AND o.id <> $1) RETURNING *`,
      [tenant.id, slug],
    )
    .catch((error: { code?: string }) => {
      if (error.code === '23505') throw new TenantryError('TENANT_SLUG_TAKEN', slug);
      throw error;
    });
  const row = rows[0];
  if (!row) throw new TenantryError('TENANT_SLUG_TAKEN', slug);
  await notifyTenantChanged(client, row.id);
  await writeAudit(client, {
    actor,
    tenantId: row.id,
    action: 'tenant.renamed',
    details: { from: tenant.slug, to: slug },
  });
  return toRecord(row);
}
