import { randomUUID } from 'node:crypto';
import { formatDuration, parseDuration } from '../util/duration.js';
import type { Policy, PolicyInput, Rule, RuleInput, Schedule, ScheduleInput } from './policy-model.js';

function durationSeconds(input: { duration?: string; duration_seconds?: number }): number {
  if (input.duration !== undefined) return parseDuration(input.duration) ?? 0;
  return input.duration_seconds ?? 0;
}

function normalizeRule(r: RuleInput): Rule {
  const seconds = durationSeconds(r);
  return {
    id: randomUUID(),
    metric: r.metric,
    source: r.source ?? null,
    operator: r.operator,
    threshold: r.threshold,
    duration: formatDuration(seconds),
    duration_seconds: seconds,
    aggregation: r.aggregation ?? 'max',
    scale_by: r.scale_by,
  };
}

function normalizeSchedule(s: ScheduleInput): Schedule {
  const seconds = durationSeconds(s);
  return {
    id: randomUUID(),
    cron_expression: s.cron_expression.trim(),
    timezone: s.timezone ?? 'UTC',
    desired_replicas: s.desired_replicas,
    duration: formatDuration(seconds),
    duration_seconds: seconds,
    mode: s.mode ?? 'exact',
    enabled: s.enabled ?? true,
  };
}

export interface NormalizeOptions {
  id?: string;
  source: string;
  createdAt?: string;
  now: Date;
}

/**
 * Turns a validated policy input into a stored policy: defaults applied, ids assigned, durations
 * resolved. Server-owned fields in the input (id, times, source) are ignored.
 */
export function normalizePolicy(input: PolicyInput, opts: NormalizeOptions): Policy {
  const now = opts.now.toISOString();
  return {
    id: opts.id ?? randomUUID(),
    name: input.name,
    description: input.description ?? null,
    target_type: input.target_type,
    target_id: input.target_id?.toLowerCase() ?? null,
    executor: input.executor ?? null,
    min_replicas: input.min_replicas,
    max_replicas: input.max_replicas,
    cooldown_seconds: input.cooldown_seconds ?? null,
    max_hourly_cost: input.max_hourly_cost ?? null,
    cost_per_replica_hour: input.cost_per_replica_hour ?? null,
    scale_to_zero: input.scale_to_zero ?? false,
    enabled: input.enabled ?? true,
    dry_run: input.dry_run ?? false,
    on_metric_error: input.on_metric_error ?? 'hold',
    fallback: input.fallback ?? null,
    scale_up_match: input.scale_up_match ?? 'all',
    scale_down_match: input.scale_down_match ?? 'all',
    scale_up_rules: (input.scale_up_rules ?? []).map(normalizeRule),
    scale_down_rules: (input.scale_down_rules ?? []).map(normalizeRule),
    schedules: (input.schedules ?? []).map(normalizeSchedule),
    source: opts.source,
    created_at: opts.createdAt ?? now,
    updated_at: now,
  };
}
