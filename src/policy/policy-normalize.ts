import { randomUUID } from 'node:crypto';
import { formatDuration, parseDuration } from '../util/duration.js';
import type { Behavior, Policy, PolicyInput, Rule, RuleInput, Schedule, ScheduleInput, TargetTracking } from './policy-model.js';
import type { RateLimit } from '../engine/behavior.js';
import type { RateLimit as RateLimitInput, ScalingBehavior as BehaviorInput, TargetTracking as TargetTrackingInput } from './policy-input.generated.js';

function durationSeconds(input: { duration?: string; duration_seconds?: number }): number {
  if (input.duration !== undefined) return parseDuration(input.duration) ?? 0;
  return input.duration_seconds ?? 0;
}

function normalizeRule(r: RuleInput): Rule {
  const seconds = durationSeconds(r);
  return {
    id: randomUUID(),
    name: r.name ?? null,
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

function normalizeTracking(e: TargetTrackingInput): TargetTracking {
  const seconds = durationSeconds(e);
  return {
    id: randomUUID(),
    metric: e.metric,
    source: e.source ?? null,
    aggregation: e.aggregation ?? 'max',
    duration: formatDuration(seconds),
    duration_seconds: seconds,
    target_per_replica: e.target_per_replica ?? null,
    target_value: e.target_per_replica !== undefined && e.target_per_replica !== null ? null : (e.target_value ?? null),
    tolerance: e.tolerance ?? DEFAULT_TOLERANCE,
  };
}

/** A window given as text or seconds (validated: they agree), in seconds; `fallback` when absent. */
function windowSeconds(text: string | undefined, seconds: number | undefined, fallback: number): number {
  if (text !== undefined) return parseDuration(text) ?? fallback;
  return seconds ?? fallback;
}

function normalizeLimit(l: RateLimitInput | null | undefined): RateLimit | null {
  if (l === undefined || l === null) return null;
  const period = windowSeconds(l.period, l.period_seconds, 60);
  return { replicas: l.replicas ?? null, percent: l.percent ?? null, period: formatDuration(period), period_seconds: period, select: l.select ?? 'max' };
}

/**
 * Stabilization windows and rate limits with their defaults: scale-down stabilization 5m when the
 * policy tracks a target (so a brief dip does not shed capacity), else none; no scale-up
 * stabilization; no limits.
 */
export function normalizeBehavior(b: BehaviorInput | null | undefined, tracksTargets: boolean): Behavior {
  const down = windowSeconds(b?.scale_down_stabilization, b?.scale_down_stabilization_seconds, tracksTargets ? DEFAULT_TRACKING_SCALE_DOWN_STABILIZATION : 0);
  const up = windowSeconds(b?.scale_up_stabilization, b?.scale_up_stabilization_seconds, 0);
  return {
    scale_down_stabilization: formatDuration(down),
    scale_down_stabilization_seconds: down,
    scale_up_stabilization: formatDuration(up),
    scale_up_stabilization_seconds: up,
    scale_up_limit: normalizeLimit(b?.scale_up_limit),
    scale_down_limit: normalizeLimit(b?.scale_down_limit),
  };
}

/** The tolerance of a target-tracking entry that gives none, as HPA's. */
export const DEFAULT_TOLERANCE = 0.1;
/** Scale-down stabilization of a policy with target tracking that sets none, as HPA's. */
export const DEFAULT_TRACKING_SCALE_DOWN_STABILIZATION = 300;

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
    target_ref:
      input.target_ref === undefined || input.target_ref === null
        ? null
        : { kind: input.target_ref.kind, name: input.target_ref.name, namespace: input.target_ref.namespace ?? null, api_version: input.target_ref.api_version ?? null },
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
    // A direction combines its rules by a condition tree or by a match, never both.
    scale_up_match: input.scale_up_when === undefined || input.scale_up_when === null ? (input.scale_up_match ?? 'all') : null,
    scale_down_match: input.scale_down_when === undefined || input.scale_down_when === null ? (input.scale_down_match ?? 'all') : null,
    scale_up_when: input.scale_up_when ?? null,
    scale_down_when: input.scale_down_when ?? null,
    scale_up_rules: (input.scale_up_rules ?? []).map(normalizeRule),
    scale_down_rules: (input.scale_down_rules ?? []).map(normalizeRule),
    schedules: (input.schedules ?? []).map(normalizeSchedule),
    target_tracking: (input.target_tracking ?? []).map(normalizeTracking),
    behavior: normalizeBehavior(input.behavior, (input.target_tracking ?? []).length > 0),
    source: opts.source,
    created_at: opts.createdAt ?? now,
    updated_at: now,
    paused_at: null,
    paused_reason: null,
  };
}
