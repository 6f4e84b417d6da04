import type { FuzzContext } from './context.ts';
import { type ItemState, type Op, type Row, remember, type TenantState } from './model.ts';
import type { Rng } from './rng.ts';
import { markerOf, UUID } from './text.ts';

/** Operations over HTTP, through the reference server on real sockets, and the key rotation beside them. */

const REVOCATION_VISIBLE_MS = 1500;

/** One request; a 5xx, another tenant's text or id in the answer are findings whatever the route. */
async function request(
  c: FuzzContext,
  op: Op,
  method: string,
  path: string,
  options: { key?: string; body?: unknown; headers?: Record<string, string> } = {},
  // biome-ignore lint/suspicious/noExplicitAny: the JSON the server sent, checked field by field
): Promise<{ status: number; body: any }> {
  const t = op.tenant;
  const headers: Record<string, string> = { authorization: `Bearer ${options.key ?? t.primary.key}` };
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  if (body !== undefined) headers['content-type'] = 'application/json';
  Object.assign(headers, options.headers);
  const res = await c.http.send({ method, path, headers, ...(body !== undefined ? { body } : {}) }, op.kind);
  c.checker.checks++;
  if (res.status >= 500) c.checker.fail(op, 'anomaly', `${res.status} from the server`, res.text.slice(0, 300));
  const foreign = c.checker.foreignMarker(t, res.text);
  if (foreign !== undefined) {
    c.checker.fail(
      op,
      'leak',
      `text of another tenant in an answer (${c.model.tenants[foreign]?.record.tier} tier)`,
      res.text.slice(0, 300),
    );
  }
  // Echoing what the caller sent reveals nothing; any other id of another tenant does.
  const sent = `${path} ${body ?? ''} ${JSON.stringify(options.headers ?? {})}`.toLowerCase();
  for (const [match] of res.text.matchAll(UUID)) {
    const uuid = match.toLowerCase();
    if (sent.includes(uuid) || uuid === t.record.id || t.live.has(uuid) || t.gone.has(uuid)) continue;
    const other = c.model.byId.get(uuid) ?? c.model.owners(uuid, t)[0];
    if (other && other !== t) c.checker.fail(op, 'leak', 'id of another tenant in an answer', res.text.slice(0, 300));
  }
  let parsed: unknown;
  try {
    parsed = res.text ? JSON.parse(res.text) : undefined;
  } catch {
    parsed = res.text;
  }
  return { status: res.status, body: parsed };
}

function expectStatus(c: FuzzContext, op: Op, status: number, expected: readonly number[], what: string): boolean {
  c.checker.checks++;
  if (expected.includes(status)) return true;
  if (status < 500) c.checker.fail(op, 'anomaly', `${what}: ${status}, expected ${expected.join(' or ')}`, op.detail);
  return false;
}

/** The tenant's key for this request: mostly the primary; sometimes the spare (which a rotation may revoke meanwhile). */
function pickKey(t: TenantState, rng: Rng): string {
  return rng.chance(0.1) && !t.rotating ? t.spare.key : t.primary.key;
}

/** A 401 for a key revoked while the request ran is a refusal, not a finding. */
function revokedMeanwhile(t: TenantState, key: string, status: number): boolean {
  return status === 401 && key !== t.primary.key && (t.rotating || t.revoked.some((r) => r.key === key));
}

export async function httpCreate(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const v = c.model.newVersion(op, rng);
  const m = markerOf(v.title) as string;
  const key = pickKey(t, rng);
  op.detail = `POST /v1/items ${JSON.stringify(v)}`;
  t.inflight.set(m, v);
  try {
    const res = await request(c, op, 'POST', '/v1/items', { key, body: v });
    if (revokedMeanwhile(t, key, res.status)) return;
    if (!expectStatus(c, op, res.status, [201], 'create')) {
      remember(t.uncertain, m);
      return;
    }
    const row: Row = res.body;
    c.checker.checks++;
    if (row?.title !== v.title || row.description !== v.description || typeof row.id !== 'string') {
      c.checker.fail(op, 'anomaly', 'created item differs from the request', JSON.stringify(row).slice(0, 300));
      remember(t.uncertain, m);
    } else {
      c.model.acknowledgeInsert(t, row.id, v);
    }
  } catch (error) {
    remember(t.uncertain, m);
    throw error;
  } finally {
    t.inflight.delete(m);
  }
}

