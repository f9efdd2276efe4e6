import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { ScalerConfig } from '../config/config.js';
import { ScalerError } from '../errors.js';

export type Scope = 'read' | 'write';

interface TokenEntry {
  name: string;
  hash: Buffer;
  scopes: ReadonlySet<Scope>;
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Tokens from the environment (plain) and the config file (SHA-256 hashes). */
export function tokensFrom(config: Pick<ScalerConfig, 'auth' | 'api_token' | 'api_read_token'>): TokenEntry[] {
  const out: TokenEntry[] = [];
  if (config.api_token !== null && config.api_token !== '') out.push({ name: 'PHILOTES_SCALING_API_TOKEN', hash: sha256(config.api_token), scopes: new Set(['read', 'write']) });
  if (config.api_read_token !== null && config.api_read_token !== '') out.push({ name: 'PHILOTES_SCALING_API_READ_TOKEN', hash: sha256(config.api_read_token), scopes: new Set(['read']) });
  config.auth.tokens.forEach((t, i) => out.push({ name: t.name ?? `auth.tokens[${i}]`, hash: Buffer.from(t.sha256, 'hex'), scopes: new Set(t.scopes) }));
  return out;
}

const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * POSTs that change nothing and query nothing a policy does not already hold: checking a policy,
 * and backtesting a stored one. A read token may send them. An inline backtest (POST /backtest)
 * runs whatever queries its body holds against the daemon's metric sources, so it needs write.
 */
const READ_ONLY_POSTS = /^\/api\/v1\/scaling\/(?:validate|policies\/[^/]+\/backtest)\/?$/;

/**
 * Bearer-token auth with scopes: reads need `read`, writes need `write`. With no token
 * configured the API is open. The presented token is hashed and compared with every configured
 * hash in constant time, so neither timing nor early exit reveals which token came close.
 */
export function authMiddleware(tokens: readonly TokenEntry[], opts: { openProbes: boolean }) {
  return async function auth(ctx: Context, next: Next): Promise<void> {
    if (tokens.length === 0 || (opts.openProbes && PROBES.has(ctx.path))) return next();
    // The console's files hold no data (the page asks for a token and sends it to the API).
    if ((ctx.method === 'GET' || ctx.method === 'HEAD') && (ctx.path === '/ui' || ctx.path.startsWith('/ui/'))) return next();
    const needed: Scope = ['GET', 'HEAD', 'OPTIONS'].includes(ctx.method) || (ctx.method === 'POST' && READ_ONLY_POSTS.test(ctx.path)) ? 'read' : 'write';
    const header = ctx.get('authorization');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m === null) {
      ctx.set('WWW-Authenticate', 'Bearer realm="philotes-scaler"');
      throw new ScalerError('UNAUTHORIZED', header === '' ? 'send Authorization: Bearer <token>' : 'the Authorization header must be "Bearer <token>"');
    }
    const presented = sha256(m[1] as string);
    let match: TokenEntry | undefined;
    for (const t of tokens) {
      if (timingSafeEqual(presented, t.hash) && match === undefined) match = t;
    }
    if (match === undefined) {
      ctx.set('WWW-Authenticate', 'Bearer realm="philotes-scaler", error="invalid_token"');
      throw new ScalerError('UNAUTHORIZED', 'the bearer token is not valid');
    }
    if (!match.scopes.has(needed)) {
      throw new ScalerError('FORBIDDEN', `this request needs the "${needed}" scope; the token has ${[...match.scopes].join(', ')}`);
    }
    ctx.state['token'] = match.name;
    return next();
  };
}
