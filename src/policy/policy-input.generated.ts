/* Generated from schemas/policy.schema.json by `npm run gen:types`. Do not edit by hand. */

/**
 * A node of a condition tree: a rule name (it holds when that rule holds), {"all": [nodes]} (every node holds), {"any": [nodes]} (at least one holds) or {"not": node} (the node does not hold). all and any take 1 to 50 nodes; a tree has at most 5 levels of all/any/not and at most 200 nodes.
 */
export type ConditionNode =
  | string
  | {
      /**
       * The nodes that must all hold: 1 to 50.
       *
       * @minItems 1
       * @maxItems 50
       */
      all: [ConditionNode, ...ConditionNode[]];
    }
  | {
      /**
       * The nodes of which at least one must hold: 1 to 50.
       *
       * @minItems 1
       * @maxItems 50
       */
      any: [ConditionNode, ...ConditionNode[]];
    }
  | {
      /**
       * The node that must not hold.
       */
      not: ConditionNode;
    };

/**
 * A Philotes Scaler scaling policy. The same schema validates a policy in a YAML file and in a REST body.
 */
export interface ScalingPolicy {
  /**
   * UUID of the policy. Assigned by the server; ignored when sent, so an answer can be sent back as a PUT body.
   */
  id?: string;
  /**
   * When the policy was created, as an ISO 8601 UTC time. Assigned by the server; ignored when sent.
   */
  created_at?: string;
  /**
   * When the policy was last written, as an ISO 8601 UTC time. Assigned by the server; ignored when sent.
   */
  updated_at?: string;
  /**
   * Whether the policy is paused (POST .../pause; lifted by POST .../enable): while paused the loop neither evaluates nor executes it. Read-only: a body may carry it only with its current value.
   */
  paused?: boolean;
  /**
   * When the policy was paused, or null. Read-only.
   */
  paused_at?: string | null;
  /**
   * Why it was paused, as the pause request said; null when no reason was given or it is not paused. Read-only.
   */
  paused_reason?: string | null;
  /**
   * Where the policy is managed: "api" for a policy created over the REST API, else the path of its policy file (relative to the working directory when inside it). Assigned by the server; ignored when sent.
   */
  source?: string;
  /**
   * Unique name of the policy: lower-case letters, digits and dashes, starting with a letter or digit, at most 63 characters, and not shaped like a UUID. The API addresses a policy by this name or by its id.
   */
  name: string;
  /**
   * Free text for people, at most 2000 characters; the daemon does not read it. Default null.
   */
  description?: string | null;
  /**
   * Kind of target the policy scales: cdc-worker, trino, risingwave or nodes, a type the config's executors mapping names, or a type a loaded executor declares.
   */
  target_type: string;
  /**
   * UUID of the target, passed to the executor with every call; a bare UUID (no "urn:uuid:" prefix), stored in lower case. Default null.
   */
  target_id?: string | null;
  /**
   * The object the executor scales, as KEDA's scaleTargetRef: a Deployment, a StatefulSet, a KEDA ScaledObject or any resource with a /scale subresource. Read by the kubernetes executor (see TargetRef); other executors receive it as it is. Default null: the executor's own mapping of target_type decides (the kubernetes executor's targets templates).
   */
  target_ref?: null | TargetRef;
  /**
   * Name of the loaded executor plugin that serves this policy. Default (null): the config's executors entry for target_type, else a loaded executor that declares target_type.
   */
  executor?: string | null;
  /**
   * Fewest replicas the policy sets, 0 to 100000, at most max_replicas. Rules, schedules and fallback are clamped to it; only scale_to_zero goes below it, to 0.
   */
  min_replicas: number;
  /**
   * Most replicas the policy sets, 1 to 100000, at least min_replicas. Rules, schedules and fallback are clamped to it.
   */
  max_replicas: number;
  /**
   * Seconds after an executed change (whoever made it: rules, a schedule, the fallback or the bounds) during which rule-driven changes are not made; schedules and the fallback ignore it. Dry runs and failed changes start none. 0 to 604800 (7 days). Default (null): the config's default_cooldown (300 unless configured); answers show the effective value.
   */
  cooldown_seconds?: number | null;
  /**
   * Most the target may cost per hour, as replicas x price per replica-hour: any target above floor(max_hourly_cost / price) replicas is lowered to it, but never below min_replicas. Needs a price (cost_per_replica_hour or the config's prices entry for target_type) and must pay for min_replicas. A price of 0 makes it inert. Default null: no cap.
   */
  max_hourly_cost?: number | null;
  /**
   * Price of one replica for one hour, in the currency of max_hourly_cost. Default (null): the config's prices entry for target_type, if any.
   */
  cost_per_replica_hour?: number | null;
  /**
   * Allows 0 replicas below min_replicas: a rule-driven scale-down from min_replicas goes to 0, a schedule or the fallback may set 0, the bounds do not raise a target at 0 back to min_replicas, and a scale-up from 0 goes to at least min_replicas. Default false.
   */
  scale_to_zero?: boolean;
  /**
   * Whether the evaluation loop evaluates the policy. A disabled policy changes nothing; POST .../evaluate answers reason_code "disabled". Default true.
   */
  enabled?: boolean;
  /**
   * Shadow mode: decide and record (history rows marked dry_run: true), never call the executor. Default false. The config's dry_run and an evaluate request can also make an evaluation a dry run.
   */
  dry_run?: boolean;
  /**
   * What a metric error (a failed query, or no value in a rule's whole window) does beyond making that rule not hold. hold: nothing more. fallback: after fallback.after_failures consecutive evaluations with a metric error, the target goes to fallback.replicas (fallback is then required). Default hold.
   */
  on_metric_error?: 'hold' | 'fallback';
  /**
   * The replicas to run while metrics keep failing, used only when on_metric_error is "fallback" (and required then). It ignores cooldown and starts one; a schedule outranks it; bounds and the cost cap still apply. Default null.
   */
  fallback?: null | {
    /**
     * Consecutive evaluations in which some rule had a metric error before the fallback applies, 1 to 10000. An evaluation without a metric error resets the count.
     */
    after_failures: number;
    /**
     * Replicas while the fallback applies: within [min_replicas, max_replicas], or 0 when scale_to_zero is true.
     */
    replicas: number;
  };
  /**
   * How the scale-up rules combine: all (every rule must hold) or any (at least one). The step is the largest scale_by among the rules that held. When both directions hold, scale-up wins. Default all; null (the answer's value) when scale_up_when gives a condition tree instead, which it cannot be given with.
   */
  scale_up_match?: 'all' | 'any' | null;
  /**
   * How the scale-down rules combine: all (every rule must hold) or any (at least one). The step is the scale_by closest to zero among the rules that held. Default all; null (the answer's value) when scale_down_when gives a condition tree instead, which it cannot be given with.
   */
  scale_down_match?: 'all' | 'any' | null;
  /**
   * A condition tree over the names of the scale-up rules, in place of scale_up_match: a rule name, {"all": [...]}, {"any": [...]} or {"not": node}, at most 5 levels of all/any/not. Every name must be a scale-up rule's, and every scale-up rule must be named in it. The step is the largest scale_by among the rules that held and are used outside a not (when none did, among the rules under a not that did not hold). Default (null): scale_up_match.
   */
  scale_up_when?: null | ConditionNode;
  /**
   * A condition tree over the names of the scale-down rules, in place of scale_down_match (see scale_up_when). The step is the scale_by closest to zero among the rules that held and are used outside a not (when none did, among the rules under a not that did not hold). Default (null): scale_down_match.
   */
  scale_down_when?: null | ConditionNode;
  /**
   * Rules that add replicas (each scale_by greater than 0), at most 50. A direction without rules never holds. Default none.
   *
   * @maxItems 50
   */
  scale_up_rules?: ScalingRule[];
  /**
   * Rules that remove replicas (each scale_by less than 0), at most 50. A direction without rules never holds. Default none.
   *
   * @maxItems 50
   */
  scale_down_rules?: ScalingRule[];
  /**
   * Cron schedules that set the replica count at given times, at most 100. Default none.
   *
   * @maxItems 100
   */
  schedules?: ScalingSchedule[];
  /**
   * Targets to track, as HPA, KEDA and Nomad's target-value strategy do: each entry computes a replica count from its metric (its opinion); the highest opinion of these entries and of the step rules that held is the proposal. At most 20 entries. Default: none.
   */
  target_tracking?: TargetTracking[];
  /**
   * How fast replicas may change: stabilization windows and rate limits (see ScalingBehavior). Default: none, except a 5m scale-down stabilization for a policy with target_tracking.
   */
  behavior?: null | ScalingBehavior;
}
/**
 * A Kubernetes object: kind and name, with its namespace and API version.
 */