export async function httpGet(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const id = c.model.anyOwnId(t, rng);
  if (!id) return httpList(c, op);
  const key = pickKey(t, rng);
  op.detail = `GET /v1/items/${id}`;
  const res = await request(c, op, 'GET', `/v1/items/${id}`, { key });
  if (revokedMeanwhile(t, key, res.status)) return;
  if (!expectStatus(c, op, res.status, [200, 404], 'get')) return;
  c.checker.checkOne(op, id, res.status === 200 ? [res.body] : []);
}

export async function httpList(c: FuzzContext, op: Op): Promise<void> {
  op.kind = 'http.list';
  const t = op.tenant;
  const key = t.primary.key;
  op.detail = 'GET /v1/items?limit=100';
  const res = await request(c, op, 'GET', '/v1/items?limit=100', { key });
  if (revokedMeanwhile(t, key, res.status)) return;
  if (!expectStatus(c, op, res.status, [200], 'list')) return;
  const rows: Row[] = res.body?.items ?? [];
  for (const row of rows) c.checker.checkRow(op, row);
  if (!res.body?.nextCursor) c.checker.checkComplete(op, rows);
}

export async function httpSearch(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const term = c.model.searchTerm(op, rng);
  const key = pickKey(t, rng);
  op.detail = `GET /v1/items?q=${JSON.stringify(term.q)}`;
  const res = await request(c, op, 'GET', `/v1/items?limit=100&q=${encodeURIComponent(term.q)}`, { key });
  if (revokedMeanwhile(t, key, res.status)) return;
  // A query of nothing but white space or punctuation may be refused as bad input.
  if (!expectStatus(c, op, res.status, [200, 400], 'search') || res.status === 400) return;
  c.checker.checkSearch(op, term, res.body?.items ?? []);
}

export async function httpPatch(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const id = c.model.ownItem(t, rng) as string;
  const item = t.live.get(id) as ItemState;
  const v = c.model.newVersion(op, rng);
  const key = pickKey(t, rng);
  op.detail = `PATCH /v1/items/${id} ${JSON.stringify(v)}`;
  item.busy = v;
  try {
    const res = await request(c, op, 'PATCH', `/v1/items/${id}`, { key, body: v });
    item.busy = undefined;
    if (revokedMeanwhile(t, key, res.status)) return;
    if (!expectStatus(c, op, res.status, [200], 'patch')) {
      c.model.uncertainItem(t, id);
      return;
    }
    c.checker.checks++;
    if (res.body?.title !== v.title || res.body?.description !== v.description) {
      c.checker.fail(op, 'anomaly', 'patched item differs from the request', JSON.stringify(res.body).slice(0, 300));
      c.model.uncertainItem(t, id);
      return;
    }
    c.model.acknowledgeUpdate(t, id, v);
  } catch (error) {
    item.busy = undefined;
    c.model.uncertainItem(t, id);
    throw error;
  }
}

export async function httpDelete(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const id = c.model.ownItem(t, rng) as string;
  const item = t.live.get(id) as ItemState;
  const key = pickKey(t, rng);
  op.detail = `DELETE /v1/items/${id}`;
  item.busy = 'delete';
  try {
    const res = await request(c, op, 'DELETE', `/v1/items/${id}`, { key });
    item.busy = undefined;
    if (revokedMeanwhile(t, key, res.status)) return;
    if (!expectStatus(c, op, res.status, [204], 'delete')) {
      c.model.uncertainItem(t, id);
      return;
    }
    c.model.acknowledgeDelete(t, id);
  } catch (error) {
    item.busy = undefined;
    c.model.uncertainItem(t, id);
    throw error;
  }
}

/** Another tenant's item id in the path: 404, exactly like a missing one, whatever the method. */
export async function httpForeignId(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  await c.model.withForeignId(op.tenant, rng, (foreign) => httpForeignIdOp(c, op, rng, foreign));
}

async function httpForeignIdOp(
  c: FuzzContext,
  op: Op,
  rng: Rng,
  foreign: { id: string; owner: TenantState } | undefined,
): Promise<void> {
  const id = foreign?.id ?? rng.uuid();
  const method = rng.pick(['GET', 'GET', 'PATCH', 'DELETE'] as const);
  const body = method === 'PATCH' ? c.model.newVersion(op, rng) : undefined;
  op.detail = `${method} /v1/items/${id} (${foreign ? `${foreign.owner.record.slug}'s` : 'random'})`;
  const res = await request(c, op, method, `/v1/items/${id}`, body ? { body } : {});
  c.checker.checks++;
  if (res.status < 300)
    c.checker.fail(op, 'leak', `${method} of another tenant’s item answered ${res.status}`, op.detail);
  else expectStatus(c, op, res.status, [404], 'foreign id');
}

