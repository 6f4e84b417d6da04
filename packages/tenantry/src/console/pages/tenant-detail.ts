import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { API_KEY_ENVIRONMENTS } from '../../auth/api-key-format.ts';
import { CreateApiKeyInput } from '../../auth/api-key-record.ts';
import type { TenantRecord } from '../../control/tenant-record.ts';
import { TenantryError } from '../../errors/catalog.ts';
import { redirect } from '../console-auth.ts';
import { type Html, html } from '../html.ts';
import { csrfField, layout, message, shortDate } from '../layout.ts';
import { type ConsoleDeps, consoleActor, sendPage, sessionOf } from '../page.ts';
import { formatBytes, formatNumber } from '../sparkline.ts';
import { exportPanel, latestExport } from './exports.ts';

/** Lifecycle actions the page offers, with the states they apply to. */
const ACTIONS = {
  suspend: { label: 'Suspend', from: ['active'], danger: false },
  resume: { label: 'Resume', from: ['suspended'], danger: false },
  offboard: { label: 'Offboard', from: ['active', 'suspended'], danger: true },
  delete: { label: 'Delete', from: ['active', 'suspended', 'offboarding'], danger: true },
} as const;
type Action = keyof typeof ACTIONS;

interface Shown {
  notice?: string | undefined;
  error?: string | undefined;
  /** A key just created: shown this once, never stored in the page's URL. */
  newKey?: { name: string; key: string } | undefined;
}

const statusBadge = (status: string) => html`<span class="status status-${status}">${status}</span>`;

/**
 * A chart drawn by `console.js` with uPlot from `data-chart`, with the same figures in a
 * table for keyboards, screen readers and browsers without script.
 */
function chart(
  id: string,
  title: string,
  x: readonly number[],
  series: { label: string; values: readonly number[] }[],
): Html {
  const spec = { x, series };
  return html`<figure class="chart-figure">
<figcaption><h3>${title}</h3></figcaption>
<div class="chart" id="${id}" data-chart="${JSON.stringify(spec)}" role="img" aria-label="${title}: ${series
    .map((s) => `${s.label} ${formatNumber(s.values.reduce((a, b) => a + b, 0))} in total`)
    .join(', ')}"></div>
<details><summary>Figures</summary><div class="scroll" role="region" aria-label="Chart figures" tabindex="0"><table>
<thead><tr><th scope="col">Hour (UTC)</th>${series.map((s) => html`<th scope="col" class="num">${s.label}</th>`)}</tr></thead>
<tbody>${x.map(
    (t, i) =>
      html`<tr><td>${shortDate(new Date(t * 1000))}</td>${series.map((s) => html`<td class="num">${formatNumber(s.values[i] ?? 0)}</td>`)}</tr>`,
  )}</tbody></table></div></details>
</figure>`;
}

function lifecycle(req: FastifyRequest, tenant: TenantRecord): Html {
  const session = sessionOf(req);
  const forms = (Object.entries(ACTIONS) as [Action, (typeof ACTIONS)[Action]][])
    .filter(([, a]) => (a.from as readonly string[]).includes(tenant.status))
    .map(
      ([
        verb,
        a,
      ]) => html`<form method="post" action="/console/tenants/${tenant.slug}/${verb}" data-confirm="${tenant.slug}" class="form-row">
${csrfField(session)}
<div><label for="confirm-${verb}">Type <code>${tenant.slug}</code> to ${a.label.toLowerCase()}</label>
<input id="confirm-${verb}" name="confirm" autocomplete="off" required></div>
<button type="submit"${a.danger ? html` class="danger"` : ''}>${a.label}</button>
</form>`,
    );
  return html`<section class="panel" aria-labelledby="lifecycle-heading"><h2 id="lifecycle-heading">Lifecycle</h2>
${forms.length ? forms : html`<p class="muted">No action applies to a ${tenant.status} tenant.</p>`}
${tenant.status === 'active' || tenant.status === 'suspended' ? moveForm(req, tenant) : ''}</section>`;
}

