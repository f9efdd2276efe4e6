import type { Router } from '@koa/router';
import type { Context } from 'koa';
import { parseQuery, timeRange } from '../api/query.js';
import type { RuleRecord, TrackingRecord } from '../engine/decision.js';
import { ScalerError } from '../errors.js';
import { policyKey, type PolicyService } from '../policy/policy-service.js';
import type { HistoryQuery, HistoryRow, Storage } from '../storage/storage.js';
import { HistoryPages } from './history-pages.js';

export const HISTORY_ACTIONS = ['scale_up', 'scale_down', 'scheduled', 'fallback', 'none'] as const;

export const HISTORY_STATUSES = ['succeeded', 'failed', 'blocked'] as const;

export const HISTORY_QUERY = {
  limit: { type: 'int', min: 1, max: 1000 },
  cursor: { type: 'string', maxLength: 512 },
  policy_id: { type: 'string', pattern: /^[0-9a-fA-F-]{36}$/ },
  policy_name: { type: 'string', maxLength: 253 },
  action: { type: 'enum', values: HISTORY_ACTIONS },
  status: { type: 'enum', values: HISTORY_STATUSES },
  since: { type: 'time' },
  until: { type: 'time' },
  dry_run: { type: 'bool' },
} as const;

/** A policy's own history route takes every filter but the policy's. */
const POLICY_HISTORY_QUERY = (({ policy_id: _id, policy_name: _name, ...rest }) => rest)(HISTORY_QUERY);

function historyQuery(raw: Record<string, string | string[] | undefined>, policyId?: string): HistoryQuery {
  const q: { [K in keyof typeof HISTORY_QUERY]?: K extends 'limit' ? number : K extends 'dry_run' ? boolean : string } =
    policyId === undefined ? parseQuery(raw, HISTORY_QUERY) : parseQuery(raw, POLICY_HISTORY_QUERY);
  return {
    limit: q.limit ?? 100,
    cursor: q.cursor,
    policy_id: policyId ?? q.policy_id?.toLowerCase(),
    policy_name: q.policy_name,
    action: q.action as HistoryQuery['action'],
    status: q.status as HistoryQuery['status'],
    since: q.since,
    until: q.until,
    dry_run: q.dry_run,
  };
}

/** The most decisions one timeline answers (the newest, with `truncated: true` beyond). */
export const MAX_TIMELINE_ROWS = 50_000;

/** The longest range a timeline spans. */
export const MAX_TIMELINE_DAYS = 31;

const TIMELINE_QUERY = { since: { type: 'time' }, until: { type: 'time' } } as const;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A policy's recorded decisions over a range, oldest first, each with its rules' values and
 * verdicts but not the whole record (GET /history/:id has it): what a chart of a week needs, in
 * one answer a tenth the size of the history pages.
 */
function timelineOf(rows: readonly HistoryRow[]): { rules: unknown[]; target_tracking: unknown[]; decisions: unknown[] } {
  const rules = new Map<string, Pick<RuleRecord, 'id' | 'direction' | 'metric' | 'operator' | 'threshold'>>();
  const tracking = new Map<string, { id: string; metric: string; kind: string; target: number }>();
  const decisions = rows.map((r) => {
    const details = r.details as { rules?: RuleRecord[]; target_tracking?: TrackingRecord[] } | null;
    const values: Record<string, number | null> = {};
    const held: string[] = [];
    for (const rule of details?.rules ?? []) {
      rules.set(rule.id, { id: rule.id, direction: rule.direction, metric: rule.metric, operator: rule.operator, threshold: rule.threshold });
      values[rule.id] = rule.value;
      if (rule.held) held.push(rule.id);
    }
    for (const t of details?.target_tracking ?? []) {
      tracking.set(t.id, { id: t.id, metric: t.metric, kind: t.kind, target: t.target });
      values[t.id] = t.value;
    }
    const { details: _details, policy_id: _p, policy_name: _n, target_type: _t, target_id: _i, ...rest } = r;
    return { ...rest, has_record: details !== null, values, held };
  });
  return { rules: [...rules.values()], target_tracking: [...tracking.values()], decisions };
}

