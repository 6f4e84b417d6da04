import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { CreateTenantInput } from '../../control/tenant-input.ts';
import { TenantryError } from '../../errors/catalog.ts';
import { isHtmx, redirect } from '../console-auth.ts';
import { type Html, html } from '../html.ts';
import { csrfField, layout, message, shortDate } from '../layout.ts';
import { type ConsoleDeps, consoleActor, sendPage, sessionOf } from '../page.ts';
import { sparkline } from '../sparkline.ts';
import { listTenants, TENANT_SORTS, type TenantListPage } from '../tenant-list.ts';

const ListQuery = z.object({
  q: z.string().max(100).optional(),
  status: z.enum(['active', 'suspended', 'offboarding', 'deleted', '']).optional(),
  sort: z.enum(TENANT_SORTS).optional(),
  dir: z.enum(['asc', 'desc']).optional(),
  cursor: z.string().max(500).optional(),
});
type ListQuery = z.infer<typeof ListQuery>;

function parseQuery(query: unknown): ListQuery {
  const parsed = ListQuery.safeParse(query);
  if (!parsed.success) throw new TenantryError('INVALID_INPUT', 'the list was asked with a parameter it does not know');
  return parsed.data;
}

const statusBadge = (status: string) => html`<span class="status status-${status}">${status}</span>`;

function listUrl(query: ListQuery, change: Partial<ListQuery>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...query, ...change })) if (v) params.set(k, String(v));
  const s = params.toString();
  return s ? `/console/tenants?${s}` : '/console/tenants';
}

function sortHeader(query: ListQuery, column: (typeof TENANT_SORTS)[number], label: string): Html {
  const current = query.sort ?? 'created';
  const dir = query.dir ?? (current === 'created' ? 'desc' : 'asc');
  const active = current === column;
  const next = active && dir === 'asc' ? 'desc' : 'asc';
  const aria = active ? (dir === 'asc' ? 'ascending' : 'descending') : undefined;
  return html`<th scope="col"${aria ? html` aria-sort="${aria}"` : ''}><a href="${listUrl(query, { sort: column, dir: next, cursor: undefined })}">${label}${active ? (dir === 'asc' ? ' ▲' : ' ▼') : ''}</a></th>`;
}

async function rows(deps: ConsoleDeps, query: ListQuery): Promise<Html> {
  const page: TenantListPage = await listTenants(deps.tenantry.adminPool, {
    q: query.q,
    status: query.status || undefined,
    sort: query.sort,
    dir: query.dir,
    cursor: query.cursor,
    limit: 50,
  });
  const series = await deps.tenantry.usage.series(
    page.tenants.map((t) => t.id),
    { window: '24h', bucketSeconds: 3600 },
  );
  const byId = new Map(series.map((s) => [s.tenantId, s]));
  const body = page.tenants.map((t) => {
    const s = byId.get(t.id);
    return html`<tr>
<td><a href="/console/tenants/${t.slug}">${t.slug}</a></td>
<td>${t.name}</td>
<td>${t.tier}</td>
<td class="hide-narrow">${t.placement}</td>
<td>${statusBadge(t.status)}</td>
<td class="hide-narrow">${t.plan}</td>
<td class="hide-narrow">${shortDate(t.createdAt)}</td>
<td>${s ? sparkline(s.requests, `Requests of ${t.slug}, last 24 h`) : ''}</td>
<td class="hide-narrow">${s ? sparkline(s.dbTimeMs, `DB time of ${t.slug}, last 24 h`, ' ms') : ''}</td>
</tr>`;
  });
  return html`<div id="tenant-table">
<div class="scroll" role="region" aria-label="Tenants" tabindex="0"><table>
<caption class="visually-hidden">Tenants</caption>
<thead><tr>
${sortHeader(query, 'slug', 'Slug')}${sortHeader(query, 'name', 'Name')}<th scope="col">Tier</th>
<th scope="col" class="hide-narrow">Placement</th><th scope="col">Status</th><th scope="col" class="hide-narrow">Plan</th>
${sortHeader(query, 'created', 'Created')}<th scope="col">Requests 24 h</th><th scope="col" class="hide-narrow">DB time 24 h</th>
</tr></thead>
<tbody>${body.length ? body : html`<tr><td colspan="9" class="muted">No tenant matches.</td></tr>`}</tbody>
</table></div>
<div class="pager">
${query.cursor ? html`<a href="${listUrl(query, { cursor: undefined })}">First page</a>` : ''}
${page.nextCursor ? html`<a href="${listUrl(query, { cursor: page.nextCursor })}" rel="next">Next page</a>` : ''}
</div>
</div>`;
}

