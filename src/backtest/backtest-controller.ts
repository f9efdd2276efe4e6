import type { Router } from '@koa/router';
import { readJson } from '../api/body.js';
import { parseQuery } from '../api/query.js';
import { validationError } from '../errors.js';
import type { Policy } from '../policy/policy-model.js';
import type { PolicyService } from '../policy/policy-service.js';
import { parseBacktestRequest, runBacktest, type BacktestDeps, type BacktestResult } from './backtest-service.js';

/** Renders a backtest as SVG; injected so the route does not depend on the chart module's shape. */
export type ChartRenderer = (policy: Policy, result: BacktestResult) => string;

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ field: '', message: 'must be an object such as {"from": "...", "to": "..."}' }], 'backtest request');
  }
  return body as Record<string, unknown>;
}

/**
 * POST /policies/:id/backtest and POST /backtest (inline policy). JSON by default; `?format=svg`
 * answers the chart.
 */
export function registerBacktestRoutes(router: Router, deps: BacktestDeps & { policies: PolicyService; chart?: ChartRenderer }): void {
  const answer = async (ctx: Parameters<Parameters<Router['post']>[1]>[0], policy: Policy, raw: Record<string, unknown>): Promise<void> => {
    const { format } = parseQuery(ctx.query, { format: { type: 'enum', values: ['json', 'svg'] } });
    const req = parseBacktestRequest(raw);
    const result = await runBacktest(policy, req, deps);
    if (format === 'svg' && deps.chart !== undefined) {
      ctx.type = 'image/svg+xml';
      ctx.body = deps.chart(policy, result);
      return;
    }
    ctx.body = result;
  };

  router.post('/policies/:id/backtest', async (ctx) => {
    const policy = await deps.policies.get(ctx.params['id'] ?? '');
    await answer(ctx, policy, objectBody(await readJson(ctx)));
  });

  router.post('/backtest', async (ctx) => {
    const body = objectBody(await readJson(ctx));
    if (body['policy'] === undefined) throw validationError([{ field: '/policy', message: 'is required: the policy to backtest, as in POST /policies' }], 'backtest request');
    let policy: Policy;
    try {
      policy = deps.policies.parse(body['policy'], { source: 'backtest' });
    } catch (err) {
      const e = err as { errors?: Array<{ field: string; message: string }> };
      if (e.errors === undefined) throw err;
      throw validationError(e.errors.map((x) => ({ field: `/policy${x.field}`, message: x.message })), 'backtest request');
    }
    const { policy: _inline, ...rest } = body;
    void _inline;
    await answer(ctx, policy, rest);
  });
}
