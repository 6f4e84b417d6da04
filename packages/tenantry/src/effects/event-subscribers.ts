import type { TenantContext } from '../context/tenant-context.ts';
import { TenantryError } from '../errors/catalog.ts';
import { checkEventType } from './outbox.ts';

/** One event of a tenant, as subscribers receive it. */
export interface TenantEvent<P = Record<string, unknown>> {
  /** The event's id in the outbox (a bigint, as text). */
  readonly id: string;
  /** The tenant it belongs to; the handler runs in this tenant's context. */
  readonly tenantId: string;
  /** Its position among the tenant's events: 1, 2, 3, … in commit order. */
  readonly seq: number;
  /** `resource.verb`: `tenant.created`, `item.created`, … */
  readonly type: string;
  readonly payload: P;
  /** Who caused it, when known. */
  readonly actor: string | null;
  /** The request or job that caused it, when known. */
  readonly requestId: string | null;
  readonly createdAt: Date;
  /** 1 on the first delivery, 2 on the first retry, … */
  readonly attempt: number;
}

/** A subscriber; an error (or rejected promise) makes the event retried. */
export type EventHandler<P = Record<string, unknown>> = (event: TenantEvent<P>) => unknown;

/** Options of `events.on()`. */
export interface SubscribeOptions {
  /** Only this tenant's events (its id or slug). */
  readonly tenant?: string;
}

interface Subscription {
  readonly type: string;
  readonly handler: EventHandler;
  readonly tenant: string | undefined;
}

/** The in-process subscribers of one dispatcher, by event type (`*`: every type). */
export class EventSubscribers {
  readonly #subscriptions = new Set<Subscription>();

  /** Adds `handler` for events of `type` (or `*`); returns what removes it. */
  add(type: string, handler: EventHandler, options: SubscribeOptions = {}): () => void {
    if (type !== '*') checkEventType(type);
    if (typeof handler !== 'function') throw new TenantryError('USAGE_ERROR', 'an event handler is a function');
    if (options.tenant !== undefined && (typeof options.tenant !== 'string' || options.tenant.length === 0)) {
      throw new TenantryError('USAGE_ERROR', 'a tenant filter is a tenant id or slug');
    }
    const subscription: Subscription = { type, handler, tenant: options.tenant?.toLowerCase() };
    this.#subscriptions.add(subscription);
    return () => {
      this.#subscriptions.delete(subscription);
    };
  }

  /** The handlers for an event of `type` of `tenant`, in the order they subscribed. */
  for(type: string, tenant: TenantContext): EventHandler[] {
    return [...this.#subscriptions]
      .filter(
        (s) => (s.type === '*' || s.type === type) && (!s.tenant || s.tenant === tenant.id || s.tenant === tenant.slug),
      )
      .map((s) => s.handler);
  }

  get size(): number {
    return this.#subscriptions.size;
  }
}
