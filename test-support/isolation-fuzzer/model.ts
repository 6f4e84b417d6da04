import type { TenantRecord } from '../../packages/tenantry/src/index.ts';
import type { OpKind } from './kinds.ts';
import type { Rng } from './rng.ts';
import { marker, markerOf, text } from './text.ts';

/**
 * The model of who owns what: each tenant's live items and their acknowledged versions,
 * recently deleted ids and the writes in flight. It changes only when a write is
 * acknowledged; every answer is checked against it (see `checks.ts`).
 */

export interface Version {
  readonly title: string;
  readonly description: string | null;
}

export interface ItemState extends Version {
  /** Clock of the acknowledgement that made this version. */
  readonly since: number;
  /** Earlier versions, each acceptable to a read that started before `until`. */
  readonly previous: readonly (Version & { readonly until: number })[];
  /** A write of this item is in flight: its version (or deletion) may already be visible. */
  busy?: Version | 'delete';
  /** A write of it failed in a way that leaves its state unknown: not held to any version. */
  uncertain?: boolean;
}

export interface ApiKey {
  readonly key: string;
  readonly id: string;
}

export interface TenantState {
  readonly i: number;
  readonly record: TenantRecord;
  readonly live: Map<string, ItemState>;
  /** Recently deleted ids (a ring), with the clock of the acknowledged delete. */
  readonly gone: Map<string, Version & { readonly until: number }>;
  /** Inserts in flight, by marker, and the explicit ids they will take. */
  readonly inflight: Map<string, Version>;
  readonly reserved: Set<string>;
  /** Markers of writes whose outcome is unknown (an error mid-way): they may or may not exist. */
  readonly uncertain: Set<string>;
  /** Ids of rows an adversarial write put outside the tenant's copy (already reported). */
  readonly planted: Set<string>;
  readonly primary: ApiKey;
  spare: ApiKey;
  /** Keys revoked, with when the revocation returned (ms since epoch). */
  readonly revoked: { readonly key: string; readonly at: number }[];
  rotating: boolean;
}

export interface Op {
  readonly index: number;
  /** `sweep`: a finding of the final superuser sweep, not of one operation. */
  kind: OpKind | 'sweep';
  readonly tenant: TenantState;
  /** The model clock when the operation started: what it must see and what it may. */
  readonly start: number;
  /** What it did, for the report (set by each operation). */
  detail: string;
  /** For a read sharing a transaction: which one it was. */
  via?: string;
}

export type Row = { tenant_id?: string; id: string; title: string; description?: string | null };

const GONE_RING = 64;
const PREVIOUS_VERSIONS = 3;

/** Most entries a per-tenant set of exceptions keeps: memory stays bounded on a run that goes badly. */
const SET_LIMIT = 10_000;

/** Adds `value` to `set`, dropping the oldest entry past {@link SET_LIMIT}. */
export function remember(set: Set<string>, value: string): void {
  set.add(value);
  if (set.size > SET_LIMIT) set.delete(set.values().next().value as string);
}

/** The tenants of a run and their items; `clock` orders acknowledgements and the start of operations. */
export class Model {
  readonly tenants: TenantState[] = [];
  readonly byId = new Map<string, TenantState>();
  clock = 0;

  add(t: TenantState): void {
    this.tenants.push(t);
    this.byId.set(t.record.id, t);
  }

  /** Other tenants that have (or recently had) an item with this id. */
  owners(id: string, except: TenantState): TenantState[] {
    return this.tenants.filter((u) => u !== except && (u.live.has(id) || u.gone.has(id) || u.planted.has(id)));
  }

  settled(t: TenantState): string[] {
    const out: string[] = [];
    for (const [id, item] of t.live) if (!item.busy && !item.uncertain) out.push(id);
    return out;
  }

  ownItem(t: TenantState, rng: Rng): string | undefined {
    const ids = this.settled(t);
    return ids.length ? rng.pick(ids) : undefined;
  }

  /** Any id the tenant has or had: live (busy too) or recently deleted. */
  anyOwnId(t: TenantState, rng: Rng): string | undefined {
    const r = rng.next();
    if (r < 0.2 && t.gone.size) return rng.pick([...t.gone.keys()]);
    if (t.live.size) return rng.pick([...t.live.keys()]);
    return t.gone.size ? rng.pick([...t.gone.keys()]) : undefined;
  }