function createForm(deps: ConsoleDeps, req: FastifyRequest, values: Record<string, string> = {}, error?: string): Html {
  const plans = Object.keys(deps.plans);
  return html`<section class="panel" aria-labelledby="create-heading">
<h2 id="create-heading">Create a tenant</h2>
${error ? message('error', error) : ''}
<form method="post" action="/console/tenants">${csrfField(sessionOf(req))}
<div class="form-row">
<div><label for="new-slug">Slug</label><input id="new-slug" name="slug" required pattern="[a-z0-9][a-z0-9-]*" maxlength="63" value="${values.slug ?? ''}"></div>
<div><label for="new-name">Name</label><input id="new-name" name="name" required maxlength="200" value="${values.name ?? ''}"></div>
<div><label for="new-tier">Tier</label><select id="new-tier" name="tier">
${['pool', 'schema', 'database'].map((t) => html`<option value="${t}"${values.tier === t ? html` selected` : ''}>${t}</option>`)}
</select></div>
<div><label for="new-plan">Plan</label>${
    plans.length
      ? html`<select id="new-plan" name="plan">${plans.map((p) => html`<option${values.plan === p ? html` selected` : ''}>${p}</option>`)}</select>`
      : html`<input id="new-plan" name="plan" value="${values.plan ?? 'free'}" maxlength="100">`
  }</div>
<button type="submit">Create</button>
</div></form></section>`;
}

async function listPage(
  deps: ConsoleDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  create?: { values: Record<string, string>; error: string },
) {
  const query = parseQuery(req.query);
  const table = await rows(deps, query);
  if (isHtmx(req) && !create) return sendPage(reply, table);
  const body = html`<h1>Tenants</h1>
${createForm(deps, req, create?.values, create?.error)}
<section class="panel" aria-labelledby="list-heading">
<h2 id="list-heading">All tenants</h2>
<form method="get" action="/console/tenants" class="form-row" role="search"
  hx-get="/console/tenants" hx-target="#tenant-table" hx-swap="outerHTML" hx-trigger="input changed delay:300ms from:#q, change from:#status, submit" hx-push-url="true">
<div><label for="q">Search slug or name (starts with)</label><input id="q" name="q" type="search" value="${query.q ?? ''}" maxlength="100"></div>
<div><label for="status">Status</label><select id="status" name="status">
${['', 'active', 'suspended', 'offboarding', 'deleted'].map((s) => html`<option value="${s}"${(query.status ?? '') === s ? html` selected` : ''}>${s || 'any'}</option>`)}
</select></div>
${query.sort ? html`<input type="hidden" name="sort" value="${query.sort}">` : ''}
${query.dir ? html`<input type="hidden" name="dir" value="${query.dir}">` : ''}
<button type="submit" class="secondary">Search</button>
</form>
${table}
</section>`;
  return sendPage(
    reply,
    layout({ title: 'Tenants', nav: 'tenants', session: sessionOf(req), body }),
    create ? 400 : 200,
  );
}

/** `GET /console/tenants` (search, sort, keyset pages, 24 h sparklines) and `POST /console/tenants` (create). */
export async function tenantListRoutes(app: FastifyInstance, deps: ConsoleDeps): Promise<void> {
  app.get('/console/tenants', { schema: { hide: true } }, (req, reply) => listPage(deps, req, reply));

  app.post<{ Body: Record<string, string> | undefined }>(
    '/console/tenants',
    { schema: { hide: true } },
    async (req, reply) => {
      const form = req.body ?? {};
      const input = { slug: form.slug ?? '', name: form.name ?? '', tier: form.tier, plan: form.plan || undefined };
      const parsed = CreateTenantInput.safeParse(input);
      if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
        return listPage(deps, req, reply, { values: form, error: `Not created: ${problems}` });
      }
      try {
        const tenant = await deps.tenantry.tenants.create(parsed.data, consoleActor(req));
        return redirect(req, reply, `/console/tenants/${tenant.slug}?created=1`);
      } catch (error) {
        if (error instanceof TenantryError && error.status < 500) {
          return listPage(deps, req, reply, { values: form, error: `Not created: ${error.message}` });
        }
        throw error;
      }
    },
  );
}
