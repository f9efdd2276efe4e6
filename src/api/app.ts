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
import { BODY_TIMEOUT_MS } from './body.js';
import { PROBLEM_CONTENT_TYPE, problemBody, problemMiddleware } from './problem.js';
import { ReadinessMonitor, type ReadinessCheck } from './readiness.js';

export type { ReadinessCheck } from './readiness.js';

export const API_PREFIX = '/api/v1/scaling';

/** Extra routes a later part of the daemon mounts (evaluation, sources, openapi...). */
export type RouteRegistrar = (scaling: Router, root: Router) => void;

export interface AppDeps {
  logger: Logger;
  storage: Storage;
  policies: PolicyService;
  /**
   * Readiness checks, or the monitor that runs them (main starts one, so checks that do I/O run on
   * a timer); checks alone get a monitor that refreshes them when /readyz finds them stale.
   */
  readiness?: ReadinessCheck[] | ReadinessMonitor;
  extraRoutes?: RouteRegistrar[];
  /** Bearer tokens; none means the API is open. */
  auth?: { tokens: ReturnType<typeof tokensFrom>; openProbes: boolean };
  metrics?: ScalerMetrics;
  /** Called after every successful write to /policies (the metrics' policy counts are then recounted). */
  onWrite?: () => void;
  /** How long a request body may take to arrive once a route reads it (default BODY_TIMEOUT_MS); then 408. */
  bodyTimeoutMs?: number;
  /** Bytes of history answers kept in memory (history_cache_mb; default HISTORY_CACHE_BYTES). */
  historyCacheBytes?: number;
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Builds the Koa app without listening; main() and the tests both use it. */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = false;
  // Koa's own error printing would duplicate the problem middleware's log line.
  app.silent = true;
  // What Koa does with an error it catches itself (after the middleware, or from a body stream):
  // logged, and a problem answer when nothing was sent yet, never Koa's text/plain.
  app.on('error', (err: unknown, ctx?: Koa.Context) => {
    const e = err as { code?: string; message?: string };
    if (e.code === 'ECONNRESET' || e.code === 'ERR_STREAM_PREMATURE_CLOSE') {
      deps.logger.info({ req_id: ctx?.state['requestId'], path: ctx?.path, code: e.code }, 'the client closed the connection before the answer was sent');
      return;
    }
    deps.logger.error({ err, req_id: ctx?.state['requestId'], method: ctx?.method, path: ctx?.path }, 'error while sending an answer');
  });
  app.context.onerror = function onerror(this: Koa.Context, err: unknown): void {
    if (err === null || err === undefined) return;
    this.app.emit('error', err, this);
    if (this.headerSent || !this.writable) {
      this.res.destroy();
      return;
    }
    const res = this.res;
    for (const name of res.getHeaderNames()) if (name !== 'x-request-id') res.removeHeader(name);
    const text = JSON.stringify(problemBody('INTERNAL', 'the server failed to answer this request; the error is in its log', this.path));
    res.statusCode = 500;
    res.setHeader('Content-Type', PROBLEM_CONTENT_TYPE);
    res.setHeader('Content-Length', Buffer.byteLength(text));
    res.end(text);
  };
  const readiness = deps.readiness instanceof ReadinessMonitor ? deps.readiness : new ReadinessMonitor(deps.readiness ?? [], { logger: deps.logger });
  const bodyTimeoutMs = deps.bodyTimeoutMs ?? BODY_TIMEOUT_MS;

  app.use(async (ctx, next) => {
    const incoming = ctx.get('x-request-id');
    const id = /^[\w.-]{1,128}$/.test(incoming) ? incoming : randomUUID();
    ctx.state['requestId'] = id;
    ctx.state['bodyTimeoutMs'] = bodyTimeoutMs;
    ctx.set('X-Request-Id', id);
    const started = performance.now();
    try {
      await next();
    } finally {
      if (deps.onWrite !== undefined && !READ_METHODS.has(ctx.method) && ctx.status < 400 && ctx.path.startsWith(`${API_PREFIX}/policies`)) deps.onWrite();
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
  // Served from memory: the checks that do I/O run in the background (see ReadinessMonitor).
  root.get('/readyz', async (ctx) => {
    const report = await readiness.report();
    ctx.status = report.status === 'not_ready' ? 503 : 200;
    ctx.body = report;
  });

  const scaling = new Router({ prefix: API_PREFIX });
  registerPolicyRoutes(scaling, deps.policies);
  registerHistoryRoutes(scaling, deps.storage, deps.policies, deps.historyCacheBytes);
  for (const register of deps.extraRoutes ?? []) register(scaling, root);

  for (const r of [root, scaling]) {
    app.use(r.routes());
    // Not `throw: true`: thrown, the router's 405 carries no Allow header (RFC 9110 requires one).
    // The problem middleware turns the bare 405/501 the router sets into a problem answer.
    app.use(r.allowedMethods());
  }
  return app;
}
