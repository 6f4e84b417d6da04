import { sql } from 'drizzle-orm';
import { pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/**
 * The application's tenant table as Drizzle sees it. Tenantry's migrations create it
 * (`migrations` in `items.ts`) on every tier; drizzle-kit never runs against it. `tenant_id`
 * defaults to the verified tenant context in PostgreSQL, so it is never written.
 */
export const items = pgTable(
  'items',
  {
    tenantId: uuid('tenant_id').notNull().default(sql`DEFAULT`),
    id: uuid('id').notNull().defaultRandom(),
    title: text('title').notNull(),
    description: text('description'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.id] })],
);
