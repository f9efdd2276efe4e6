/**
 * The plugin contract of Philotes Scaler, version 1. Third parties import these types from
 * 'philotes-scaler/plugin'. A plugin sees only what is here: its validated config and a logger.
 *
 * A plugin is a folder with a package.json that carries a "philotes-scaler" manifest
 * ({@link PluginManifest}) and an ES module entry whose default export is a {@link PluginFactory}.
 */

/** The plugin API version this daemon implements; manifests declare a semver range of it. */
export const PLUGIN_API_VERSION = '1.1.0';

export type PluginKind = 'metric-source' | 'executor';

/** The "philotes-scaler" key of a plugin's package.json. */
export interface PluginManifest {
  kind: PluginKind;
  /** Name policies and config use; default: the package name without scope. */
  name?: string;
  /** Range of plugin API versions supported, such as "^1.0.0". */
  apiVersion: string;
  /** JSON Schema (2020-12) of the plugin's config, or a path to one relative to the package. */
  configSchema?: Record<string, unknown> | string;
  /**
   * For a metric source: the language of its queries (the `metric` of the rules that read it).
   * `"promql"` makes the daemon refuse a policy whose metric for this source is not valid PromQL
   * when the policy is written (REST, policy files, `validate`), instead of failing every cycle.
   * Other values are not checked.
   */
  queryLanguage?: string;
}

/** The logger a plugin gets: a child of the daemon's, tagged with the plugin's name. */
export interface PluginLogger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/** What a plugin factory receives. */
export interface PluginContext<Config = Record<string, unknown>> {
  /** The plugin's name. */
  name: string;
  /** Its config, validated against its schema, defaults applied. */
  config: Config;
  logger: PluginLogger;
  /** The daemon's plugin API version. */
  apiVersion: string;
}

/** How several series fold into one value per time. */
export type Aggregation = 'max' | 'min' | 'avg' | 'sum';

/** One value at one time (unix seconds). */
export interface Sample {
  t: number;
  v: number;
}

export interface InstantQuery {
  query: string;
  aggregation: Aggregation;
  time: Date;
  /** Aborted when the daemon's per-call timeout passes. */
  signal: AbortSignal;
}

export interface RangeQuery {
  query: string;
  aggregation: Aggregation;
  start: Date;
  end: Date;
  stepSeconds: number;
  signal: AbortSignal;
}

/**
 * A metric source. Answers are folded to one value per time with the query's aggregation.
 * Failures and empty results must be thrown (as {@link MetricSourceError}). NaN and infinities
 * are answered as values (`v: NaN`): the instant they are at fails a rule's condition, and the
 * rest of a range stays usable; they are not metric errors.
 */
export interface MetricSource {
  /** The latest value at `time`. */
  instantQuery(q: InstantQuery): Promise<Sample>;
  /**
   * The value at each step `start + k * stepSeconds` up to `end`, as Prometheus's query_range
   * answers them (the latest sample at or before each step, within the lookback); a step without
   * a value is left out (a gap). Steps are whole milliseconds and may have a fraction of a second
   * (`stepSeconds` 22.5). Optional: without it the daemon asks instantQuery once per cycle and
   * keeps the answers itself.
   */
  rangeQuery?(q: RangeQuery): Promise<Sample[]>;
  /** Resolves when the source is reachable; used by /readyz. Optional. */
  healthCheck?(signal: AbortSignal): Promise<void>;
  close?(): Promise<void>;
}

/** A Kubernetes object, as a policy's `target_ref` names it (since plugin API 1.1). */
export interface TargetRef {
  kind: string;
  name: string;
  /** null: the executor's default namespace. */
  namespace: string | null;
  /** null: the kind's usual one (apps/v1, keda.sh/v1alpha1), as the executor knows it. */
  apiVersion: string | null;
}

/** The target of a scaling action. */
export interface ScaleTarget {
  policyId: string;
  policyName: string;
  targetType: string;
  targetId: string | null;
  /** The policy's `target_ref`, or null when it names none (since plugin API 1.1). */
  targetRef: TargetRef | null;
}

export interface ScaleOptions {
  /** Decide and report, but change nothing. */
  dryRun: boolean;
  /** One sentence saying why, for the executor's own logs. */
  reason: string;
  signal: AbortSignal;
  /**
   * The id of this change (the history row's id): unique per decision, so an executor that
   * retries can send it as an idempotency key (since plugin API 1.1).
   */
  decisionId: string;
  /** The replica count the decision started from (since plugin API 1.1). */
  previousReplicas: number;
}

/** An executor: reports and changes the replica count of targets of the types it declares. */
export interface Executor {
  /** Target types this executor handles. */
  readonly targetTypes: readonly string[];
  /** Current replicas, or null when the executor cannot tell. */
  getCurrentReplicas(target: ScaleTarget, opts: { signal: AbortSignal }): Promise<number | null>;
  /**
   * Optional: the current replicas of many targets in one call, by policy id (a target left out,
   * or null, means the executor cannot tell). The loop asks once per cycle for all the policies
   * the executor serves instead of once per policy: one list call to a cluster API rather than
   * thousands. If it fails, the loop asks per policy that cycle.
   */
  getCurrentReplicasMany?(targets: readonly ScaleTarget[], opts: { signal: AbortSignal }): Promise<ReadonlyMap<string, number | null>>;
  /** Sets the replica count; throws when it cannot. */
  scale(target: ScaleTarget, replicas: number, opts: ScaleOptions): Promise<void>;
  close?(): Promise<void>;
}

/** The default export of a plugin's entry module. */
export type PluginFactory = (ctx: PluginContext) => MetricSource | Executor | Promise<MetricSource | Executor>;

/** Error kinds a metric source reports; they appear in decision records. */
export type MetricErrorKind = 'unreachable' | 'timeout' | 'http' | 'query' | 'empty' | 'nan' | 'infinite' | 'malformed';

/** The error a metric source throws for a bad or missing answer. */
export class MetricSourceError extends Error {
  readonly kind: MetricErrorKind;
  constructor(kind: MetricErrorKind, message: string) {
    super(message);
    this.name = 'MetricSourceError';
    this.kind = kind;
  }
}

/**
 * The largest (sign 1) or smallest (sign -1) value, as Prometheus's max() and min() fold: a NaN
 * counts only when every value is NaN.
 */
function extreme(values: readonly number[], sign: 1 | -1): number {
  let out = NaN;
  for (const v of values) if (Number.isNaN(out) || (!Number.isNaN(v) && (v - out) * sign > 0)) out = v;
  return out;
}

/** Folds values of several series at one time; shared so every source folds the same way. */
export function fold(values: readonly number[], aggregation: Aggregation): number {
  switch (aggregation) {
    case 'min':
      return extreme(values, -1);
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'avg':
      return values.reduce((a, b) => a + b, 0) / values.length;
    default:
      return extreme(values, 1);
  }
}
