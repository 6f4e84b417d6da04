import { Body, Controller, Get, Inject, Param, Post } from '@nestjs/common';
import type { TenantRecord } from 'tenantry';
import { CurrentTenant, TenantRoute } from 'tenantry/nestjs';
import type { itemStore } from './items.ts';

/** Injection token of the item store (explicit: this app is built without emitDecoratorMetadata). */
export const ITEMS = Symbol('items');
export type ItemStore = ReturnType<typeof itemStore>;

/** The tenant API: the guard admits the tenant, the interceptor runs each handler in its context. */
@Controller('v1')
export class ItemsController {
  readonly #items: ItemStore;

  constructor(@Inject(ITEMS) items: ItemStore) {
    this.#items = items;
  }

  @Get('items')
  @TenantRoute({ permission: 'items:read' })
  list() {
    return this.#items.list();
  }

  @Get('items/:id')
  @TenantRoute({ permission: 'items:read' })
  get(@Param('id') id: string) {
    return this.#items.get(id);
  }

  @Post('items')
  @TenantRoute({ permission: 'items:write' })
  create(@Body() body: unknown) {
    return this.#items.create(body);
  }

  @Get('whoami')
  @TenantRoute()
  whoami(@CurrentTenant() tenant: TenantRecord) {
    return { id: tenant.id, slug: tenant.slug, tier: tenant.tier };
  }
}
