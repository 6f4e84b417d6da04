import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TenantryError } from '../../errors/catalog.ts';
import { isHtmx, redirect } from '../console-auth.ts';
import { type Html, html } from '../html.ts';
import { csrfField, layout, message, shortDate } from '../layout.ts';
import type { MaintenanceRunState } from '../maintenance-runs.ts';
import { type ConsoleDeps, consoleActor, sendPage, sessionOf } from '../page.ts';
import { formatBytes, formatNumber } from '../sparkline.ts';

/** What the console lets an operator run: the operations that neither lock out writes nor rewrite tables. */
const OPERATIONS = ['analyze', 'vacuum'] as const;
type Operation = (typeof OPERATIONS)[number];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * A maintenance run's panel: PostgreSQL's phase and blocks while it runs (polled by htmx
 * every second), then done with the statements, or failed with the error.
 */
export function maintenanceProgress(run: Readonly<MaintenanceRunState> | undefined): Html {
  if (!run)
    return html`<div id="maint-progress"><p class="muted">No maintenance was started from this server.</p></div>`;
  const running = run.finishedAt === undefined;
  const p = run.progress;
  const state = running ? 'running' : run.error ? 'failed' : 'done';
  return html`<div id="maint-progress" data-state="${state}" data-run="${run.id}"${running ? html` hx-get="/console/database/maintenance/${run.id}" hx-trigger="every 1s" hx-swap="outerHTML"` : ''} aria-live="polite">
<p><strong>${run.operation}</strong> of <code>${run.tenant ?? 'shared'}</code>, started ${shortDate(run.startedAt)} by <code>${run.actor}</code>.</p>
${
  running
    ? p
      ? html`<p id="maint-phase"><code>${p.command}</code> ${p.relation ? html`of <code>${p.relation}</code>` : ''}: ${p.phase}</p>
<label for="maint-bar">Blocks ${p.command === 'analyze' ? 'sampled' : 'scanned'}</label>
<progress id="maint-bar" max="${Math.max(p.blocksTotal, 1)}" value="${p.blocksDone}">${p.blocksDone} of ${p.blocksTotal}</progress>
<p id="maint-blocks">${formatNumber(p.blocksDone)} of ${formatNumber(p.blocksTotal)} blocks — running…</p>`
      : html`<p id="maint-phase">Running… (PostgreSQL reports the phase once a statement is under way.)</p>`
    : run.report
      ? message(
          'notice',
          html`${run.operation} of <code>${run.report.target}</code> done in ${formatNumber(Math.round(run.report.durationMs))} ms: <code>${run.report.statements.join('; ')}</code>`,
        )
      : message(
          'error',
          html`${run.operation} failed: ${run.error?.message ?? 'unknown error'} (<code>${run.error?.code ?? ''}</code>)`,
        )
}
</div>`;
}

const pct = (ratio: number | null) => (ratio === null ? '—' : `${(ratio * 100).toFixed(1)} %`);

async function advicePanel(deps: ConsoleDeps): Promise<Html> {
  const advice = await deps.tenantry.dbops.adviseIndexes({ limit: 10 });
  if (!advice.available)
    return html`<div id="advice"><p class="muted">${advice.reason ?? 'Index advice is not available.'}</p></div>`;
  return html`<div id="advice">${
    advice.suggestions.length
      ? html`<div class="scroll" role="region" aria-label="Index suggestions" tabindex="0"><table><thead><tr><th scope="col">Table</th><th scope="col">Index</th><th scope="col">Why</th></tr></thead><tbody>${advice.suggestions.map(
          (s) => html`<tr><td>${s.table}</td><td><code>${s.sql}</code></td><td>${s.reason}</td></tr>`,
        )}</tbody></table></div>`
      : html`<p class="muted">No index to suggest${advice.hypopg ? ' (checked with hypothetical indexes)' : ''}.</p>`
  }</div>`;
}