export interface TargetRef {
  /**
   * The object's kind, as in its manifest: Deployment, StatefulSet, ScaledObject, or the kind of any resource with a /scale subresource.
   */
  kind: string;
  /**
   * The object's name: a DNS subdomain (lower-case letters, digits, '-' and '.', at most 253 characters).
   */
  name: string;
  /**
   * The object's namespace: a DNS label (lower-case letters, digits and '-', at most 63 characters). Default null: the executor's default namespace.
   */
  namespace?: string | null;
  /**
   * The object's apiVersion: group/version, or v1. Default null: apps/v1 for Deployment, StatefulSet and ReplicaSet, keda.sh/v1alpha1 for ScaledObject; other kinds must give it.
   */
  api_version?: string | null;
}
/**
 * A condition on one metric, and the replicas to add (or remove) when it holds: it holds when the metric has a value at every instant of its window and every value satisfies "value operator threshold".
 */
export interface ScalingRule {
  /**
   * UUID of the rule. Assigned by the server; ignored when sent.
   */
  id?: string;
  /**
   * The rule's name, by which scale_up_when or scale_down_when refers to it: a lower-case letter, then lower-case letters, digits or _, at most 63 characters; unique within the policy (both directions). Needed only by a condition tree; decision records show it. Default: none (null).
   */
  name?: string | null;
  /**
   * The query the rule reads from its metric source, 1 to 8192 characters, not blank. For a PromQL source (the bundled prometheus, or a plugin whose manifest says "queryLanguage": "promql") it must parse as one PromQL query answering an instant vector or a scalar; this is checked when the policy is written. A bare metric name is PromQL too.
   */
  metric: string;
  /**
   * Name of the loaded metric source plugin the rule queries. Default (null): the config's default_metric_source (prometheus unless configured).
   */
  source?: string | null;
  /**
   * The comparison "value operator threshold": gt (>), gte (>=), lt (<), lte (<=), eq (==) or ne (!=).
   */
  operator: 'gt' | 'gte' | 'lt' | 'lte' | 'eq' | 'ne';
  /**
   * The number each value is compared with; finite and not negative.
   */
  threshold: number;
  /**
   * How long the condition must hold: every value in the window [now - duration, now] must satisfy it, judged at instants at most one evaluation interval apart (both ends included). 0: only the value at now. At most 7d. Give duration or duration_seconds; when both are given they must agree. Answers carry both. Default 0.
   */
  duration?: string;
  /**
   * The rule's window in whole seconds, 0 to 604800 (7 days); the same value as duration, which takes precedence when both are given (they must agree). Default 0.
   */
  duration_seconds?: number;
  /**
   * How the values of the several series a query may answer at one instant fold into one value: max, min, avg or sum. Default max.
   */
  aggregation?: 'max' | 'min' | 'avg' | 'sum';
  /**
   * Replicas added when the rule's direction holds: greater than 0 in scale_up_rules, less than 0 in scale_down_rules; -100000 to 100000. The result is then clamped to [min_replicas, max_replicas] and the cost cap.
   */
  scale_by: number;
}
/**
 * A cron schedule that sets the replica count: a one-shot at each fire time, or a window from each fire time when it has a duration.
 */
