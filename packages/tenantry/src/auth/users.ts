import type { Pool, PoolClient } from 'pg';
import { z } from 'zod';
import { inTransaction } from '../control/admin-transaction.ts';
import { parseInput } from '../control/tenant-input.ts';
import type { ActorOption } from '../control/tenant-registry.ts';
import { writeAudit } from '../effects/audit.ts';
import { TenantryError } from '../errors/catalog.ts';
import { UUID_PATTERN as UUID } from '../uuid.ts';
import { PasswordHasher, PasswordInput } from './passwords.ts';
import type { Principal } from './permissions.ts';
import { RoleName, rolePermissions, userPrincipal } from './roles.ts';

/** A user as seen from one tenant: the global account and its membership there. Never a password hash. */
export interface UserRecord {
  readonly id: string;
  readonly tenantId: string;
  readonly email: string;
  readonly role: string;
  /** When the user joined this tenant. */
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** Options of {@link UserStore}. */
export interface UserStoreOptions {
  /** Hashes new passwords; share one with `TokenService` (default: argon2id with {@link ARGON2ID_PARAMS}). */
  readonly passwords?: PasswordHasher;
  /**
   * Refuse `create()` with `QUOTA_EXCEEDED` when the tenant's `max_users` limit would be
   * exceeded (default true). Turn off only when an admission layer enforces quotas itself.
   */
  readonly enforceMaxUsers?: boolean;
}

const Id = z.string().regex(UUID, 'must be a UUID');

/** Input of {@link UserStore.create}. */
export const CreateUserInput = z
  .object({
    email: z.string().trim().max(254).pipe(z.email()),
    /** Absent: an invited user, who cannot log in until a password is set. */
    password: PasswordInput.optional(),
    role: RoleName,
  })
  .strict();
export type CreateUserInput = z.input<typeof CreateUserInput>;

const TenantUser = z.object({ tenantId: Id, userId: Id });
const SetRole = z.object({ tenantId: Id, userId: Id, role: RoleName });

interface UserRow {
  id: string;
  tenant_id: string;
  email: string;
  role: string;
  created_at: Date;
  updated_at: Date;
}

/** Column list of every read: naming the columns keeps `password_hash` out of every result. */
const USER_COLUMNS = 'u.id, m.tenant_id, u.email, m.role, m.created_at, m.updated_at';

function toRecord(row: UserRow): UserRecord {
  return Object.freeze({
    id: row.id,
    tenantId: row.tenant_id,
    email: row.email,
    role: row.role,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  });
}

/**
 * Users and their tenant memberships, on the control plane (admin pool). Users are global
 * (one email, one password); a membership gives a user one role in one tenant (built-in,
 * or custom from `tenantry.roles`). Every
 * method is scoped by `tenantId`: a user of another tenant is `NOT_FOUND`, exactly like a
 * user that does not exist. Bad input is `INVALID_INPUT` and writes nothing; each change
 * is audited in its own transaction.
 *
 * @example
 * ```ts
 * const users = new UserStore(tenantry.adminPool);
 * const alice = await users.create(acme.id, { email: 'alice@acme.test', password: 's3cret-pass', role: 'admin' });
 * await users.setRole(acme.id, alice.id, 'viewer', { actor: 'user:42' });
 * ```
 */
export class UserStore {
  readonly #pool: Pool;
  readonly #passwords: PasswordHasher;
  readonly #enforceMaxUsers: boolean;

  constructor(pool: Pool, options: UserStoreOptions = {}) {
    this.#pool = pool;
    this.#passwords = options.passwords ?? new PasswordHasher();
    this.#enforceMaxUsers = options.enforceMaxUsers ?? true;
  }

  /** Throws `INVALID_INPUT` unless the tenant has `role` (built-in or custom); locks a custom role until commit. */
  async #assertRole(client: PoolClient, tenantId: string, role: string): Promise<void> {
    if (!(await rolePermissions(client, tenantId, role, { lock: true }))) {
      throw new TenantryError('INVALID_INPUT', `role: the tenant has no role ${JSON.stringify(role)}`, {
        details: { problems: [{ path: 'role', message: 'unknown role' }] },
      });
    }
  }