async function databasePage(
  deps: ConsoleDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  shown: { error?: string; run?: Readonly<MaintenanceRunState> | undefined } = {},
  status = 200,
): Promise<FastifyReply> {
  const { dbops } = deps.tenantry;
  const [health, stats, slow] = await Promise.all([dbops.health(), dbops.stats(), dbops.slowQueries({ limit: 10 })]);
  const tables = [...stats.tables].sort((a, b) => b.totalBytes - a.totalBytes).slice(0, 15);
  const session = sessionOf(req);
  const body = html`<h1>Database</h1>
${shown.error ? message('error', shown.error) : ''}
<div class="grid">
<section class="panel" aria-labelledby="health-heading"><h2 id="health-heading">Health</h2>
<p><span class="status status-${health.status === 'ok' ? 'active' : health.status === 'warning' ? 'suspended' : 'failed'}" id="db-health">${health.status}</span>
PostgreSQL ${health.serverVersion}</p>
${health.problems.length ? html`<ul>${health.problems.map((p) => html`<li>${p}</li>`)}</ul>` : ''}
<dl class="facts">
<dt>Connections</dt><dd>${health.connections.used} of ${health.connections.max} (${pct(health.connections.ratio)})</dd>
<dt>Long-running</dt><dd>${health.longRunning.length}</dd>
<dt>Idle in transaction</dt><dd>${health.idleInTransaction.length}</dd>
<dt>Blocked</dt><dd>${health.blocked.length}</dd>
<dt>Wraparound</dt><dd>${formatNumber(health.wraparound.xidAge)} xids (${pct(health.wraparound.ratio)})</dd>
<dt>Replicas</dt><dd>${health.replication.length}${health.inRecovery ? ' (this server is a replica)' : ''}</dd>
<dt>Cache hit ratio</dt><dd>${pct(stats.cacheHitRatio)}</dd>
</dl></section>
<section class="panel" aria-labelledby="maint-heading"><h2 id="maint-heading">Maintenance</h2>
<form method="post" action="/console/database/maintain">${csrfField(session)}
<div class="form-row">
<div><label for="maint-op">Operation</label><select id="maint-op" name="operation">${OPERATIONS.map((o) => html`<option>${o}</option>`)}</select></div>
<div><label for="maint-tenant">Tenant (empty: the shared tables)</label><input id="maint-tenant" name="tenant" maxlength="100"></div>
</div><div class="form-row">
<div><label for="maint-confirm">Type the operation's name to confirm</label><input id="maint-confirm" name="confirm" autocomplete="off" required></div>
<button type="submit">Run</button></div></form>
${maintenanceProgress(shown.run ?? deps.maintenanceRuns.latest)}
<p class="muted">Reindex, <code>VACUUM FULL</code> and index builds lock or rewrite tables: run them from the CLI or the API.</p>
</section>
</div>
<section class="panel" aria-labelledby="tables-heading"><h2 id="tables-heading">Largest tables</h2>
<div class="scroll" role="region" aria-label="Largest tables" tabindex="0"><table><thead><tr><th scope="col">Table</th><th scope="col" class="num">Live rows</th><th scope="col" class="num">Dead</th>
<th scope="col" class="num">Size</th><th scope="col" class="num hide-narrow">Index size</th><th scope="col" class="num hide-narrow">Seq scans</th></tr></thead>
<tbody>${tables.map(
    (
      t,
    ) => html`<tr><td><code>${t.table}</code></td><td class="num">${formatNumber(t.liveRows)}</td><td class="num">${pct(t.deadRatio)}</td>
<td class="num">${formatBytes(t.totalBytes)}</td><td class="num hide-narrow">${formatBytes(t.indexBytes)}</td><td class="num hide-narrow">${formatNumber(t.seqScans)}</td></tr>`,
  )}</tbody></table></div>
${stats.unusedIndexes.length ? html`<p>${stats.unusedIndexes.length} indexes never used; ${stats.duplicateIndexes.length} duplicate groups.</p>` : ''}
</section>
<section class="panel" aria-labelledby="slow-heading"><h2 id="slow-heading">Slow queries</h2>
${
  slow.available
    ? html`<div class="scroll" role="region" aria-label="Slow queries" tabindex="0"><table><thead><tr><th scope="col">Query</th><th scope="col" class="num">Calls</th><th scope="col" class="num">Mean ms</th><th scope="col" class="num">Total ms</th></tr></thead><tbody>${slow.statements.map(
        (s) =>
          html`<tr><td><code>${s.query.slice(0, 300)}</code></td><td class="num">${formatNumber(s.calls)}</td><td class="num">${s.meanMs.toFixed(2)}</td><td class="num">${formatNumber(Math.round(s.totalMs))}</td></tr>`,
      )}</tbody></table></div>`
    : html`<p class="muted">${slow.reason ?? 'pg_stat_statements is not available.'}</p>`
}
</section>
<section class="panel" aria-labelledby="advice-heading"><h2 id="advice-heading">Index advice</h2>
<div id="advice" hx-get="/console/database/advice" hx-trigger="load" hx-swap="outerHTML"><p class="muted">Asking the planner…
<a href="/console/database/advice">See the advice</a></p></div>
</section>`;
  return sendPage(reply, layout({ title: 'Database', nav: 'database', session, body }), status);
}