/** The tiers a tenant can be moved to from its own (see `tenantry.moveTenant()`). */
const MOVE_TIERS = ['pool', 'schema', 'database'] as const;

/** Move to another tier: rows copied and verified, then switched (docs/isolation-tiers.md). */
function moveForm(req: FastifyRequest, tenant: TenantRecord): Html {
  return html`<form method="post" action="/console/tenants/${tenant.slug}/move" data-confirm="${tenant.slug}" class="form-row">
${csrfField(sessionOf(req))}
<div><label for="move-to">Move to tier (now ${tenant.tier})</label><select id="move-to" name="to">${MOVE_TIERS.filter(
    (t) => t !== tenant.tier,
  ).map((t) => html`<option>${t}</option>`)}</select></div>
<div><label for="confirm-move">Type <code>${tenant.slug}</code> to move</label>
<input id="confirm-move" name="confirm" autocomplete="off" required></div>
<button type="submit" class="danger">Move</button>
<p class="muted">Writes wait (retryable <code>TENANT_MOVING</code>) while its rows are copied and checked.</p>
</form>`;
}

async function apiKeys(deps: ConsoleDeps, req: FastifyRequest, tenant: TenantRecord, shown: Shown): Promise<Html> {
  const session = sessionOf(req);
  const keys = await deps.tenantry.apiKeys.list(tenant.id);
  return html`<section class="panel" aria-labelledby="keys-heading"><h2 id="keys-heading">API keys</h2>
${
  shown.newKey
    ? html`<div class="message notice" role="status">Key <strong>${shown.newKey.name}</strong> created. Copy it now: it is not shown again.
<code class="secret" id="new-key">${shown.newKey.key}</code></div>`
    : ''
}
<div class="scroll" role="region" aria-label="API keys" tabindex="0"><table><thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Env</th><th scope="col" class="hide-narrow">Scopes</th>
<th scope="col" class="hide-narrow">Last used</th><th scope="col">State</th><th scope="col"><span class="visually-hidden">Action</span></th></tr></thead>
<tbody>${keys.map(
    (k) => html`<tr><td>${k.name}</td><td><code>${k.displayPrefix}</code></td><td>${k.environment}</td>
<td class="hide-narrow">${k.scopes.length ? k.scopes.join(', ') : 'role default'}</td><td class="hide-narrow">${shortDate(k.lastUsedAt)}</td>
<td>${k.revokedAt ? html`<span class="status status-deleted">revoked</span>` : html`<span class="status status-active">active</span>`}</td>
<td>${
      k.revokedAt
        ? ''
        : html`<form method="post" action="/console/tenants/${tenant.slug}/api-keys/${k.id}/revoke">${csrfField(session)}
<button type="submit" class="secondary" aria-label="Revoke key ${k.name}">Revoke</button></form>`
    }</td></tr>`,
  )}${keys.length ? '' : html`<tr><td colspan="7" class="muted">No keys.</td></tr>`}</tbody></table></div>
<form method="post" action="/console/tenants/${tenant.slug}/api-keys" class="form-row">${csrfField(session)}
<div><label for="key-name">New key name</label><input id="key-name" name="name" required maxlength="100"></div>
<div><label for="key-env">Environment</label><select id="key-env" name="environment">${API_KEY_ENVIRONMENTS.map(
    (e) => html`<option>${e}</option>`,
  )}</select></div>
<div><label for="key-scopes">Scopes (comma-separated, e.g. items:read)</label><input id="key-scopes" name="scopes" maxlength="2000"></div>
<button type="submit">Create key</button></form></section>`;
}