  other(t: TenantState, rng: Rng, filter: (u: TenantState) => boolean = () => true): TenantState | undefined {
    const others = this.tenants.filter((u) => u !== t && filter(u));
    return others.length ? rng.pick(others) : undefined;
  }

  /** An id of another tenant's item that `t` neither has nor is about to have. */
  foreignId(t: TenantState, rng: Rng): { id: string; owner: TenantState } | undefined {
    for (let attempt = 0; attempt < 4; attempt++) {
      const u = this.other(t, rng);
      if (!u) return undefined;
      const pool = rng.chance(0.85) ? [...u.live.keys()] : [...u.gone.keys()];
      if (!pool.length) continue;
      const id = rng.pick(pool);
      if (!t.live.has(id) && !t.gone.has(id) && !t.reserved.has(id) && !t.planted.has(id)) return { id, owner: u };
    }
    return undefined;
  }

  /**
   * Runs `work` with another tenant's item id ({@link foreignId}) that `t` may not get while
   * `work` runs: the id is reserved for `t` (as a clone of it reserves it), so a concurrent
   * operation of `t` cannot insert its own row with that id (composite keys allow it) between
   * the pick and the statement, which would then find `t`'s own row and count as a leak. Seen
   * once in 100,000 operations on a loaded Citus cluster (an update naming the id touched the
   * tenant's own clone of it).
   */
  async withForeignId<T>(
    t: TenantState,
    rng: Rng,
    work: (foreign: { id: string; owner: TenantState } | undefined) => Promise<T>,
  ): Promise<T> {
    const foreign = this.foreignId(t, rng);
    if (foreign) t.reserved.add(foreign.id);
    try {
      return await work(foreign);
    } finally {
      if (foreign) t.reserved.delete(foreign.id);
    }
  }

  newVersion(op: Op, rng: Rng): Version {
    const title = `${text(rng, 1 + rng.int(3))} ${marker(op.tenant.i, op.index)}`.trim();
    const description = rng.chance(0.3) ? null : text(rng, rng.int(4));
    return { title, description };
  }

  acknowledgeInsert(t: TenantState, id: string, v: Version): void {
    t.live.set(id, { ...v, since: ++this.clock, previous: [] });
  }

  acknowledgeUpdate(t: TenantState, id: string, v: Version): void {
    const item = t.live.get(id);
    if (!item) return;
    const until = ++this.clock;
    const previous = [{ title: item.title, description: item.description, until }, ...item.previous].slice(
      0,
      PREVIOUS_VERSIONS,
    );
    t.live.set(id, { ...v, since: until, previous });
  }

  acknowledgeDelete(t: TenantState, id: string): void {
    const item = t.live.get(id);
    if (!item) return;
    t.live.delete(id);
    t.gone.set(id, { title: item.title, description: item.description, until: ++this.clock });
    if (t.gone.size > GONE_RING) t.gone.delete(t.gone.keys().next().value as string);
  }

  uncertainItem(t: TenantState, id: string): void {
    const item = t.live.get(id);
    if (item) item.uncertain = true;
  }

  /** A search word: a settled item's marker of the tenant's own (must be found), another tenant's (must not), or junk. */
  searchTerm(op: Op, rng: Rng): { q: string; expect?: string } {
    const r = rng.next();
    if (r < 0.5) {
      const id = this.ownItem(op.tenant, rng);
      const item = id ? op.tenant.live.get(id) : undefined;
      if (id && item) return { q: markerOf(item.title) as string, expect: id };
    }
    if (r < 0.85) {
      const foreign = this.foreignId(op.tenant, rng);
      const title = foreign
        ? (foreign.owner.live.get(foreign.id) ?? foreign.owner.gone.get(foreign.id))?.title
        : undefined;
      if (title) return { q: markerOf(title) as string };
    }
    // At most 100 code points: within the API's 200 UTF-16 units, and no surrogate pair cut in two.
    return { q: [...text(rng, 1 + rng.int(2)).trim()].slice(0, 100).join('') || 'secret' };
  }
}