/**
 * Sends a page of history: the rows' stored JSON texts joined as they are (kept in memory as
 * bytes once read, see HistoryPages), so a page of records is neither parsed nor serialised again
 * here. The same JSON, and the same Content-Type, as Koa's serialisation of
 * `{ history, next_cursor }` would give.
 *
 * A client that accepts gzip (`Accept-Encoding`, q-values honoured) gets a page it asks for again
 * compressed, about a fourteenth of its size, kept so by HistoryPages; a page asked for once, and
 * any page for another client, is sent as it is. Every answer says `Vary: Accept-Encoding`.
 *
 * The pieces are written to the response corked (one writev), not joined first: Koa sends one
 * body, and joining 190 KB per answer halved what a plain Node server answered a second. So this
 * route answers itself (`ctx.respond = false`) once the page is read; an error before that is
 * still answered by the problem middleware.
 */
async function sendHistoryPage(ctx: Context, pages: HistoryPages, query: HistoryQuery, ifEmpty?: () => Promise<unknown>): Promise<void> {
  const { parts, bytes, rows, gzip } = await pages.answer(query, ctx.acceptsEncodings('gzip', 'identity') === 'gzip');
  if (rows === 0) await ifEmpty?.();
  ctx.status = 200;
  ctx.type = 'application/json';
  ctx.vary('Accept-Encoding');
  if (gzip) ctx.set('Content-Encoding', 'gzip');
  ctx.length = bytes;
  ctx.respond = false;
  const res = ctx.res;
  // A client gone meanwhile gets nothing (as Koa's own answer would not be written).
  if (!ctx.writable) return;
  if (ctx.method === 'HEAD') {
    res.end();
    return;
  }
  res.cork();
  for (const part of parts) res.write(part);
  res.end();
}

/** Routes for /history and /policies/:id/history: newest first, keyset cursor. */
export function registerHistoryRoutes(router: Router, storage: Storage, policies: PolicyService, cacheBytes?: number): void {
  const pages = new HistoryPages(storage, cacheBytes);
  router.get('/history', async (ctx) => {
    await sendHistoryPage(ctx, pages, historyQuery(ctx.query));
  });

  router.get('/history/:id', async (ctx) => {
    const id = ctx.params['id'] ?? '';
    if (!UUID_RE.test(id)) throw new ScalerError('BAD_REQUEST', `"${id.slice(0, 100)}" is not a history row id (a UUID)`, [{ field: '/path/id', message: 'must be a UUID' }]);
    const row = await storage.getHistoryRow(id.toLowerCase());
    if (row === undefined) throw new ScalerError('NOT_FOUND', `no history row with id ${id}`);
    ctx.body = row;
  });

  router.get('/policies/:id/timeline', async (ctx) => {
    const policyId = await policies.idOf(ctx.params['id'] ?? '');
    const q = parseQuery(ctx.query, TIMELINE_QUERY);
    const { since, until } = timeRange(q, { now: Date.now(), defaultSeconds: 86_400, maxDays: MAX_TIMELINE_DAYS });
    const page = await storage.listHistory({ policy_id: policyId, since: new Date(since).toISOString(), until: new Date(until).toISOString(), limit: MAX_TIMELINE_ROWS });
    ctx.body = {
      policy_id: policyId,
      since: new Date(since).toISOString(),
      until: new Date(until).toISOString(),
      truncated: page.next_cursor !== null,
      ...timelineOf(page.rows.reverse()),
    };
  });

  router.get('/policies/:id/history', async (ctx) => {
    const path = ctx.params['id'] ?? '';
    const { by, value } = policyKey(path);
    if (by === 'name') {
      await sendHistoryPage(ctx, pages, historyQuery(ctx.query, await policies.idOf(path)));
      return;
    }
    // By id, the page's own query lists rows only while the policy exists, and only an empty page
    // needs the lookup that tells an unknown policy (404) from one without such rows: one query
    // for a page, not two (a round trip each on PostgreSQL).
    await sendHistoryPage(ctx, pages, { ...historyQuery(ctx.query, value), policy_exists: true }, () => policies.idOf(path));
  });
}
