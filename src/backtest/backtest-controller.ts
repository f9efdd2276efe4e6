import type { ServerResponse } from 'node:http';
import type { Router } from '@koa/router';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import { readJson } from '../api/body.js';
import { HttpProblem } from '../api/problem.js';
import { parseQuery } from '../api/query.js';
import { validationError } from '../errors.js';
import type { Policy } from '../policy/policy-model.js';
import type { PolicyService } from '../policy/policy-service.js';
import { BacktestLimiter, isSlot, type BacktestSlot } from './backtest-limiter.js';
import { renderBacktestSvg } from './chart.js';
import { branchesJson, checkBacktestSize, parseBacktestRequest, runBacktest, type BacktestDeps, type BacktestRequest, type BacktestResult } from './backtest-service.js';

/** Renders a backtest as SVG (the route's default is the daemon's chart, renderBacktestSvg). */
export type ChartRenderer = (policy: Policy, result: BacktestResult) => string;

const defaultChart: ChartRenderer = (policy, result) => renderBacktestSvg(policy, result);

/** How long a client may leave a streamed answer unread before its connection is closed (and its slot freed). */
export const WRITE_STALL_MS = 30_000;

export interface BacktestRouteDeps extends BacktestDeps {
  policies: PolicyService;
  chart?: ChartRenderer;
  /** Admission of backtests; default: 2 at once (max_concurrent_backtests' default). */
  limiter?: BacktestLimiter;
  logger?: Logger;
  /** See WRITE_STALL_MS (tests shorten it). */
  writeStallMs?: number;
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ field: '', message: 'must be an object such as {"from": "...", "to": "..."}' }], 'backtest request');
  }
  return body as Record<string, unknown>;
}

class ClientGone extends Error {
  constructor(message = 'the client closed the connection') {
    super(message);
  }
}

/** Resolves once `res` can take more, rejects when the client leaves or reads nothing for `ms`. */
function drained(res: ServerResponse, ms: number): Promise<void> {
  if (res.destroyed) return Promise.reject(new ClientGone());
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new ClientGone());
    const timer = setTimeout(() => done(new ClientGone(`the client read nothing for ${ms / 1000} s`)), ms);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

/**
 * The policy as a backtest's answer names it: with the ids its timeline's `values` and `held` are
 * keyed by (an inline policy's rules get fresh ids), and what each id stands for.
 */
function backtestHeader(policy: Policy): Record<string, unknown> {
  const rule = (r: Policy['scale_up_rules'][number], direction: string) => ({ id: r.id, direction, metric: r.metric, operator: r.operator, threshold: r.threshold });
  return {
    id: policy.id,
    name: policy.name,
    rules: [...policy.scale_up_rules.map((r) => rule(r, 'scale_up')), ...policy.scale_down_rules.map((r) => rule(r, 'scale_down'))],
    target_tracking: policy.target_tracking.map((t) => ({ id: t.id, metric: t.metric, kind: t.target_per_replica !== null ? 'target_per_replica' : 'target_value', target: t.target_per_replica ?? t.target_value })),
  };
}

/**
 * Answers a backtest as JSON streamed while the replay runs: `{"policy", "requests", "timeline":
 * [...], "summary"}`, with `"branches"` after the summary for a policy with a condition tree.
 * The timeline is written in batches with backpressure, so the daemon never holds the timeline or
 * its text (the branch spans it holds are runs, not a row each). Errors before the first byte are problems (the middleware answers
 * them); after it, they are logged and the connection is closed.
 */
async function streamJson(ctx: Context, policy: Policy, req: BacktestRequest, deps: BacktestRouteDeps): Promise<void> {
  const res = ctx.res;
  const stallMs = deps.writeStallMs ?? WRITE_STALL_MS;
  let started = false;
  let first = true;
  const write = async (chunk: string): Promise<void> => {
    if (res.destroyed || res.writableEnded) throw new ClientGone();
    if (!res.write(chunk)) await drained(res, stallMs);
  };
  try {
    const result = await runBacktest(policy, req, deps, {
      begin: async (requests) => {
        ctx.status = 200;
        ctx.type = 'application/json';
        ctx.respond = false;
        res.writeHead(200);
        started = true;
        await write(`{"policy":${JSON.stringify(backtestHeader(policy))},"requests":${requests},"timeline":[`);
      },
      rows: async (rows) => {
        let text = '';
        for (const row of rows) {
          text += first ? JSON.stringify(row) : `,${JSON.stringify(row)}`;
          first = false;
        }
        await write(text);
      },
    });
    await write(`],"summary":${JSON.stringify(result.summary)}`);
    for (const chunk of branchesJson(result)) await write(chunk);
    await write('}');
    res.end();
  } catch (err) {
    if (!started) throw err;
    const where = { req_id: ctx.state['requestId'], path: ctx.path, policy: policy.name };
    if (err instanceof ClientGone) deps.logger?.info(where, `backtest stopped: ${err.message}`);
    else deps.logger?.error({ ...where, err }, 'backtest failed while its answer was being sent; the connection is closed');
    res.destroy();
  }
}

/**
 * POST /policies/:id/backtest and POST /backtest (inline policy). JSON by default, streamed;
 * `?format=svg` answers the chart. A request whose history would not fit the daemon's bound is
 * refused with 422 naming the limit; one beyond the running limits with 429 and Retry-After.
 */
export function registerBacktestRoutes(router: Router, deps: BacktestRouteDeps): void {
  const limiter = deps.limiter ?? new BacktestLimiter({ maxConcurrent: 2 });

  const answer = async (ctx: Context, policy: Policy, raw: Record<string, unknown>): Promise<void> => {
    const { format } = parseQuery(ctx.query, { format: { type: 'enum', values: ['json', 'svg'] } });
    const req = parseBacktestRequest(raw);
    // The daemon's renderer unless a caller brings its own: ?format=svg always answers a chart.
    const chart = format === 'svg' ? (deps.chart ?? defaultChart) : undefined;
    const size = checkBacktestSize(policy, req, deps.defaultSource, { chart: chart !== undefined });
    const slot = limiter.acquire(size.samples);
    if (!isSlot(slot)) {
      throw new HttpProblem('TOO_MANY_REQUESTS', slot.reason, { 'Retry-After': String(slot.retryAfterSeconds) });
    }
    try {
      if (chart !== undefined) {
        const result = await runBacktest(policy, req, deps);
        ctx.type = 'image/svg+xml';
        ctx.body = chart(policy, result);
        return;
      }
      await streamJson(ctx, policy, req, deps);
    } finally {
      (slot as BacktestSlot).release();
    }
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
