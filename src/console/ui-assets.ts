/**
 * Serves the web console's built files (`npm run build` writes them to dist/ui) at /ui/. The
 * files hold no data: every figure the console shows comes from the API with the user's token,
 * so /ui/ itself needs no token. They are read once, at start, and served from memory.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { Router } from '@koa/router';
import type { Context } from 'koa';
import { ScalerError } from '../errors.js';
import { packageRoot } from '../util/package-root.js';

export const UI_PREFIX = '/ui';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
};

/** No script or style from anywhere else, no inline script, no framing. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

/** The built console's files by their path under /ui/, or undefined when it was not built. */
export function loadUiAssets(dir = join(packageRoot(), 'dist', 'ui')): Map<string, Asset> | undefined {
  if (!existsSync(join(dir, 'index.html'))) return undefined;
  const out = new Map<string, Asset>();
  // The build writes files only, side by side (the route serves one path segment).
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (!statSync(full).isFile()) continue;
    const body = readFileSync(full);
    out.set(name, { body, type: TYPES[extname(name)] ?? 'application/octet-stream', etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  return out;
}

export function registerUiRoutes(root: Router, assets: Map<string, Asset> | undefined): void {
  const serve = (ctx: Context, path: string): void => {
    if (assets === undefined) {
      throw new ScalerError('NOT_FOUND', 'the web console is not built in this installation: run npm run build, then restart the daemon');
    }
    // Pages are routed in the browser (/ui/#/policies/...): the page itself is /ui/.
    const asset = assets.get(path === '' ? 'index.html' : path);
    if (asset === undefined) throw new ScalerError('NOT_FOUND', `the console has no file ${path}`);
    ctx.set('Cache-Control', 'no-cache');
    ctx.set('ETag', asset.etag);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.set('Content-Security-Policy', CSP);
    if (ctx.get('if-none-match') === asset.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = asset.type;
    ctx.body = asset.body;
  };
  // The router matches /ui and /ui/ alike; the page's relative links need the slash.
  root.get(UI_PREFIX, (ctx) => {
    if (ctx.path === UI_PREFIX) {
      ctx.status = 308;
      ctx.redirect(`${UI_PREFIX}/`);
      return;
    }
    serve(ctx, '');
  });
  root.get(`${UI_PREFIX}/:file`, (ctx) => serve(ctx, ctx.params['file'] ?? ''));
}
