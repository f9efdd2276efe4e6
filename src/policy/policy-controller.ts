import type { Router } from '@koa/router';
import { readJson } from '../api/body.js';
import { parseQuery } from '../api/query.js';
import type { PolicyService } from './policy-service.js';

export const POLICY_LIST_QUERY = {
  limit: { type: 'int', min: 1, max: 1000 },
  offset: { type: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  enabled: { type: 'bool' },
  target_type: { type: 'string', maxLength: 63 },
} as const;

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

  router.delete('/policies/:id', async (ctx) => {
    await service.delete(ctx.params['id'] ?? '');
    ctx.status = 204;
  });

  router.post('/policies/:id/enable', async (ctx) => {
    ctx.body = service.view(await service.setEnabled(ctx.params['id'] ?? '', true));
  });

  router.post('/policies/:id/disable', async (ctx) => {
    ctx.body = service.view(await service.setEnabled(ctx.params['id'] ?? '', false));
  });
}
