import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { TenantRecord } from '../../control/tenant-record.ts';
import type { FleetEvent, FleetEventFeed } from '../../effects/fleet-event-feed.ts';
import { TenantryError } from '../../errors/catalog.ts';
import { html } from '../html.ts';
import { CONSOLE_CSP, layout, message } from '../layout.ts';
import { type ConsoleDeps, sendPage, sessionOf } from '../page.ts';

/** What the feed sends of an event: tenant, type, sequence, actor and time (the payload stays in the API). */
interface LiveEvent {
  readonly id: string;
  readonly tenant: string;
  readonly seq: number;
  readonly type: string;
  readonly actor: string | null;
  readonly at: string;
}

const HEARTBEAT_MS = 15_000;

/**
 * Bytes a viewer's socket may hold unsent. A viewer past it has fallen behind (a stalled
 * tab, a slow link): its stream is ended rather than queued without bound; the browser's
 * `EventSource` reconnects and starts again from the recent events.
 */
export const LIVE_VIEWER_BUFFER = 256 * 1024;

/** Events of one tenant shown before the live ones when following it. */
const TENANT_HISTORY = 50;

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$/;

/** The tenant a `tenant` query parameter names; empty: every tenant. Bad input is a coded error. */
async function wantedTenant(deps: ConsoleDeps, value: unknown): Promise<TenantRecord | undefined> {
  if (value === undefined || value === '') return undefined;
  const slug = typeof value === 'string' ? value.trim().toLowerCase() : '';
  if (!SLUG.test(slug)) throw new TenantryError('INVALID_INPUT', 'tenant: a tenant slug (a-z, 0-9, -)');
  return deps.tenantry.tenants.get(slug);
}

/** An event's Server-Sent Events frame, made once however many viewers it goes to. */
const frames = new WeakMap<FleetEvent, string>();

function frameOf(e: FleetEvent): string {
  let frame = frames.get(e);
  if (frame === undefined) {
    const event: LiveEvent = {
      id: e.id,
      tenant: e.tenantSlug,
      seq: e.seq,
      type: e.type,
      actor: e.actor,
      at: e.createdAt.toISOString(),
    };
    frame = `data: ${JSON.stringify(event)}\n\n`;
    frames.set(e, frame);
  }
  return frame;
}

/**
 * `GET /console/live[?tenant=slug]`: every tenant's events as they commit, newest first, or
 * one tenant's; and the Server-Sent Events stream behind it (`/console/live/stream`), fed by
 * the server's one {@link FleetEventFeed}. `console.js` renders each event with
 * `textContent`, never as markup.
 */
export async function liveRoutes(
  app: FastifyInstance,
  deps: ConsoleDeps,
  feed: FleetEventFeed,
  viewerBuffer = LIVE_VIEWER_BUFFER,
): Promise<void> {
  // Open streams end when the server closes (it would otherwise wait for the browsers).
  const open = new Set<ServerResponse>();
  app.addHook('preClose', (done) => {
    for (const res of open) res.end();
    done();
  });

  app.get<{ Querystring: { tenant?: string } }>('/console/live', { schema: { hide: true } }, async (req, reply) => {
    let tenant: TenantRecord | undefined;
    let error: string | undefined;
    let status = 200;
    try {
      tenant = await wantedTenant(deps, req.query.tenant);
    } catch (e) {
      if (!(e instanceof TenantryError) || e.status >= 500) throw e;
      error = e.code === 'TENANT_NOT_FOUND' ? 'no tenant has this slug.' : e.message;
      status = e.status;
    }
    const shown = error ? String(req.query.tenant ?? '').slice(0, 100) : (tenant?.slug ?? '');
    const body = html`<h1>Live events</h1>
${error ? message('error', html`Not followed: ${error}`) : ''}
<section class="panel" aria-labelledby="live-heading"><h2 id="live-heading">${tenant ? html`Events of ${tenant.slug}` : error ? 'No feed' : 'Events of every tenant'}</h2>
<form method="get" action="/console/live" class="form-row">
<div><label for="live-tenant">Tenant (slug; empty: every tenant)</label><input id="live-tenant" name="tenant" value="${shown}" maxlength="100"></div>
<button type="submit" class="secondary">Filter</button>${tenant || error ? html` <a href="/console/live">Every tenant</a>` : ''}</form>
${
  error
    ? ''
    : html`<p class="muted" id="live-state" aria-live="polite">Connecting…</p>
<ol id="live-feed" class="feed" data-stream="/console/live/stream${tenant ? `?tenant=${tenant.slug}` : ''}"></ol>
<p class="muted">Events appear at the top as they commit: tenant changes, API keys, and what the application emits.</p>`
}
</section>`;
    return sendPage(reply, layout({ title: 'Live', nav: 'live', session: sessionOf(req), body }), status);
  });

  app.get<{ Querystring: { tenant?: string } }>(
    '/console/live/stream',
    { schema: { hide: true } },
    async (req, reply) => {
      const tenant = await wantedTenant(deps, req.query.tenant);
      // Live events that arrive while the history is read wait here, then go out after it.
      let pending: FleetEvent[] | undefined = [];
      let res: ServerResponse | undefined;
      const write = (events: readonly FleetEvent[]) => {
        if (!res || res.destroyed || events.length === 0) return;
        // One write a batch, of frames serialized once for every viewer.
        res.write(events.map(frameOf).join(''));
        if (res.writableLength > viewerBuffer) {
          req.log.info({ unsent: res.writableLength }, 'console live viewer fell behind; stream ended');
          res.destroy();
        }
      };
      const off = await feed.subscribe((events) => (pending ? pending.push(...events) : write(events)), tenant?.id);
      let before: readonly FleetEvent[];
      try {
        before = tenant ? await feed.history(tenant.id, TENANT_HISTORY) : feed.recent();
      } catch (e) {
        off();
        throw e;
      }
      reply.hijack();
      res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': CONSOLE_CSP,
        'x-accel-buffering': 'no',
        connection: 'keep-alive',
      });
      const stream = res;
      const heartbeat = setInterval(() => stream.write(': heartbeat\n\n'), HEARTBEAT_MS);
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        clearInterval(heartbeat);
        open.delete(stream);
        off();
      };
      stream.on('close', end);
      // The browser may have gone while the history was read: then nothing is sent.
      if (req.raw.destroyed || stream.destroyed) return end();
      open.add(stream);
      stream.write(': connected\n\n');
      write(before);
      const shown = new Set(before.map((e) => e.id));
      const queued = pending;
      pending = undefined;
      write(queued.filter((e) => !shown.has(e.id)));
    },
  );
}
