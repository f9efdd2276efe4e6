import type { Router } from '@koa/router';
import { readJson, readJsonOrYaml } from '../api/body.js';
import { parsePolicyText } from '../files/policy-file.js';
import { parseQuery } from '../api/query.js';
import { validationError, type FieldError } from '../errors.js';
import type { PolicyService } from './policy-service.js';

export const POLICY_LIST_QUERY = {
  limit: { type: 'int', min: 1, max: 1000 },
  offset: { type: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  enabled: { type: 'bool' },
  target_type: { type: 'string', maxLength: 63 },
} as const;

/** Media types PATCH takes: a JSON Merge Patch (RFC 7396), under its own type or as plain JSON. */
export const MERGE_PATCH_TYPES = ['application/merge-patch+json', 'application/json'] as const;

/** Longest pause reason kept. */
export const MAX_PAUSE_REASON = 1000;

/** The body of POST .../pause: absent, or `{"reason": "..."}`; a blank reason is no reason. */
function pauseReason(body: unknown): string | null {
  if (body === undefined) return null;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ field: '', message: 'must be an object such as {"reason": "incident 42"}' }], 'request');
  }
  const errors: FieldError[] = Object.keys(body)
    .filter((k) => k !== 'reason')
    .map((k) => ({ field: `/${k}`, message: 'is not a known property (the only one is reason)' }));
  const reason = (body as { reason?: unknown }).reason;
  if (reason !== undefined && reason !== null && typeof reason !== 'string') errors.push({ field: '/reason', message: 'must be a string' });
  else if (typeof reason === 'string' && reason.length > MAX_PAUSE_REASON) errors.push({ field: '/reason', message: `must be at most ${MAX_PAUSE_REASON} characters` });
  if (errors.length > 0) throw validationError(errors, 'request');
  return typeof reason === 'string' && reason.trim() !== '' ? reason.trim() : null;
}

/** Routes for /policies; answers are flat policy JSON. */
export function registerPolicyRoutes(router: Router, service: PolicyService): void {
  router.post('/policies', async (ctx) => {
    const created = await service.create(await readJson(ctx));
    ctx.status = 201;
    ctx.set('Location', `${ctx.path.replace(/\/+$/, '')}/${created.id}`);
    ctx.body = service.view(created);
  });

  router.get('/policies', async (ctx) => {
    const q = parseQuery(ctx.query, POLICY_LIST_QUERY);
    const { policies, total } = await service.list({
      limit: q.limit ?? 100,
      offset: q.offset ?? 0,
      enabled: q.enabled,
      target_type: q.target_type,
    });
    ctx.body = { policies: policies.map((p) => service.view(p)), total_count: total };
  });

  router.get('/policies/:id', async (ctx) => {
    ctx.body = service.view(await service.get(ctx.params['id'] ?? ''));
  });

  router.put('/policies/:id', async (ctx) => {
    const body = await readJson(ctx);
    ctx.body = service.view(await service.replace(ctx.params['id'] ?? '', body));
  });

  router.patch('/policies/:id', async (ctx) => {
    const patch = await readJson(ctx, { types: MERGE_PATCH_TYPES });
    ctx.body = service.view(await service.patch(ctx.params['id'] ?? '', patch));
  });

  router.delete('/policies/:id', async (ctx) => {
    await service.delete(ctx.params['id'] ?? '');
    ctx.status = 204;
  });

  router.post('/policies/:id/enable', async (ctx) => {
    ctx.body = service.view(await service.enable(ctx.params['id'] ?? ''));
  });

  router.post('/policies/:id/disable', async (ctx) => {
    ctx.body = service.view(await service.disable(ctx.params['id'] ?? ''));
  });

  router.post('/policies/:id/pause', async (ctx) => {
    const reason = pauseReason(await readJson(ctx, { optional: true }));
    ctx.body = service.view(await service.pause(ctx.params['id'] ?? '', reason));
  });

  // Checks a policy as POST /policies would, storing nothing: JSON (one policy) or YAML text (a
  // policy file: one policy per document, problems located by line and column).
  router.post('/validate', async (ctx) => {
    const body = await readJsonOrYaml(ctx);
    if ('json' in body) {
      ctx.body = { valid: true, policies: [service.view(service.check(body.json))] };
      return;
    }
    const parsed = parsePolicyText('request body', body.yaml, (input) => service.check(input));
    if (parsed.problems.length > 0) {
      throw validationError(
        parsed.problems.map((p) => ({
          field: p.field,
          message: p.message,
          ...(p.line !== null ? { line: p.line } : {}),
          ...(p.column !== null ? { column: p.column } : {}),
          ...(p.document !== null ? { document: p.document } : {}),
        })),
      );
    }
    if (parsed.policies.length === 0) throw validationError([{ field: '', message: 'holds no policy (every YAML document is empty)', line: 1, column: 1 }]);
    ctx.body = { valid: true, policies: parsed.policies.map((p) => service.view(p)) };
  });
}
