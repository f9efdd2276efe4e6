import { randomUUID } from 'node:crypto';
import { Router } from '@koa/router';
import Koa from 'koa';
import type { Logger } from 'pino';
import { registerHistoryRoutes } from '../history/history-controller.js';
import { registerPolicyRoutes } from '../policy/policy-controller.js';
import type { PolicyService } from '../policy/policy-service.js';
import type { Storage } from '../storage/storage.js';
import type { ScalerMetrics } from '../metrics.js';
import { authMiddleware, type tokensFrom } from './auth.js';
import { problemMiddleware } from './problem.js';

export const API_PREFIX = '/api/v1/scaling';

/** A readiness probe: a name and a check that resolves to detail or throws. */
export interface ReadinessCheck {
  name: string;
  /** A failing critical check makes /readyz 503; a failing non-critical one reports "degraded" with 200. */
  critical: boolean;
  check(): Promise<Record<string, unknown>>;
}

/** Extra routes a later part of the daemon mounts (evaluation, sources, openapi...). */
export type RouteRegistrar = (scaling: Router, root: Router) => void;

export interface AppDeps {
  logger: Logger;
  storage: Storage;
  policies: PolicyService;
  readiness?: ReadinessCheck[];
  extraRoutes?: RouteRegistrar[];
  /** Bearer tokens; none means the API is open. */
  auth?: { tokens: ReturnType<typeof tokensFrom>; openProbes: boolean };
  metrics?: ScalerMetrics;
}

/** Builds the Koa app without listening; main() and the tests both use it. */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = false;
  // Koa's own error printing would duplicate the problem middleware's log line.
  app.silent = true;

  app.use(async (ctx, next) => {
    const incoming = ctx.get('x-request-id');
    const id = /^[\w.-]{1,128}$/.test(incoming) ? incoming : randomUUID();
    ctx.state['requestId'] = id;
    ctx.set('X-Request-Id', id);
    const started = performance.now();
    try {
      await next();
    } finally {
      const seconds = (performance.now() - started) / 1000;
      const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      deps.metrics?.httpRequests.inc({ method: ctx.method, route, status: String(ctx.status) });
      deps.metrics?.httpLatency.observe({ method: ctx.method, route }, seconds);
      const line = { req_id: id, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(seconds * 1000) };
      if (ctx.status >= 500) deps.logger.error(line, 'request failed');
      else if (ctx.status >= 400) deps.logger.info(line, 'request refused');
      else deps.logger.debug(line, 'request');
    }
  });
  app.use(problemMiddleware(deps.logger));
  if (deps.auth !== undefined) app.use(authMiddleware(deps.auth.tokens, { openProbes: deps.auth.openProbes }));

  const root = new Router();
  root.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  root.get('/readyz', async (ctx) => {
    const checks: Record<string, unknown> = {};
    let ready = true;
    let degraded = false;
    await Promise.all(
      (deps.readiness ?? []).map(async (c) => {
        try {
          checks[c.name] = { ok: true, critical: c.critical, ...(await c.check()) };
        } catch (err) {
          if (c.critical) ready = false;
          else degraded = true;
          const detail = (err as { detail?: Record<string, unknown> }).detail ?? {};
          checks[c.name] = { ok: false, critical: c.critical, error: (err as Error).message, ...detail };
        }
      }),
    );
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: !ready ? 'not_ready' : degraded ? 'degraded' : 'ready', checks };
  });

  const scaling = new Router({ prefix: API_PREFIX });
  registerPolicyRoutes(scaling, deps.policies);
  registerHistoryRoutes(scaling, deps.storage, deps.policies);
  for (const register of deps.extraRoutes ?? []) register(scaling, root);

  for (const r of [root, scaling]) {
    app.use(r.routes());
    // Not `throw: true`: thrown, the router's 405 carries no Allow header (RFC 9110 requires one).
    // The problem middleware turns the bare 405/501 the router sets into a problem answer.
    app.use(r.allowedMethods());
  }
  return app;
}
