/* Generated from schemas/policy.schema.json by `npm run gen:types`. Do not edit by hand. */

/**
 * A duration such as "90s", "5m", "1h30m" or "1d".
 */
export type Duration = string;

/**
 * A Philotes Scaler scaling policy. The same schema validates a policy in a YAML file and in a REST body.
 */
export interface ScalingPolicy {
  /**
   * Assigned by the server; ignored when sent.
   */
  id?: string;
  created_at?: string;
  updated_at?: string;
  /**
   * Where the policy is managed: "api" or the path of its policy file. Assigned by the server; ignored when sent.
   */
  source?: string;
  /**
   * Unique name: lower-case letters, digits and dashes, starting with a letter or digit, at most 63 characters.
   */
  name: string;
  description?: string | null;
  /**
   * cdc-worker, trino, risingwave, nodes, or a type a loaded executor declares.
   */
  target_type: string;
  target_id?: string | null;
  /**
   * Name of the executor plugin that serves this policy; default from the config's target-type mapping.
   */
  executor?: string | null;
  min_replicas: number;
  max_replicas: number;
  /**
   * Seconds after an executed change during which rules make no change. Default from the config (300).
   */
  cooldown_seconds?: number | null;
  /**
   * Cap on replicas * price per replica-hour. Needs a price.
   */
  max_hourly_cost?: number | null;
  /**
   * Price of one replica for one hour; default from the config's prices for target_type.
   */
  cost_per_replica_hour?: number | null;
  scale_to_zero?: boolean;
  enabled?: boolean;
  /**
   * Shadow mode: decide and record, never execute.
   */
  dry_run?: boolean;
  on_metric_error?: 'hold' | 'fallback';
  fallback?: null | {
    after_failures: number;
    replicas: number;
  };
  scale_up_match?: 'all' | 'any';
  scale_down_match?: 'all' | 'any';
  /**
   * @maxItems 50
   */
  scale_up_rules?: ScalingRule[];
  /**
   * @maxItems 50
   */
  scale_down_rules?: ScalingRule[];
  /**
   * @maxItems 100
   */
  schedules?: ScalingSchedule[];
}
export interface ScalingRule {
  id?: string;
  /**
   * A query for the metric source; for Prometheus, PromQL (a bare metric name is PromQL too).
   */
  metric: string;
  /**
   * Metric source plugin name; default from the config.
   */
  source?: string | null;
  operator: 'gt' | 'gte' | 'lt' | 'lte' | 'eq' | 'ne';
  threshold: number;
  duration?: Duration;
  duration_seconds?: number;
  /**
   * How several series fold into one value.
   */
  aggregation?: 'max' | 'min' | 'avg' | 'sum';
  scale_by: number;
}
export interface ScalingSchedule {
  id?: string;
  /**
   * Five-field cron expression: minute hour day-of-month month day-of-week.
   */
  cron_expression: string;
  /**
   * IANA time zone; default UTC.
   */
  timezone?: string;
  desired_replicas: number;
  duration?: Duration;
  duration_seconds?: number;
  mode?: 'exact' | 'floor';
  enabled?: boolean;
}