async function detailPage(
  deps: ConsoleDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  idOrSlug: string,
  shown: Shown = {},
  status = 200,
) {
  const { tenantry } = deps;
  const tenant = await tenantry.tenants.get(idOrSlug);
  const action =
    typeof (req.query as { action?: unknown }).action === 'string'
      ? (req.query as { action: string }).action
      : undefined;
  const [placements, [series], performance, users, audit, jobs, webhooks, keysPanel, latest] = await Promise.all([
    tenantry.placements.list(),
    tenantry.usage.series([tenant.id], { window: '24h', bucketSeconds: 3600 }),
    tenantry.usage.performance(tenant.id, { window: '24h' }),
    tenantry.users.list(tenant.id),
    tenantry.audit.list(tenant.id, { limit: 25, ...(action ? { action: action.slice(0, 200) } : {}) }),
    tenantry.jobs.stats({ tenantId: tenant.id }),
    tenantry.webhooks.list(tenant.id),
    apiKeys(deps, req, tenant, shown),
    deps.exports ? latestExport(deps, deps.exports, tenant.id) : undefined,
  ]);
  const deliveries = await Promise.all(
    webhooks.slice(0, 5).map((w) => tenantry.webhooks.deliveries(tenant.id, w.id, 5)),
  );
  const placement = placements.find((p) => p.id === tenant.placementId);
  const job = jobs[0];
  const s = series as NonNullable<typeof series>;
  const body = html`<p><a href="/console/tenants">← Tenants</a></p>
<h1>${tenant.name} <span class="muted">(${tenant.slug})</span></h1>
${shown.notice ? message('notice', shown.notice) : ''}${shown.error ? message('error', shown.error) : ''}
<div class="grid">
<section class="panel" aria-labelledby="facts-heading"><h2 id="facts-heading">Tenant</h2><dl class="facts">
<dt>Status</dt><dd id="tenant-status">${statusBadge(tenant.status)}${tenant.frozen ? ' (moving: read-only)' : ''}</dd>
<dt>Id</dt><dd><code>${tenant.id}</code></dd>
<dt>Tier</dt><dd>${tenant.tier}</dd>
<dt>Placement</dt><dd>${placement?.name ?? tenant.placementId}</dd>
<dt>Plan</dt><dd>${tenant.plan}</dd>
<dt>Created</dt><dd>${shortDate(tenant.createdAt)}</dd>
<dt>Status since</dt><dd>${shortDate(tenant.statusChangedAt)}</dd>
</dl></section>
${lifecycle(req, tenant)}
</div>
<section class="panel" aria-labelledby="usage-heading"><h2 id="usage-heading">Usage, last 24 hours</h2>
<div class="grid">
${chart('chart-requests', 'Requests per hour', s.at, [{ label: 'Requests', values: s.requests }])}
${chart('chart-dbtime', 'DB time per hour (ms)', s.at, [{ label: 'DB time ms', values: s.dbTimeMs }])}
${chart('chart-rows', 'Rows per hour', s.at, [
  { label: 'Rows read', values: s.rowsRead },
  { label: 'Rows written', values: s.rowsWritten },
])}
</div>
<p class="muted">Against the median of ${performance.tenantsActive} active tenants: ${formatNumber(performance.usage.requests)} requests
(median ${formatNumber(performance.medianTenant.requests)}), ${formatNumber(performance.usage.dbTimeMs)} ms of DB time
(median ${formatNumber(performance.medianTenant.dbTimeMs)}).</p>
${
  performance.storageTrend.length >= 2
    ? chart(
        'chart-storage',
        'Storage over 30 days (bytes)',
        performance.storageTrend.map((p) => Math.floor(Date.parse(p.at) / 1000)),
        [{ label: 'Bytes', values: performance.storageTrend.map((p) => p.storageBytes) }],
      )
    : html`<p class="muted">Storage: ${formatBytes(performance.storageTrend.at(-1)?.storageBytes)} (a trend needs two snapshots; the server takes one an hour).</p>`
}
</section>
<section class="panel" aria-labelledby="slow-heading"><h2 id="slow-heading">Slowest statements, last 24 hours</h2>
${
  performance.slowStatements.length
    ? html`<div class="scroll" role="region" aria-label="Slowest statements" tabindex="0"><table><thead><tr><th scope="col">Statement</th><th scope="col" class="num">Max ms</th><th scope="col" class="num">Minutes</th></tr></thead><tbody>
${performance.slowStatements.map((st) => html`<tr><td><code>${st.sql}</code></td><td class="num">${st.maxMs}</td><td class="num">${st.minutes}</td></tr>`)}</tbody></table></div>`
    : html`<p class="muted">None recorded.</p>`
}
</section>
${keysPanel}
${deps.exports ? exportPanel(req, tenant.slug, latest) : ''}
<div class="grid">
<section class="panel" aria-labelledby="users-heading"><h2 id="users-heading">Users and roles</h2>
${
  users.length
    ? html`<div class="scroll" role="region" aria-label="Users" tabindex="0"><table><thead><tr><th scope="col">Email</th><th scope="col">Role</th></tr></thead><tbody>${users.map(
        (u) => html`<tr><td>${u.email}</td><td>${u.role}</td></tr>`,
      )}</tbody></table></div>`
    : html`<p class="muted">No users.</p>`
}</section>
<section class="panel" aria-labelledby="jobs-heading"><h2 id="jobs-heading">Job backlog</h2>
${
  job
    ? html`<dl class="facts"><dt>Due now</dt><dd>${job.backlog}</dd><dt>Scheduled</dt><dd>${job.scheduled}</dd><dt>Running</dt><dd>${job.running}</dd>
<dt>Failed</dt><dd>${job.failed}</dd><dt>Oldest due</dt><dd>${job.oldestAgeSeconds} s</dd></dl>`
    : html`<p class="muted">No jobs.</p>`
}</section>
<section class="panel" aria-labelledby="webhooks-heading"><h2 id="webhooks-heading">Webhook deliveries</h2>
${
  webhooks.length
    ? webhooks
        .slice(0, 5)
        .map(
          (w, i) =>
            html`<h3><code>${w.url}</code></h3>${
              deliveries[i]?.length
                ? html`<div class="scroll" role="region" aria-label="Webhook deliveries" tabindex="0"><table><thead><tr><th scope="col">Event</th><th scope="col">Attempt</th><th scope="col">Result</th><th scope="col">At</th></tr></thead><tbody>${(
                    deliveries[i] ?? []
                  ).map(
                    (d) =>
                      html`<tr><td>${d.eventType}</td><td>${d.attempt}</td><td>${d.ok ? 'ok' : (d.error ?? String(d.status))}</td><td>${shortDate(d.createdAt)}</td></tr>`,
                  )}</tbody></table></div>`
                : html`<p class="muted">No deliveries yet.</p>`
            }`,
        )
    : html`<p class="muted">No webhook endpoints.</p>`
}</section>
</div>
<section class="panel" aria-labelledby="audit-heading"><h2 id="audit-heading">Audit trail</h2>
<form method="get" action="/console/tenants/${tenant.slug}" class="form-row">
<div><label for="audit-action">Action</label><input id="audit-action" name="action" value="${action ?? ''}" placeholder="tenant.suspended" maxlength="200"></div>
<button type="submit" class="secondary">Filter</button></form>
<div class="scroll" role="region" aria-label="Audit trail" tabindex="0"><table id="audit"><thead><tr><th scope="col">At</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col" class="hide-narrow">Target</th></tr></thead>
<tbody>${audit.entries.map(
    (e) =>
      html`<tr><td>${shortDate(e.at)}</td><td><code>${e.action}</code></td><td>${e.actor}</td><td class="hide-narrow">${e.target ?? ''}</td></tr>`,
  )}${audit.entries.length ? '' : html`<tr><td colspan="4" class="muted">No entries.</td></tr>`}</tbody></table></div>
</section>`;
  return sendPage(reply, layout({ title: tenant.slug, nav: 'tenants', session: sessionOf(req), body }), status);
}

