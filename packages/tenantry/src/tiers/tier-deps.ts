import type { Pool } from 'pg';
import type { ResolvedConfig } from '../config.ts';
import type { PlacementRegistry } from '../control/placements.ts';
import type { KeyRing } from '../secrets/keys.ts';
import type { AdminConnector } from './admin-connection.ts';

/** Where a new tenant's rows went, for its control-plane row. */
export interface Placed {
  readonly placementId: string;
  readonly targetId: string;
  readonly schemaName: string | null;
  readonly databaseName: string | null;
  /** Whether the rows are in the main database (what `enter()` there checks). */
  readonly inMainDatabase: boolean;
}

/** What the provisioner's parts share: connections, settings and the placements. */
export interface TierDeps {
  /** The main database's admin pool: the control plane and the schema tier. */
  readonly admin: Pool;
  readonly config: ResolvedConfig;
  readonly keys: KeyRing;
  readonly placements: PlacementRegistry;
  readonly connect: AdminConnector;
  /** Start of tenant and template database names (see `tenantDatabasePrefix`). */
  readonly prefix: string;
}
