import type {
  ScalingPolicy as PolicyInput,
  ScalingRule as RuleInput,
  ScalingSchedule as ScheduleInput,
} from './policy-input.generated.js';

export type { PolicyInput, RuleInput, ScheduleInput };

/** A stored rule: every optional field of the schema resolved (ids assigned, durations in both forms). */
export type Rule = Omit<Required<RuleInput>, 'source'> & {
  /** Null means the config's default metric source. */
  source: string | null;
};

/** A stored schedule, defaults applied. */
export type Schedule = Required<ScheduleInput>;

export type RuleDirection = 'scale_up' | 'scale_down';

/**
 * A stored policy: the schema's fields with defaults applied, plus server-assigned ids and times.
 * `cooldown_seconds: null` means "the config's default"; answers show the effective value.
 */
export type Policy = Required<Omit<PolicyInput, 'scale_up_rules' | 'scale_down_rules' | 'schedules'>> & {
  scale_up_rules: Rule[];
  scale_down_rules: Rule[];
  schedules: Schedule[];
};

/** `source` of a policy managed over the REST API; file-managed policies carry their path. */
export const API_SOURCE = 'api';

export const BUILTIN_TARGET_TYPES = ['cdc-worker', 'trino', 'risingwave', 'nodes'] as const;