/** The page again with why nothing was done: the typed confirmation did not match the slug. */
function unconfirmed(deps: ConsoleDeps, req: FastifyRequest, reply: FastifyReply, tenant: TenantRecord, what: string) {
  return detailPage(deps, req, reply, tenant.id, { error: `${what}: type the slug ${tenant.slug} to confirm.` }, 400);
}

type TenantParams = { Params: { tenant: string }; Body: Record<string, string> | undefined };

/**
 * `GET /console/tenants/{slug}` and its actions: lifecycle with a typed confirmation, API
 * key create (shown once) and revoke.
 */
export async function tenantDetailRoutes(app: FastifyInstance, deps: ConsoleDeps): Promise<void> {
  app.get<TenantParams>('/console/tenants/:tenant', { schema: { hide: true } }, (req, reply) =>
    detailPage(
      deps,
      req,
      reply,
      req.params.tenant,
      'created' in (req.query as object) ? { notice: 'Tenant created.' } : {},
    ),
  );

  for (const verb of Object.keys(ACTIONS) as Action[]) {
    app.post<TenantParams>(`/console/tenants/:tenant/${verb}`, { schema: { hide: true } }, async (req, reply) => {
      const tenant = await deps.tenantry.tenants.get(req.params.tenant);
      if (req.body?.confirm !== tenant.slug) return unconfirmed(deps, req, reply, tenant, 'Not done');
      const actor = consoleActor(req);
      if (verb === 'delete') await deps.tenantry.tenants.delete(tenant.id, actor);
      else await deps.tenantry.tenants[verb](tenant.id, actor);
      return redirect(req, reply, `/console/tenants/${tenant.slug}`);
    });
  }

  app.post<TenantParams>('/console/tenants/:tenant/move', { schema: { hide: true } }, async (req, reply) => {
    const tenant = await deps.tenantry.tenants.get(req.params.tenant);
    const to = (req.body as { to?: unknown } | undefined)?.to;
    if (req.body?.confirm !== tenant.slug) return unconfirmed(deps, req, reply, tenant, 'Not moved');
    if (!MOVE_TIERS.includes(to as never) || to === tenant.tier) {
      return detailPage(deps, req, reply, tenant.id, { error: 'Not moved: choose another tier.' }, 400);
    }
    try {
      const report = await deps.tenantry.moveTenant(tenant.id, {
        to: to as (typeof MOVE_TIERS)[number],
        ...consoleActor(req),
      });
      const notice = `Moved to the ${report.to.tier} tier (${report.to.placement}); writes waited ${formatNumber(report.frozenMs)} ms.`;
      return detailPage(deps, req, reply, tenant.id, { notice });
    } catch (error) {
      // A coded refusal (a move already running, drain timeout, no such placement) is shown on
      // the page; the tenant stays where it was. Anything else is the server's error.
      if (!(error instanceof TenantryError)) throw error;
      return detailPage(deps, req, reply, tenant.id, { error: `Not moved: ${error.message}` }, 409);
    }
  });

  app.post<TenantParams>('/console/tenants/:tenant/api-keys', { schema: { hide: true } }, async (req, reply) => {
    const tenant = await deps.tenantry.tenants.get(req.params.tenant);
    const scopes = (req.body?.scopes ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    const parsed = CreateApiKeyInput.safeParse({
      name: req.body?.name ?? '',
      environment: req.body?.environment,
      scopes,
    });
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      return detailPage(deps, req, reply, tenant.id, { error: `Key not created: ${problems}` }, 400);
    }
    const created = await deps.tenantry.apiKeys.create(tenant.id, parsed.data, consoleActor(req));
    return detailPage(deps, req, reply, tenant.id, { newKey: { name: created.record.name, key: created.key } }, 201);
  });

  app.post<{ Params: { tenant: string; keyId: string } }>(
    '/console/tenants/:tenant/api-keys/:keyId/revoke',
    { schema: { hide: true } },
    async (req, reply) => {
      const tenant = await deps.tenantry.tenants.get(req.params.tenant);
      if (!/^[0-9a-f-]{36}$/.test(req.params.keyId)) throw new TenantryError('NOT_FOUND', 'no such key');
      await deps.tenantry.apiKeys.revoke(tenant.id, req.params.keyId, consoleActor(req));
      return redirect(req, reply, `/console/tenants/${tenant.slug}`);
    },
  );
}
