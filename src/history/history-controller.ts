import type { Router } from '@koa/router';
import { parseQuery } from '../api/query.js';
import type { PolicyService } from '../policy/policy-service.js';
import type { HistoryQuery, Storage } from '../storage/storage.js';

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

/** Routes for /history and /policies/:id/history: newest first, keyset cursor. */
export function registerHistoryRoutes(router: Router, storage: Storage, policies: PolicyService): void {
  router.get('/history', async (ctx) => {
    const page = await storage.listHistory(historyQuery(ctx.query));
    ctx.body = { history: page.rows, next_cursor: page.next_cursor };
  });

  router.get('/policies/:id/history', async (ctx) => {
    const policy = await policies.get(ctx.params['id'] ?? '');
    const page = await storage.listHistory(historyQuery(ctx.query, policy.id));
    ctx.body = { history: page.rows, next_cursor: page.next_cursor };
  });
}