export interface ScalingSchedule {
  /**
   * UUID of the schedule. Assigned by the server; ignored when sent.
   */
  id?: string;
  /**
   * Five-field cron expression read in timezone: minute hour day-of-month month day-of-week, with ranges (1-5), lists (8,12), steps (0-59/15) and names (MON-FRI, JAN). It must fire at some time; surrounding spaces are dropped. At most 256 characters.
   */
  cron_expression: string;
  /**
   * IANA time zone in which cron_expression is read. Across daylight-saving changes each fire happens once: a time repeated at fall-back fires at its first occurrence, a time skipped at spring-forward fires at the first instant after the gap. Default UTC.
   */
  timezone?: string;
  /**
   * Replicas the schedule sets: within [min_replicas, max_replicas], or 0 (which needs scale_to_zero: true unless min_replicas is 0).
   */
  desired_replicas: number;
  /**
   * Length of the window that starts at each fire time, measured in real time: the schedule applies over [fire, fire + duration), and among overlapping windows the one fired last wins. 0: a one-shot, applied once at the first evaluation within one evaluation interval after each fire. At most 365d. Give duration or duration_seconds; when both are given they must agree. Default 0.
   */
  duration?: string;
  /**
   * The schedule's window in whole seconds, 0 to 31536000 (365 days); the same value as duration, which takes precedence when both are given (they must agree). Default 0.
   */
  duration_seconds?: number;
  /**
   * What a window does (a one-shot ignores it): exact holds desired_replicas and suppresses the rules, which are still evaluated and explained; floor keeps at least desired_replicas and lets the rules act above it. Default exact.
   */
  mode?: 'exact' | 'floor';
  /**
   * Whether the schedule fires; a disabled schedule is kept but never applies. Default true.
   */
  enabled?: boolean;
}
/**
 * One tracked target. Give exactly one of target_per_replica (the metric is a total that each replica should carry this much of: desired = ceil(value / target_per_replica), KEDA's AverageValue) and target_value (the metric is a per-replica average that should sit at this value: desired = ceil(current x value / target_value), with 0 current replicas counted as 1, HPA's utilization). No opinion while the usage ratio is within tolerance of 1, nor when the metric fails or has no finite value.
 */
