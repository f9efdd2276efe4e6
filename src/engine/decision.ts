import type { Rule, RuleDirection } from '../policy/policy-model.js';
import type { Sample } from '../plugins/api.js';
import type { RuleVerdict } from './rule-window.js';
import type { ChangeEvent, ProposalSpan } from './behavior.js';

/** What a metric source answered for one rule's window (or the error instead). */
export interface Observation {
  /** Values in the window, oldest first; for a zero-duration rule, the latest value. */
  samples: Sample[];
  error?: { kind: string; message: string };
  /**
   * Verdicts already reached on this observation, for the rules that share it (the loop makes
   * observations with one; see sharedVerdict in rule-window.ts). Absent: nothing is shared.
   */
  verdicts?: VerdictMemo;
}

/**
 * The verdicts of the rules reading one observation in one window, by operator and threshold:
 * at 10,000 policies over 200 queries each observation is read by about 150 rules with a handful
 * of distinct conditions. Verdicts in it are shared: never changed by their readers.
 */
export interface VerdictMemo {
  window: RuleWindow | undefined;
  operators: string[];
  thresholds: number[];
  verdicts: RuleVerdict[];
}

/**
 * The window a rule needs at `now`: `seconds` long, ending at `end`, judged at `points` instants
 * `startMs + k * stepMs` (k = 0 .. points - 1), the last of which is `endMs`. Times in unix
 * seconds (start and step may have a millisecond fraction) and, exactly, in milliseconds.
 */
export interface RuleWindow {
  start: number;
  end: number;
  step: number;
  seconds: number;
  points: number;
  startMs: number;
  endMs: number;
  stepMs: number;
}

/** The engine memory the decision reads and returns updated; the manager persists it. */
export interface EngineMemory {
  current_replicas: number | null;
  /** ISO time of the last executed change; cooldown counts from it. */
  last_change_at: string | null;
  consecutive_failures: number;
  /** Reason code of the last blocked change recorded, so it is not repeated while it persists. */
  last_blocked: string | null;
  /** One-shot schedules already applied: schedule id -> ISO fire time. */
  one_shots: Record<string, string>;
  /** Proposals within the longest stabilization window; only for a policy with one. */
  proposals?: ProposalSpan[];
  /** Executed changes within the longest rate-limit period; only for a policy with a limit. */
  changes?: ChangeEvent[];
}

export const EMPTY_MEMORY: EngineMemory = {
  current_replicas: null,
  last_change_at: null,
  consecutive_failures: 0,
  last_blocked: null,
  one_shots: {},
};

export type Action = 'scale_up' | 'scale_down' | 'scheduled' | 'fallback' | 'none';

/** Why nothing changed (step 9), or why something did. */
export type ReasonCode =
  | 'no_rule_held'
  | 'at_max'
  | 'at_min'
  | 'cooldown'
  | 'cost_capped'
  | 'schedule_hold'
  | 'metric_error'
  | 'disabled'
  | 'rules_held'
  | 'schedule_fired'
  | 'schedule_window'
  | 'fallback'
  | 'out_of_bounds'
  | 'stabilized'
  | 'rate_limited';

export interface RuleRecord {
  id: string;
  /** The rule's name (by which a condition tree uses it), or null. */
  name: string | null;
  direction: RuleDirection;
  metric: string;
  source: string;
  operator: Rule['operator'];
  threshold: number;
  aggregation: Rule['aggregation'];
  window_seconds: number;
  step_seconds: number;
  samples: number;
  /** The value that decided: the weakest in the window for gt/gte/lt/lte, else the latest. */
  value: number | null;
  latest: number | null;
  held: boolean;
  error: string | null;
  /** Why it did not hold, when it did not. */
  detail: string | null;
}

/** A node of a direction's condition tree in a decision record, with its verdict. */
export type ConditionRecord =
  | { rule: string; held: boolean; error?: true }
  | { all: ConditionRecord[]; held: boolean }
  | { any: ConditionRecord[]; held: boolean }
  | { not: ConditionRecord; held: boolean };

export interface DirectionRecord {
  /** How the rules combined: all or any; null when a condition tree did. */
  match: 'all' | 'any' | null;
  /** The direction's condition tree with each node's verdict; null without one. */
  when: ConditionRecord | null;
  /** The branch of the tree that decided, as text ("lag_high and buffer_deep"); null when none held or without a tree. */
  decided_by: string | null;
  rules: number;
  held: boolean;
  step: number;
}

export interface AdjustmentRecord {
  kind: 'max_replicas' | 'min_replicas' | 'cost_cap' | 'scale_to_zero' | 'schedule_floor' | 'cooldown' | 'schedule_hold' | 'stabilization' | 'rate_limit';
  from: number;
  to: number;
  detail: string;
}

export interface ScheduleRecord {
  id: string;
  cron_expression: string;
  timezone: string;
  kind: 'one_shot' | 'window';
  mode: 'exact' | 'floor';
  fired_at: string;
  until: string | null;
  desired_replicas: number;
}

/** What one target-tracking entry read and wanted. */
export interface TrackingRecord {
  id: string;
  metric: string;
  source: string;
  /** target_per_replica: desired = ceil(value / target); target_value: ceil(current x value / target). */
  kind: 'target_per_replica' | 'target_value';
  target: number;
  tolerance: number;
  window_seconds: number;
  samples: number;
  /** The latest value, or the window's average; null when there was none. */
  value: number | null;
  /** The usage ratio the tolerance is judged on; null when it cannot be computed. */
  ratio: number | null;
  formula: string | null;
  /** The replicas it wanted; null: no opinion. */
  opinion: number | null;
  outcome: 'opinion' | 'within_tolerance' | 'metric_error' | 'not_finite';
  /** The source's error, when its metric failed. */
  error: string | null;
}

/** The explanation of one evaluation (step 9). */
export interface DecisionRecord {
  policy_id: string;
  policy_name: string;
  evaluated_at: string;
  current_replicas: number;
  current_replicas_from: 'executor' | 'state' | 'min_replicas';
  desired_replicas: number;
  action: Action;
  reason_code: ReasonCode;
  reason: string;
  should_scale: boolean;
  dry_run: boolean;
  dry_run_from: Array<'policy' | 'request' | 'config'>;
  triggered_by: 'rule' | 'schedule' | 'fallback' | null;
  triggered_rules: string[];
  rules: RuleRecord[];
  directions: { scale_up: DirectionRecord; scale_down: DirectionRecord; chosen: 'scale_up' | 'scale_down' | null };
  schedule: ScheduleRecord | null;
  adjustments: AdjustmentRecord[];
  cooldown_remaining_seconds: number;
  consecutive_metric_failures: number;
  /** Replicas rules (or a schedule, or fallback) wanted before bounds, cost cap and cooldown. */
  wanted_replicas: number;
  /** True when a bound, the cost cap or cooldown stopped a change rules wanted. */
  blocked: boolean;
  /** Each target-tracking entry's value, formula and opinion (empty without target tracking). */
  target_tracking: TrackingRecord[];
  /**
   * The highest opinion of step rules and target tracking, before stabilization and rate limits;
   * null when no one had an opinion.
   */
  proposal: number | null;
}