/**
 * `GET /console/database` (`?run=` shows that maintenance run), the lazily loaded index
 * advice, `POST /console/database/maintain` (starts a run in the background) and the polled
 * `GET /console/database/maintenance/{run}`.
 */
export async function databaseRoutes(app: FastifyInstance, deps: ConsoleDeps): Promise<void> {
  app.get<{ Querystring: { run?: string } }>('/console/database', { schema: { hide: true } }, (req, reply) =>
    databasePage(deps, req, reply, {
      run: typeof req.query.run === 'string' ? deps.maintenanceRuns.get(req.query.run) : undefined,
    }),
  );
  app.get('/console/database/advice', { schema: { hide: true } }, async (req, reply) => {
    const panel = await advicePanel(deps);
    if (isHtmx(req)) return sendPage(reply, panel);
    const body = html`<h1>Index advice</h1><section class="panel">${panel}</section>`;
    return sendPage(reply, layout({ title: 'Index advice', nav: 'database', session: sessionOf(req), body }));
  });
  app.get<{ Params: { run: string } }>(
    '/console/database/maintenance/:run',
    { schema: { hide: true } },
    async (req, reply) => {
      const run = UUID.test(req.params.run) ? deps.maintenanceRuns.get(req.params.run) : undefined;
      if (!run) throw new TenantryError('NOT_FOUND', 'no such maintenance run on this server');
      if (!isHtmx(req)) return reply.redirect(`/console/database?run=${run.id}`, 303);
      return sendPage(reply, maintenanceProgress(run));
    },
  );
  app.post<{ Body: Record<string, string> | undefined }>(
    '/console/database/maintain',
    { schema: { hide: true } },
    async (req, reply) => {
      const operation = req.body?.operation as Operation;
      const refuse = (error: TenantryError) =>
        databasePage(deps, req, reply, { error: `Not run: ${error.message} (${error.code})` }, error.status);
      if (!OPERATIONS.includes(operation))
        return refuse(new TenantryError('INVALID_INPUT', 'choose analyze or vacuum'));
      if (req.body?.confirm !== operation) {
        return refuse(new TenantryError('INVALID_INPUT', `type ${operation} to confirm`));
      }
      const wanted = req.body?.tenant?.trim() || undefined;
      try {
        // Checked here, so that bad input is refused on the form rather than as a failed run.
        const tenant = wanted === undefined ? undefined : await deps.tenantry.tenants.get(wanted);
        if (tenant?.tier === 'pool') {
          throw new TenantryError(
            'INVALID_INPUT',
            `tenant ${tenant.slug} is in the pool tier: its rows are in the shared tables`,
          );
        }
        const run = deps.maintenanceRuns.start({ operation, tenant: tenant?.slug, ...consoleActor(req) }, (r) =>
          deps.tenantry.dbops.maintain(r),
        );
        req.log.info(
          { actor: run.actor, operation, target: run.tenant ?? 'shared' },
          'maintenance started from the console',
        );
        return redirect(req, reply, `/console/database?run=${run.id}`);
      } catch (error) {
        if (error instanceof TenantryError && error.status < 500) return refuse(error);
        throw error;
      }
    },
  );
}
