import type { Router } from '@koa/router';
import { readJson } from '../api/body.js';
import { validationError } from '../errors.js';
import type { Policy } from '../policy/policy-model.js';
import type { PolicyService } from '../policy/policy-service.js';
import type { PolicyState, Storage } from '../storage/storage.js';
import { ScalingManager } from './manager.js';
import { nextFires } from './schedule-clock.js';

function evaluateBody(body: unknown): { dryRun: boolean } {
  if (body === undefined) return { dryRun: true };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw validationError([{ field: '/', message: 'must be an object such as {"dry_run": false}' }], 'request');
  }
  const errors = Object.keys(body)
    .filter((k) => k !== 'dry_run')
    .map((k) => ({ field: `/${k}`, message: 'is not a known property' }));
  const dry = (body as { dry_run?: unknown }).dry_run;
  if (dry !== undefined && typeof dry !== 'boolean') errors.push({ field: '/dry_run', message: 'must be boolean' });
  if (errors.length > 0) throw validationError(errors, 'request');
  return { dryRun: dry !== false };
}

/** Seconds of cooldown left after the last executed change, as /state and /overview answer. */
function cooldownRemaining(cooldownSeconds: number, state: Pick<PolicyState, 'last_change_at'> | undefined, now: Date): number {
  const since = state?.last_change_at == null ? Infinity : (now.getTime() - Date.parse(state.last_change_at)) / 1000;
  return Math.max(0, Math.ceil(cooldownSeconds - since));
}

/**
 * What /state and /overview both say of a policy's engine state: its executor, replicas, last
 * change, cooldown left, failures and when it was last evaluated.
 */
export function engineFields(policy: Policy, state: PolicyState | undefined, now: Date, deps: { manager: ScalingManager; defaultCooldown: number }): Record<string, unknown> {
  const executor = deps.manager.executorFor(policy);
  return {
    executor: executor.name,
    executor_loaded: executor.executor !== undefined,
    current_replicas: state?.current_replicas ?? null,
    last_change_at: state?.last_change_at ?? null,
    last_change_kind: state?.last_change_kind ?? null,
    cooldown_remaining_seconds: cooldownRemaining(policy.cooldown_seconds ?? deps.defaultCooldown, state, now),
    consecutive_metric_failures: state?.consecutive_failures ?? 0,
    // On the leader the latest evaluation; on a follower the stored record's (steady-state
    // repeats of an outcome are not written).
    last_evaluated_at: deps.manager.lastEvaluatedAt(policy.id) ?? ScalingManager.lastDecision(state)?.evaluated_at ?? null,
  };
}

/** POST /policies/:id/evaluate and GET /policies/:id/state. */
export function registerEngineRoutes(router: Router, deps: { manager: ScalingManager; policies: PolicyService; storage: Storage; defaultCooldown: number; now?: () => Date }): void {
  router.post('/policies/:id/evaluate', async (ctx) => {
    const policy = await deps.policies.get(ctx.params['id'] ?? '');
    const { dryRun } = evaluateBody(await readJson(ctx, { optional: true }));
    ctx.body = await deps.manager.evaluateNow(policy, { dryRun });
  });

  router.get('/policies/:id/state', async (ctx) => {
    const policy = await deps.policies.get(ctx.params['id'] ?? '');
    const state = (await deps.manager.knownState(policy.id)) ?? (await deps.storage.getState(policy.id));
    const now = deps.now?.() ?? new Date();
    ctx.body = {
      policy_id: policy.id,
      policy_name: policy.name,
      enabled: policy.enabled,
      // A paused policy is neither evaluated nor executed by the loop until POST .../enable.
      paused: policy.paused_at !== null,
      paused_at: policy.paused_at,
      paused_reason: policy.paused_reason,
      ...engineFields(policy, state, now, deps),
      cooldown_seconds: policy.cooldown_seconds ?? deps.defaultCooldown,
      // On the leader the latest decision; on a follower the latest stored one.
      last_decision: ScalingManager.lastDecision(state),
      next_schedule_fires: policy.schedules
        .filter((s) => s.enabled)
        .map((s) => ({
          schedule_id: s.id,
          cron_expression: s.cron_expression,
          timezone: s.timezone,
          next: nextFires(s, now, 3).map((d) => d.toISOString()),
        })),
      updated_at: state?.updated_at ?? null,
    };
  });
}
