import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TenantryError } from '../../errors/catalog.ts';
import { FLEET_MAX_CONCURRENCY } from '../../fleet/fleet-run.ts';
import { isHtmx, redirect } from '../console-auth.ts';
import type { FleetRunState } from '../fleet-runs.ts';
import { type Html, html } from '../html.ts';
import { csrfField, layout, message, shortDate } from '../layout.ts';
import { type ConsoleDeps, consoleActor, sendPage, sessionOf } from '../page.ts';

interface TargetCount {
  kind: string;
  state: string;
  total: number;
  at_head: number;
  failed: number;
}

/** Targets per kind and state, at head / behind / failed, from `tenantry.targets` in one scan. */
async function targetCounts(deps: ConsoleDeps, head: number): Promise<TargetCount[]> {
  const { rows } = await deps.tenantry.adminPool.query<TargetCount>(
    `SELECT kind, state, count(*)::int AS total,
            count(*) FILTER (WHERE applied_count >= $1)::int AS at_head,
            count(*) FILTER (WHERE applied_count < $1 AND last_error IS NOT NULL)::int AS failed
       FROM tenantry.targets GROUP BY kind, state ORDER BY kind, state`,
    [head],
  );
  return rows;
}

/** The progress panel; polled by htmx every second while the run goes on. */
function progress(run: Readonly<FleetRunState> | undefined): Html {
  if (!run) return html`<div id="fleet-progress"><p class="muted">No migration was started from this server.</p></div>`;
  const running = run.finishedAt === undefined;
  const report = run.report;
  const canary = report?.canary;
  return html`<div id="fleet-progress"${running ? html` hx-get="/console/fleet/progress" hx-trigger="every 1s" hx-swap="outerHTML"` : ''} aria-live="polite">
<p>Started ${shortDate(run.startedAt)} by <code>${run.actor}</code>${run.canary !== undefined ? html`, canary <code>${JSON.stringify(run.canary)}</code>` : ''}.</p>
<label for="fleet-bar">Targets done</label>
<progress id="fleet-bar" max="${Math.max(run.total, 1)}" value="${run.total ? run.done : running ? 0 : 1}">${run.done} of ${run.total}</progress>
<p id="fleet-counts"><strong data-done="${run.done}" data-total="${run.total}">${run.done} of ${run.total}</strong> targets done, ${run.failed} failed${running ? ' — running…' : ''}.</p>
${run.error ? message('error', `The run stopped: ${run.error}`) : ''}
${
  report
    ? html`<p id="fleet-result" data-state="${report.failed.length ? 'failed' : 'done'}">Finished in ${Math.round(report.durationMs)} ms: ${report.migrated} migrated, ${report.skipped} skipped, ${report.failed.length} failed${
        canary ? html`; canary of ${canary.size} ${canary.passed ? 'passed' : 'failed: the rest was not touched'}` : ''
      }.</p>
${
  report.failed.length
    ? html`<div class="scroll" role="region" aria-label="Failed targets" tabindex="0"><table><thead><tr><th scope="col">Target</th><th scope="col">Tenant</th><th scope="col">Error</th></tr></thead><tbody>${report.failed.map(
        (f) => html`<tr><td><code>${f.target}</code></td><td>${f.tenant ?? '—'}</td><td>${f.error}</td></tr>`,
      )}</tbody></table></div>`
    : ''
}`
    : ''
}
</div>`;
}

