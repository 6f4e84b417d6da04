import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { TenantEventStream } from '../../effects/event-stream.ts';
import { html } from '../html.ts';
import { layout } from '../layout.ts';
import { type ConsoleDeps, sendPage, sessionOf } from '../page.ts';

/** What the feed sends of an event: its type, sequence, actor and time (the payload stays in the API). */
interface LiveEvent {
  readonly seq: number;
  readonly type: string;
  readonly actor: string | null;
  readonly at: string;
}

const HEARTBEAT_MS = 15_000;

/**
 * `GET /console/live?tenant=…`: a tenant's events as they commit, and the Server-Sent Events
 * stream behind it (`/console/live/stream`), fed by the same per-tenant outbox stream as the
 * tenant's own WebSocket (`GET /v1/events`). `console.js` renders each event with
 * `textContent`, never as markup.
 */
export async function liveRoutes(app: FastifyInstance, deps: ConsoleDeps, stream: TenantEventStream): Promise<void> {
  // Open streams end when the server closes (it would otherwise wait for the browsers).
  const open = new Set<ServerResponse>();
  app.addHook('preClose', (done) => {
    for (const res of open) res.end();
    done();
  });
  app.get<{ Querystring: { tenant?: string } }>('/console/live', { schema: { hide: true } }, async (req, reply) => {
    const wanted = typeof req.query.tenant === 'string' ? req.query.tenant.slice(0, 100) : '';
    const tenant = wanted ? await deps.tenantry.tenants.get(wanted) : undefined;
    const body = html`<h1>Live events</h1>
<section class="panel" aria-labelledby="live-heading"><h2 id="live-heading">${tenant ? html`Events of ${tenant.slug}` : 'Choose a tenant'}</h2>
<form method="get" action="/console/live" class="form-row">
<div><label for="live-tenant">Tenant (slug)</label><input id="live-tenant" name="tenant" value="${tenant?.slug ?? ''}" required maxlength="100"></div>
<button type="submit" class="secondary">Follow</button></form>
${
  tenant
    ? html`<p class="muted" id="live-state" aria-live="polite">Connecting…</p>
<ol id="live-feed" class="feed" data-stream="/console/live/stream?tenant=${tenant.id}" aria-live="polite"></ol>`
    : html`<p class="muted">Events appear here as they commit: tenant changes, API keys, and what the application emits.</p>`
}
</section>`;
    return sendPage(reply, layout({ title: 'Live', nav: 'live', session: sessionOf(req), body }));
  });

  app.get<{ Querystring: { tenant?: string } }>(
    '/console/live/stream',
    { schema: { hide: true } },
    async (req, reply) => {
      const tenant = await deps.tenantry.tenants.get(String(req.query.tenant ?? '').slice(0, 100));
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
        connection: 'keep-alive',
      });
      res.write(': connected\n\n');
      open.add(res);
      const send = (events: readonly { seq: number; type: string; actor: string | null; createdAt: Date }[]) => {
        for (const e of events) {
          const event: LiveEvent = { seq: e.seq, type: e.type, actor: e.actor, at: e.createdAt.toISOString() };
          res.write(`data: ${JSON.stringify(event)}\n\n`);
        }
      };
      const off = await stream.subscribe(tenant.id, send);
      const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS);
      req.raw.on('close', () => {
        clearInterval(heartbeat);
        off();
      });
    },
  );
}