export interface TargetTracking {
  /**
   * UUID of the entry. Assigned by the server; kept while the entry is unchanged; ignored when sent.
   */
  id?: string;
  /**
   * The query the entry reads, 1 to 8192 characters, not blank; PromQL for a PromQL source, checked as for rules. Its value: the latest, or with a duration the average of the window's values.
   */
  metric: string;
  /**
   * Name of the loaded metric source plugin the entry queries. Default (null): the config's default_metric_source.
   */
  source?: string | null;
  /**
   * How the values of the several series a query may answer at one instant fold into one value: max, min, avg or sum. Default max.
   */
  aggregation?: 'max' | 'min' | 'avg' | 'sum';
  /**
   * The share of the metric's total each replica should carry, greater than 0: desired = ceil(value / target_per_replica). The usage ratio for the tolerance is value / (target_per_replica x current replicas). Null: not given.
   */
  target_per_replica?: number | null;
  /**
   * The value the metric (a per-replica average) should sit at, greater than 0: desired = ceil(current x value / target_value), 0 current replicas counted as 1. The usage ratio for the tolerance is value / target_value. Null: not given.
   */
  target_value?: number | null;
  /**
   * No opinion while |usage ratio - 1| <= tolerance; at least 0 and less than 1. Default 0.1.
   */
  tolerance?: number;
  /**
   * With a duration, the value is the average of the finite values at the window's instants [now - duration, now] (instants at most one evaluation interval apart); 0 or absent: the latest value. At most 7d. Give duration or duration_seconds; when both are given they must agree.
   */
  duration?: string;
  /**
   * The entry's window in whole seconds, 0 to 604800; the same value as duration, which takes precedence when both are given (they must agree). Default 0.
   */
  duration_seconds?: number;
}
/**
 * How fast replicas may change, as HPA's behavior: stabilization windows and rate limits. They apply to what rules and target tracking propose; schedules and the fallback are not stabilized or limited.
 */
export interface ScalingBehavior {
  /**
   * A scale-down goes only as low as the highest proposal made during this window (the current one included). A duration up to 1d; default 5m when the policy has target_tracking, else 0 (none). Give it or scale_down_stabilization_seconds; when both are given they must agree.
   */
  scale_down_stabilization?: string;
  /**
   * The same window in whole seconds, 0 to 86400; scale_down_stabilization takes precedence when both are given (they must agree).
   */
  scale_down_stabilization_seconds?: number;
  /**
   * A scale-up goes only as high as the lowest proposal made during this window (the current one included). A duration up to 1d; default 0 (none). Give it or scale_up_stabilization_seconds; when both are given they must agree.
   */
  scale_up_stabilization?: string;
  /**
   * The same window in whole seconds, 0 to 86400; scale_up_stabilization takes precedence when both are given (they must agree).
   */
  scale_up_stabilization_seconds?: number;
  /**
   * At most this much increase per period. Default null: none.
   */
  scale_up_limit?: null | RateLimit;
  /**
   * At most this much decrease per period. Default null: none.
   */
  scale_down_limit?: null | RateLimit;
}
/**
 * A rate limit on one direction: within any period, replicas may not change by more than replicas, or than percent of the count at the period's start (the current count less the net change within the period); with both, the larger change (select max) or the smaller (select min). Give replicas, percent or both. Applies to changes made by rules and target tracking, not to schedules or the fallback.
 */
export interface RateLimit {
  /**
   * Replicas that may be added (removed) per period; an integer from 1 to 100000. Null: not given.
   */
  replicas?: number | null;
  /**
   * Percent of the count at the period's start that may be added (removed) per period, greater than 0 (at most 100 for scale-down, at most 10000 for scale-up). Scale-up rounds up, scale-down rounds down. Null: not given.
   */
  percent?: number | null;
  /**
   * The period the limit applies over: a duration from 1s to 1d, such as 15s or 1m. Give period or period_seconds; when both are given they must agree.
   */
  period?: string;
  /**
   * The period in whole seconds, 1 to 86400; the same value as period, which takes precedence when both are given (they must agree).
   */
  period_seconds?: number;
  /**
   * With both replicas and percent: max takes the one allowing the larger change, min the smaller. Default max.
   */
  select?: 'max' | 'min';
}