async function fleetPage(
  deps: ConsoleDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  error?: string,
): Promise<FastifyReply> {
  const { tenantry } = deps;
  const plan = await tenantry.planFleet();
  const [counts, placements, placementTenants] = await Promise.all([
    targetCounts(deps, plan.head),
    tenantry.placements.list(),
    tenantry.adminPool.query<{ placement_id: string; tenants: number }>(
      `SELECT placement_id, count(*)::int AS tenants FROM tenantry.tenants WHERE status <> 'deleted' GROUP BY placement_id`,
    ),
  ]);
  const perPlacement = new Map(placementTenants.rows.map((r) => [r.placement_id, r.tenants]));
  const pool = tenantry.poolMap.stats();
  const session = sessionOf(req);
  const behind = plan.targets.slice(0, 100);
  const body = html`<h1>Fleet</h1>
${error ? message('error', error) : ''}
<section class="panel" aria-labelledby="state-heading"><h2 id="state-heading">Migration state</h2>
<p>Head: <strong>${plan.head}</strong> tenant migrations, last <code>${plan.version ?? '—'}</code>.
<span id="behind-count" data-behind="${plan.targets.length}">${plan.targets.length}</span> targets behind.</p>
<div class="scroll" role="region" aria-label="Targets by kind and state" tabindex="0"><table><thead><tr><th scope="col">Kind</th><th scope="col">State</th><th scope="col" class="num">Targets</th><th scope="col" class="num">At head</th>
<th scope="col" class="num">Behind</th><th scope="col" class="num">Failed</th></tr></thead><tbody>${counts.map(
    (
      c,
    ) => html`<tr><td>${c.kind}</td><td>${c.state}</td><td class="num">${c.total}</td><td class="num">${c.at_head}</td>
<td class="num">${c.total - c.at_head - c.failed}</td><td class="num">${c.failed}</td></tr>`,
  )}</tbody></table></div>
${
  behind.length
    ? html`<h3>Behind${plan.targets.length > behind.length ? html` (first ${behind.length} of ${plan.targets.length})` : ''}</h3>
<div class="scroll" role="region" aria-label="Targets behind" tabindex="0"><table id="behind"><thead><tr><th scope="col">Target</th><th scope="col">Tenant</th><th scope="col">State</th><th scope="col">Pending</th><th scope="col">Error</th></tr></thead><tbody>${behind.map(
        (t) => html`<tr><td><code>${t.target}</code></td><td>${t.tenantSlug ?? '—'}</td>
<td>${t.lastError ? html`<span class="status status-failed">failed</span>` : html`<span class="status status-behind">behind</span>`}</td>
<td>${t.pending.join(', ')}</td><td>${t.lastError ?? ''}</td></tr>`,
      )}</tbody></table></div>`
    : html`<p class="status status-head" id="all-at-head">Every target is at head.</p>`
}
</section>
<section class="panel" aria-labelledby="run-heading"><h2 id="run-heading">Run a migration</h2>
<form method="post" action="/console/fleet/migrate" class="form-row">${csrfField(session)}
<div><label for="canary">Canary cohort (targets first, alone)</label><input id="canary" name="canary" type="number" min="0" max="10000" value="2"></div>
<div><label for="concurrency">Concurrency</label><input id="concurrency" name="concurrency" type="number" min="1" max="${FLEET_MAX_CONCURRENCY}" value="4"></div>
<button type="submit"${deps.fleetRuns.running ? html` disabled` : ''}>Migrate the fleet</button>
</form>
${progress(deps.fleetRuns.current)}
</section>
<div class="grid">
<section class="panel" aria-labelledby="placements-heading"><h2 id="placements-heading">Placements</h2>
<div class="scroll" role="region" aria-label="Placements" tabindex="0"><table><thead><tr><th scope="col">Name</th><th scope="col">Tier</th><th scope="col">Server</th><th scope="col" class="num">Tenants</th></tr></thead><tbody>${placements.map(
    (p) =>
      html`<tr><td>${p.name}</td><td>${p.tier}</td><td>${p.hasCredentials ? 'own server' : 'main database'}</td><td class="num">${perPlacement.get(p.id) ?? 0}</td></tr>`,
  )}</tbody></table></div></section>
<section class="panel" aria-labelledby="pool-heading"><h2 id="pool-heading">Warm pool, templates and the pool map</h2>
<dl class="facts">
<dt>Warm schemas</dt><dd>${counts.filter((c) => c.state === 'warm').reduce((a, c) => a + c.total, 0)}</dd>
<dt>Templates</dt><dd>${counts.filter((c) => c.kind === 'template').reduce((a, c) => a + c.total, 0)} (${counts
    .filter((c) => c.kind === 'template')
    .reduce((a, c) => a + c.at_head, 0)} at head)</dd>
<dt>Pool map budget</dt><dd>${pool.connectionsOpen} of ${tenantry.config.tenantDatabases.max} connections open, ${pool.connectionsInUse} in use</dd>
<dt>Pools open</dt><dd>${pool.poolsOpen}</dd>
<dt>Waiting</dt><dd>${pool.waiters}</dd>
<dt>Evictions</dt><dd>${pool.evictions}</dd>
</dl><p class="muted">The pool map figures are this server's (each instance has its own budget).</p></section>
</div>`;
  return sendPage(reply, layout({ title: 'Fleet', nav: 'fleet', session, body }), error ? 400 : 200);
}

/** `GET /console/fleet`, `POST /console/fleet/migrate` and the polled `GET /console/fleet/progress`. */
export async function fleetRoutes(app: FastifyInstance, deps: ConsoleDeps): Promise<void> {
  app.get('/console/fleet', { schema: { hide: true } }, (req, reply) => fleetPage(deps, req, reply));
  app.get('/console/fleet/progress', { schema: { hide: true } }, async (req, reply) => {
    if (!isHtmx(req)) return reply.redirect('/console/fleet', 303);
    return sendPage(reply, progress(deps.fleetRuns.current));
  });
  app.post<{ Body: Record<string, string> | undefined }>(
    '/console/fleet/migrate',
    { schema: { hide: true } },
    async (req, reply) => {
      const canary = Number(req.body?.canary ?? 0);
      const concurrency = Number(req.body?.concurrency ?? 4);
      if (!Number.isInteger(canary) || canary < 0 || canary > 10_000) {
        return fleetPage(deps, req, reply, 'The canary cohort is a whole number from 0 to 10000.');
      }
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > FLEET_MAX_CONCURRENCY) {
        return fleetPage(deps, req, reply, `Concurrency is a whole number from 1 to ${FLEET_MAX_CONCURRENCY}.`);
      }
      try {
        const { actor } = consoleActor(req);
        req.log.info({ actor, canary, concurrency }, 'fleet migration started from the console');
        deps.fleetRuns.start(actor, { ...(canary > 0 ? { canary } : {}), concurrency }, (o) =>
          deps.tenantry.migrateFleet(o),
        );
      } catch (error) {
        if (error instanceof TenantryError && error.code === 'LOCK_BUSY')
          return fleetPage(deps, req, reply, error.message);
        throw error;
      }
      return redirect(req, reply, '/console/fleet');
    },
  );
}
