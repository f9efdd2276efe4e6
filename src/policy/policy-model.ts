import type {
  ScalingPolicy as PolicyInput,
  ScalingRule as RuleInput,
  ScalingSchedule as ScheduleInput,
} from './policy-input.generated.js';

import type { TargetTracking } from '../engine/target-tracking.js';
import type { Behavior } from '../engine/behavior.js';

export type { PolicyInput, RuleInput, ScheduleInput, TargetTracking, Behavior };

/** A stored rule: every optional field of the schema resolved (ids assigned, durations in both forms). */
export type Rule = Omit<Required<RuleInput>, 'source'> & {
  /** Null means the config's default metric source. */
  source: string | null;
};

/** A stored schedule, defaults applied. */
export type Schedule = Required<ScheduleInput>;

export type RuleDirection = 'scale_up' | 'scale_down';

/** Fields of a policy's answer that say whether it is paused; set only by POST .../pause and .../enable. */
export const PAUSE_FIELDS = ['paused', 'paused_at', 'paused_reason'] as const;

/**
 * A stored policy: the schema's fields with defaults applied, plus server-assigned ids and times.
 * `cooldown_seconds: null` means "the config's default"; answers show the effective value.
 */
export type Policy = Required<Omit<PolicyInput, 'scale_up_rules' | 'scale_down_rules' | 'schedules' | 'target_tracking' | 'behavior' | 'target_ref' | (typeof PAUSE_FIELDS)[number]>> & {
  /** The object the executor scales, namespace and api_version null when not given; null: none. */
  target_ref: StoredTargetRef | null;
  scale_up_rules: Rule[];
  scale_down_rules: Rule[];
  schedules: Schedule[];
  /** Target-tracking entries, ids assigned and defaults applied (empty: none). */
  target_tracking: TargetTracking[];
  /** Stabilization windows and rate limits, defaults applied (zero windows and no limits: none). */
  behavior: Behavior;
  /**
   * When the policy was paused (POST .../pause), or null. A pause is not part of the policy's
   * content: it is kept by every replacement and file reload, does not move updated_at, and only
   * POST .../enable lifts it. While it lasts the loop neither evaluates nor executes the policy.
   */
  paused_at: string | null;
  /** Why it was paused, as the pause request said; null when it gave no reason or is not paused. */
  paused_reason: string | null;
};

/** A pause as stored: when it began and why. */
export interface PolicyPause {
  at: string;
  reason: string | null;
}

/** `source` of a policy managed over the REST API; file-managed policies carry their path. */
export const API_SOURCE = 'api';

export const BUILTIN_TARGET_TYPES = ['cdc-worker', 'trino', 'risingwave', 'nodes'] as const;

/** A policy's target_ref as stored: every field present. */
export interface StoredTargetRef {
  kind: string;
  name: string;
  namespace: string | null;
  api_version: string | null;
}