/** `X-Tenant-ID` naming another tenant than the key's: 403, never data. */
export async function httpTenantHeaderMismatch(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const u = c.model.other(t, rng) as TenantState;
  const claim = rng.pick([u.record.id, u.record.slug, u.record.slug.toUpperCase(), u.record.id.toUpperCase()]);
  const own = c.model.ownItem(t, rng);
  const path = rng.chance(0.5) || !own ? '/v1/items?limit=100' : `/v1/items/${own}`;
  op.detail = `GET ${path} with X-Tenant-ID ${claim} (${u.record.tier})`;
  const res = await request(c, op, 'GET', path, { headers: { 'x-tenant-id': claim } });
  c.checker.checks++;
  if (res.status < 300) c.checker.fail(op, 'leak', 'mismatched X-Tenant-ID answered with data', op.detail);
  else expectStatus(c, op, res.status, [403], 'mismatched X-Tenant-ID');
}

/** A body naming another tenant: refused as bad input (the schemas are strict). */
export async function httpBodyTenantId(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const u = c.model.other(t, rng) as TenantState;
  const field = rng.pick(['tenant_id', 'tenantId', 'tenant']);
  const v = c.model.newVersion(op, rng);
  const own = c.model.ownItem(t, rng);
  const patch = own !== undefined && rng.chance(0.5);
  const body = { ...(patch ? { title: v.title } : v), [field]: u.record.id };
  const path = patch ? `/v1/items/${own}` : '/v1/items';
  op.detail = `${patch ? 'PATCH' : 'POST'} ${path} ${JSON.stringify(body).slice(0, 200)}`;
  const item = patch ? t.live.get(own as string) : undefined;
  const m = markerOf(v.title) as string;
  if (item) item.busy = { title: v.title, description: item.description };
  else t.inflight.set(m, v);
  try {
    const res = await request(c, op, patch ? 'PATCH' : 'POST', path, { body });
    if (res.status < 300) {
      // Accepted: where it went is for the sweep to say; the model cannot know.
      c.checker.fail(op, 'anomaly', `body with ${field} accepted`, op.detail);
      if (item) item.uncertain = true;
      else remember(t.uncertain, m);
    } else {
      expectStatus(c, op, res.status, [400], `body with ${field}`);
    }
  } finally {
    if (item) item.busy = undefined;
    else t.inflight.delete(m);
  }
}

/** A key revoked more than the documented propagation ago: 401. */
export async function httpRevokedKey(c: FuzzContext, op: Op, rng: Rng): Promise<void> {
  const t = op.tenant;
  const now = Date.now();
  const old = t.revoked.filter((r) => now - r.at > REVOCATION_VISIBLE_MS);
  const pick = old.length ? rng.pick(old) : rng.pick(t.revoked);
  const visible = now - pick.at > REVOCATION_VISIBLE_MS;
  op.detail = `GET /v1/items with a key revoked ${now - pick.at} ms ago`;
  const res = await request(c, op, 'GET', '/v1/items?limit=100', { key: pick.key });
  c.checker.checks++;
  if (res.status === 401) return;
  if (visible) {
    c.checker.fail(op, res.status < 300 ? 'leak' : 'anomaly', `revoked key answered ${res.status}`, op.detail);
    return;
  }
  // Within the propagation window the key may still work, and then only for its own tenant.
  if (res.status === 200) for (const row of res.body?.items ?? []) c.checker.checkRow(op, row);
}

/** Creates a new spare key and revokes the old one (the revocation runs while requests use it). */
export async function rotateKey(c: FuzzContext, op: Op): Promise<void> {
  const t = op.tenant;
  if (t.rotating) return;
  t.rotating = true;
  const old = t.spare;
  op.detail = `rotate the spare key ${old.id}`;
  try {
    const created = await c.tenantry.apiKeys.create(t.record.id, {
      name: `spare ${op.index}`,
      environment: 'test',
      scopes: ['items:read', 'items:write'],
    });
    t.spare = { key: created.key, id: created.record.id };
    await c.tenantry.apiKeys.revoke(t.record.id, old.id);
    t.revoked.push({ key: old.key, at: Date.now() });
    if (t.revoked.length > 4) t.revoked.shift();
  } finally {
    t.rotating = false;
  }
}
