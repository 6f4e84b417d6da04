import { relations, sql } from 'drizzle-orm';
import { foreignKey, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/** The test application's tables (test-support/fixture.ts: appMigrations) as Drizzle sees them. */
export const items = pgTable(
  'items',
  {
    // Defaults to the verified tenant context in PostgreSQL: never written by the application.
    tenantId: uuid('tenant_id').notNull().default(sql`DEFAULT`),
    id: uuid('id').notNull().defaultRandom(),
    title: text('title').notNull(),
    description: text('description'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.id] })],
);

export const comments = pgTable(
  'comments',
  {
    tenantId: uuid('tenant_id').notNull().default(sql`DEFAULT`),
    id: uuid('id').notNull().defaultRandom(),
    itemId: uuid('item_id').notNull(),
    body: text('body').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.id] }),
    foreignKey({ columns: [t.tenantId, t.itemId], foreignColumns: [items.tenantId, items.id] }).onDelete('cascade'),
  ],
);

export const itemsRelations = relations(items, ({ many }) => ({ comments: many(comments) }));
export const commentsRelations = relations(comments, ({ one }) => ({
  item: one(items, { fields: [comments.tenantId, comments.itemId], references: [items.tenantId, items.id] }),
}));

export const drizzleSchema = { items, comments, itemsRelations, commentsRelations };