  /**
   * Adds a user to a tenant: creates the account when the email is new, or adds a
   * membership to the existing account. The password is only ever set on a new account:
   * an admin of one tenant must not be able to change (or set, for an invited user) the
   * credentials of a person who also belongs to another tenant.
   *
   * Throws `TENANT_NOT_FOUND`, `TENANT_NOT_ACTIVE` (offboarding or deleted),
   * `QUOTA_EXCEEDED` (the tenant's `max_users`), or `INVALID_INPUT` (bad input, unknown
   * role, already a member).
   *
   * @example
   * ```ts
   * await users.create(tenantId, { email: 'bob@acme.test', role: 'member' }); // invited, no password yet
   * ```
   */
  async create(tenantId: string, input: CreateUserInput, options: ActorOption = {}): Promise<UserRecord> {
    const { tenantId: tid } = parseInput(z.object({ tenantId: Id }), { tenantId });
    const data = parseInput(CreateUserInput, input);
    // Hashed before the transaction: ~50 ms of argon2 should not hold the tenant row lock.
    const passwordHash = data.password === undefined ? null : await this.#passwords.hash(data.password);
    return inTransaction(this.#pool, async (client) => {
      // NO KEY UPDATE serializes concurrent creates in one tenant (so the quota count
      // below cannot be raced) without blocking foreign-key checks against the row.
      const { rows: tenants } = await client.query<{ status: string; max_users: number | null }>(
        'SELECT status, max_users FROM tenantry.tenants WHERE id = $1 FOR NO KEY UPDATE',
        [tid],
      );
      const tenant = tenants[0];
      if (!tenant) throw new TenantryError('TENANT_NOT_FOUND');
      if (tenant.status === 'offboarding' || tenant.status === 'deleted') throw new TenantryError('TENANT_NOT_ACTIVE');
      await this.#assertRole(client, tid, data.role);
      if (this.#enforceMaxUsers && tenant.max_users !== null) {
        const { rows } = await client.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM tenantry.memberships WHERE tenant_id = $1',
          [tid],
        );
        if ((rows[0]?.n ?? 0) >= tenant.max_users) {
          throw new TenantryError('QUOTA_EXCEEDED', `max_users is ${tenant.max_users}`, {
            details: { limit: 'maxUsers', max: tenant.max_users },
          });
        }
      }
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO tenantry.users (email, password_hash) VALUES ($1, $2)
         ON CONFLICT ((lower(email))) DO NOTHING RETURNING id`,
        [data.email, passwordHash],
      );
      let userId = inserted.rows[0]?.id;
      const newUser = userId !== undefined;
      if (!userId) {
        const existing = await client.query<{ id: string }>(
          'SELECT id FROM tenantry.users WHERE lower(email) = lower($1) FOR KEY SHARE',
          [data.email],
        );
        userId = existing.rows[0]?.id as string;
      }
      const membership = await client.query<{ tenant_id: string }>(
        `INSERT INTO tenantry.memberships (tenant_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, user_id) DO NOTHING RETURNING tenant_id`,
        [tid, userId, data.role],
      );
      if (membership.rowCount === 0) {
        throw new TenantryError('INVALID_INPUT', 'email: this user is already a member of the tenant', {
          details: { problems: [{ path: 'email', message: 'already a member' }] },
        });
      }
      await writeAudit(client, {
        actor: options.actor ?? 'system',
        tenantId: tid,
        action: 'user.created',
        // No email: the audit log is append-only, personal data stays in `users`.
        details: { userId, role: data.role, newAccount: newUser, invited: newUser && passwordHash === null },
      });
      return this.#read(client, tid, userId);
    });
  }

  async #read(db: Pool | PoolClient, tenantId: string, userId: string): Promise<UserRecord> {
    const { rows } = await db.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM tenantry.memberships m JOIN tenantry.users u ON u.id = m.user_id
        WHERE m.tenant_id = $1 AND m.user_id = $2`,
      [tenantId, userId],
    );
    if (!rows[0]) throw new TenantryError('NOT_FOUND', 'user');
    return toRecord(rows[0]);
  }

  /**
   * The tenant's users, in the order they joined. No pagination yet: bounded by `max_users`.
   *
   * @example
   * ```ts
   * for (const u of await users.list(tenantId)) console.log(u.email, u.role);
   * ```
   */
  async list(tenantId: string): Promise<UserRecord[]> {
    const { tenantId: tid } = parseInput(z.object({ tenantId: Id }), { tenantId });
    const { rows } = await this.#pool.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM tenantry.memberships m JOIN tenantry.users u ON u.id = m.user_id
        WHERE m.tenant_id = $1 ORDER BY m.created_at, u.id`,
      [tid],
    );
    return rows.map(toRecord);
  }

  /** One user of the tenant; `NOT_FOUND` when the user does not exist or belongs to other tenants only. */
  async get(tenantId: string, userId: string): Promise<UserRecord> {
    const ids = parseInput(TenantUser, { tenantId, userId });
    return this.#read(this.#pool, ids.tenantId, ids.userId);
  }

  /**
   * Changes the user's role in this tenant. Access tokens already issued keep the old role
   * until they expire (at most the access-token lifetime); the next refresh reads the new one.
   */
  async setRole(tenantId: string, userId: string, role: string, options: ActorOption = {}): Promise<UserRecord> {
    const data = parseInput(SetRole, { tenantId, userId, role });
    return inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<{ role: string }>(
        'SELECT role FROM tenantry.memberships WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE',
        [data.tenantId, data.userId],
      );
      const from = rows[0]?.role;
      if (from === undefined) throw new TenantryError('NOT_FOUND', 'user');
      await this.#assertRole(client, data.tenantId, data.role);
      await client.query(
        'UPDATE tenantry.memberships SET role = $3, updated_at = now() WHERE tenant_id = $1 AND user_id = $2',
        [data.tenantId, data.userId, data.role],
      );
      await writeAudit(client, {
        actor: options.actor ?? 'system',
        tenantId: data.tenantId,
        action: 'user.role_changed',
        details: { userId: data.userId, from, to: data.role },
      });
      return this.#read(client, data.tenantId, data.userId);
    });
  }

  /**
   * Removes the user from this tenant and ends their sessions there (their refresh tokens
   * go with the membership). The account and other memberships stay.
   */
  async remove(tenantId: string, userId: string, options: ActorOption = {}): Promise<void> {
    const data = parseInput(TenantUser, { tenantId, userId });
    await inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<{ role: string }>(
        'DELETE FROM tenantry.memberships WHERE tenant_id = $1 AND user_id = $2 RETURNING role',
        [data.tenantId, data.userId],
      );
      if (!rows[0]) throw new TenantryError('NOT_FOUND', 'user');
      await writeAudit(client, {
        actor: options.actor ?? 'system',
        tenantId: data.tenantId,
        action: 'user.removed',
        details: { userId: data.userId, role: rows[0].role },
      });
    });
  }

  /**
   * The {@link Principal} of the user acting in this tenant: kind `user`, the membership's
   * role and that role's permissions. `NOT_FOUND` without a membership.
   *
   * @example
   * ```ts
   * requirePermission(await users.principalFor(tenantId, userId), 'items:write');
   * ```
   */
  async principalFor(tenantId: string, userId: string): Promise<Principal> {
    const ids = parseInput(TenantUser, { tenantId, userId });
    const { role } = await this.#read(this.#pool, ids.tenantId, ids.userId);
    const permissions = await rolePermissions(this.#pool, ids.tenantId, role);
    return userPrincipal(ids.tenantId, ids.userId, role, permissions ?? []);
  }
}
