import type { ErrorObject } from 'ajv/dist/2020.js';
import { Cron } from 'croner';
import type { FieldError } from '../errors.js';
import { toFieldErrors, validator, POLICY_SCHEMA_ID } from '../schemas.js';
import { formatDuration, parseDuration } from '../util/duration.js';
import type { PolicyInput } from './policy-model.js';
import { promqlProblem } from './promql.js';
import { checkConditionTree, checkRuleNames } from './condition-tree.js';

/** What validation needs to know about the running daemon; the service supplies it. */
export interface ValidationContext {
  /** Target types a policy may name: the built-in four, the config's, and those loaded executors declare. */
  targetTypes(): ReadonlySet<string>;
  /** Names of metric sources a rule may name. */
  metricSources(): ReadonlySet<string>;
  /** Names of executors a policy may name. */
  executors(): ReadonlySet<string>;
  /**
   * Whether the metric source a rule reads (its `source`, or undefined for the default source)
   * takes PromQL, so that the rule's metric must parse as PromQL.
   */
  speaksPromQL(source: string | undefined): boolean;
  /** The config's price of one replica-hour for a target type, if any. */
  priceFor(targetType: string): number | undefined;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when the zone is an IANA name the runtime knows. */
export function isValidTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Checks a five-field cron expression; returns a message, or undefined when it is valid. */
export function cronProblem(expr: string, timezone: string): string | undefined {
  const fields = expr.trim().split(/\s+/);
  if (fields.length !== 5) return `must have 5 fields (minute hour day-of-month month day-of-week), found ${fields.length}`;
  try {
    const cron = new Cron(expr, { timezone: isValidTimeZone(timezone) ? timezone : 'UTC' });
    if (cron.nextRun(new Date()) === null) return 'never fires';
    return undefined;
  } catch (err) {
    return `is not a valid cron expression: ${(err as Error).message}`;
  }
}

// The schema's maxima for duration_seconds: a string duration must respect them too, or a policy
// would be stored whose answer (which carries duration_seconds) the API then refuses on a PUT.
const MAX_RULE_DURATION = 604_800; // 7 days
const MAX_SCHEDULE_DURATION = 31_536_000; // 365 days

/**
 * Whether `replicas` at `price` per replica-hour stays within `cap`. Prices are decimal money, so
 * a float product such as 3 x 0.1 = 0.30000000000000004 must still fit a cap of 0.3; the engine's
 * cost cap should use this same test so validation and evaluation agree.
 */
export function costWithinCap(replicas: number, price: number, cap: number): boolean {
  return replicas * price <= cap + Math.max(1e-9, Math.abs(cap) * 1e-12);
}

/** A refused value, quoted for a message: escaped, and cut short when long. */
function quoteValue(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

/**
 * The one message for a string that is not a duration, whether the schema's pattern (see
 * $defs/duration) or parseDuration refused it: the value and the form expected.
 */
export function durationProblem(text: string): string {
  return `${quoteValue(text)} is not a duration: use whole numbers with the units d, h, m and s, in that order and without spaces, such as "90s", "5m", "1h30m" or "1d"`;
}

/**
 * ajv's own words for a duration that breaks $defs/duration ('must match pattern "^(0|...)$"',
 * or a length limit, often both for one value) replaced by durationProblem, so the value's
 * pointer carries one readable message. Other errors are returned as they are.
 */
export function explainDurationErrors(errors: readonly ErrorObject[], input: unknown): ErrorObject[] {
  return errors.map((e) => {
    const v = valueAt(input, e.instancePath);
    if (e.schemaPath.startsWith('#/$defs/duration/')) return typeof v === 'string' ? { ...e, message: durationProblem(v) } : e;
    const ref = TARGET_REF_PATTERNS[e.schemaPath];
    return ref !== undefined && typeof v === 'string' ? { ...e, message: `${quoteValue(v)} ${ref}` } : e;
  });
}

/** Readable words for the patterns of target_ref's fields, in place of the regular expressions. */
const TARGET_REF_PATTERNS: Record<string, string> = {
  '#/$defs/target_ref/properties/kind/pattern': 'is not a kind: a name such as Deployment, starting with a capital letter, letters and digits only',
  '#/$defs/target_ref/properties/name/pattern': "is not an object name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
  '#/$defs/target_ref/properties/namespace/pattern': "is not a namespace: lower-case letters, digits and '-', starting and ending with a letter or digit",
  '#/$defs/target_ref/properties/api_version/pattern': 'is not an apiVersion: group/version such as apps/v1 or keda.sh/v1alpha1, or v1',
};

function checkDuration(item: Obj, at: string, max: number, errors: FieldError[]): number | undefined {
  const d = item['duration'];
  const ds = item['duration_seconds'];
  let seconds: number | undefined;
  if (typeof d === 'string') {
    seconds = parseDuration(d);
    if (seconds === undefined) {
      errors.push({ field: `${at}/duration`, message: durationProblem(d) });
    } else if (seconds > max) {
      errors.push({ field: `${at}/duration`, message: `"${d}" is ${seconds} seconds, more than the maximum of ${max} (${formatDuration(max)})` });
      seconds = undefined;
    }
  }
  if (isInt(ds) && seconds !== undefined && ds !== seconds) {
    errors.push({ field: `${at}/duration_seconds`, message: `is ${ds} but duration "${String(d)}" is ${seconds} seconds; give one or make them agree` });
  }
  return seconds ?? (isInt(ds) ? ds : undefined);
}

function checkRules(p: Obj, key: 'scale_up_rules' | 'scale_down_rules', ctx: ValidationContext, errors: FieldError[]): void {
  const rules = p[key];
  if (!Array.isArray(rules)) return;
  const up = key === 'scale_up_rules';
  rules.forEach((rule: unknown, i) => {
    if (!isObj(rule)) return;
    const at = `/${key}/${i}`;
    const by = rule['scale_by'];
    if (isInt(by)) {
      if (up && by <= 0) errors.push({ field: `${at}/scale_by`, message: 'must be greater than 0 for a scale-up rule' });
      if (!up && by >= 0) errors.push({ field: `${at}/scale_by`, message: 'must be less than 0 for a scale-down rule' });
    }
    const t = rule['threshold'];
    if (typeof t === 'number') {
      if (!Number.isFinite(t)) errors.push({ field: `${at}/threshold`, message: `must be a finite number, not ${String(t)}` });
      else if (t < 0) errors.push({ field: `${at}/threshold`, message: 'must not be negative' });
    }
    checkDuration(rule, at, MAX_RULE_DURATION, errors);
    checkMetric(rule, at, ctx, errors);
  });
}

/** Checks the query and the source of a rule or a target-tracking entry. */
function checkMetric(item: Obj, at: string, ctx: ValidationContext, errors: FieldError[]): void {
  const source = item['source'];
  if (typeof source === 'string' && !ctx.metricSources().has(source)) {
    errors.push({ field: `${at}/source`, message: `unknown metric source "${source}"; known: ${[...ctx.metricSources()].join(', ') || 'none'}` });
  }
  const metric = item['metric'];
  if (typeof metric === 'string' && metric.trim() === '') {
    errors.push({ field: `${at}/metric`, message: 'must not be blank' });
  } else if (typeof metric === 'string' && ctx.speaksPromQL(typeof source === 'string' ? source : undefined)) {
    // Refused now rather than failing every cycle: Prometheus would not parse it either.
    const problem = promqlProblem(metric);
    if (problem !== undefined) errors.push({ field: `${at}/metric`, message: problem });
  }
}

/** At most this many target-tracking entries per policy. */
export const MAX_TARGET_TRACKING = 20;

function checkTargetTracking(p: Obj, ctx: ValidationContext, errors: FieldError[]): void {
  const entries = p['target_tracking'];
  if (!Array.isArray(entries)) return;
  if (entries.length > MAX_TARGET_TRACKING) errors.push({ field: '/target_tracking', message: `must have at most ${MAX_TARGET_TRACKING} entries, got ${entries.length}` });
  entries.forEach((e: unknown, i) => {
    if (!isObj(e)) return;
    const at = `/target_tracking/${i}`;
    const perReplica = e['target_per_replica'];
    const value = e['target_value'];
    const given = (v: unknown): boolean => v !== undefined && v !== null;
    if (!given(perReplica) && !given(value)) {
      errors.push({ field: at, message: 'needs a target: give target_per_replica (the metric is a total) or target_value (the metric is a per-replica average)' });
    } else if (given(perReplica) && given(value)) {
      errors.push({ field: `${at}/target_value`, message: 'give target_per_replica or target_value, not both' });
    }
    for (const key of ['target_per_replica', 'target_value'] as const) {
      const t = e[key];
      if (typeof t === 'number' && !(Number.isFinite(t) && t > 0)) errors.push({ field: `${at}/${key}`, message: `must be a finite number greater than 0, got ${String(t)}` });
    }
    const tol = e['tolerance'];
    if (typeof tol === 'number' && !(tol >= 0 && tol < 1)) errors.push({ field: `${at}/tolerance`, message: `must be at least 0 and less than 1, got ${String(tol)}` });
    checkDuration(e, at, MAX_RULE_DURATION, errors);
    checkMetric(e, at, ctx, errors);
  });
}

/** The longest stabilization window and rate-limit period. */
const MAX_BEHAVIOR_SECONDS = 86_400;

/**
 * A duration given as text (`key`) or whole seconds (`key_seconds`), or both agreeing; its
 * seconds, or undefined when it is absent or wrong (and reported).
 */
function checkDurationPair(item: Obj, at: string, key: string, range: { min: number; max: number }, errors: FieldError[]): number | undefined {
  const d = item[key];
  const ds = item[`${key}_seconds`];
  let seconds: number | undefined;
  if (typeof d === 'string') {
    seconds = parseDuration(d);
    if (seconds === undefined) errors.push({ field: `${at}/${key}`, message: durationProblem(d) });
    else if (seconds < range.min || seconds > range.max) {
      errors.push({ field: `${at}/${key}`, message: `must be from ${formatDuration(range.min)} to ${formatDuration(range.max)}, got "${d}"` });
      seconds = undefined;
    }
  }
  if (isInt(ds) && seconds !== undefined && ds !== seconds) {
    errors.push({ field: `${at}/${key}_seconds`, message: `is ${ds} but ${key} "${String(d)}" is ${seconds} seconds; give one or make them agree` });
  }
  return seconds ?? (isInt(ds) ? ds : undefined);
}

function checkBehavior(p: Obj, errors: FieldError[]): void {
  const b = p['behavior'];
  if (!isObj(b)) return;
  for (const key of ['scale_down_stabilization', 'scale_up_stabilization'] as const) checkDurationPair(b, '/behavior', key, { min: 0, max: MAX_BEHAVIOR_SECONDS }, errors);
  for (const key of ['scale_up_limit', 'scale_down_limit'] as const) {
    const l = b[key];
    if (!isObj(l)) continue;
    const at = `/behavior/${key}`;
    const replicas = l['replicas'];
    const percent = l['percent'];
    if ((replicas === undefined || replicas === null) && (percent === undefined || percent === null)) {
      errors.push({ field: at, message: 'needs replicas, percent or both: how much may change per period' });
    }
    if (typeof replicas === 'number' && !(Number.isInteger(replicas) && replicas >= 1 && replicas <= 100_000)) {
      errors.push({ field: `${at}/replicas`, message: `must be an integer from 1 to 100000, got ${String(replicas)}` });
    }
    const maxPercent = key === 'scale_down_limit' ? 100 : 10_000;
    if (typeof percent === 'number' && !(Number.isFinite(percent) && percent > 0 && percent <= maxPercent)) {
      errors.push({ field: `${at}/percent`, message: `must be greater than 0 and at most ${maxPercent}, got ${String(percent)}` });
    }
    if (l['period'] === undefined && l['period_seconds'] === undefined) errors.push({ field: `${at}/period`, message: 'is required: the period the limit applies over, such as 15s or 1m' });
    else checkDurationPair(l, at, 'period', { min: 1, max: MAX_BEHAVIOR_SECONDS }, errors);
  }
}

function checkSchedules(p: Obj, ctx: { min?: number; max?: number; scaleToZero: boolean }, errors: FieldError[]): void {
  const schedules = p['schedules'];
  if (!Array.isArray(schedules)) return;
  schedules.forEach((s: unknown, i) => {
    if (!isObj(s)) return;
    const at = `/schedules/${i}`;
    const tz = s['timezone'];
    const zone = typeof tz === 'string' ? tz : 'UTC';
    if (typeof tz === 'string' && !isValidTimeZone(tz)) {
      errors.push({ field: `${at}/timezone`, message: `"${tz}" is not an IANA time zone (such as Europe/Budapest or UTC)` });
    }
    const expr = s['cron_expression'];
    if (typeof expr === 'string') {
      const problem = cronProblem(expr, zone);
      if (problem !== undefined) errors.push({ field: `${at}/cron_expression`, message: problem });
    }
    const desired = s['desired_replicas'];
    // With min > max the range is empty; that one problem is reported on /min_replicas, not here too.
    if (isInt(desired) && ctx.min !== undefined && ctx.max !== undefined && ctx.min <= ctx.max) {
      if (desired === 0 && !ctx.scaleToZero && ctx.min > 0) {
        errors.push({ field: `${at}/desired_replicas`, message: 'is 0, which needs scale_to_zero: true' });
      } else if (desired !== 0 && (desired < ctx.min || desired > ctx.max)) {
        errors.push({ field: `${at}/desired_replicas`, message: `must be within [min_replicas, max_replicas] = [${ctx.min}, ${ctx.max}]` });
      }
    }
    checkDuration(s, at, MAX_SCHEDULE_DURATION, errors);
  });
}

/**
 * The service-layer checks on top of the schema. Written defensively so
 * it can run on input that failed the schema too: every problem is reported at once.
 */
export function semanticProblems(input: unknown, ctx: ValidationContext): FieldError[] {
  const errors: FieldError[] = [];
  if (!isObj(input)) return errors;
  const min = isInt(input['min_replicas']) ? input['min_replicas'] : undefined;
  const max = isInt(input['max_replicas']) ? input['max_replicas'] : undefined;
  const scaleToZero = input['scale_to_zero'] === true;

  if (max !== undefined && max < 1) errors.push({ field: '/max_replicas', message: 'must be at least 1' });
  if (min !== undefined && max !== undefined && min > max) {
    errors.push({ field: '/min_replicas', message: `must not exceed max_replicas (${min} > ${max})` });
  }

  const targetType = input['target_type'];
  if (typeof targetType === 'string' && !ctx.targetTypes().has(targetType)) {
    errors.push({ field: '/target_type', message: `unknown target type "${targetType}"; known: ${[...ctx.targetTypes()].join(', ')}` });
  }
  // `/policies/:id` takes an id or a name; a name shaped like a UUID would be read as an id.
  const name = input['name'];
  if (typeof name === 'string' && UUID_RE.test(name)) {
    errors.push({ field: '/name', message: 'must not be a UUID: /policies/:id would read it as a policy id' });
  }
  // The schema's "uuid" format (ajv-formats) also accepts a "urn:uuid:" prefix; a target id is the bare UUID.
  const targetId = input['target_id'];
  if (typeof targetId === 'string' && !UUID_RE.test(targetId)) {
    errors.push({ field: '/target_id', message: 'must be a UUID such as 550e8400-e29b-41d4-a716-446655440000' });
  }
  const executor = input['executor'];
  if (typeof executor === 'string' && !ctx.executors().has(executor)) {
    errors.push({ field: '/executor', message: `unknown executor "${executor}"; known: ${[...ctx.executors()].join(', ') || 'none'}` });
  }

  checkRules(input, 'scale_up_rules', ctx, errors);
  checkRules(input, 'scale_down_rules', ctx, errors);
  checkRuleNames(input, errors);
  checkConditionTree(input, 'scale_up', errors);
  checkConditionTree(input, 'scale_down', errors);
  checkSchedules(input, { min, max, scaleToZero }, errors);
  checkTargetTracking(input, ctx, errors);
  checkBehavior(input, errors);

  // Cost cap: needs a price, and must at least pay for min_replicas.
  const cap = input['max_hourly_cost'];
  if (typeof cap === 'number') {
    const own = input['cost_per_replica_hour'];
    const price = typeof own === 'number' ? own : typeof targetType === 'string' ? ctx.priceFor(targetType) : undefined;
    if (price === undefined) {
      errors.push({
        field: '/max_hourly_cost',
        // Not String(targetType): input such as {"toString": []} makes String() throw (a 500, not a 422).
        message: `needs a price: set cost_per_replica_hour or a config price for ${typeof targetType === 'string' ? `target type "${targetType}"` : 'its target type'}`,
      });
    } else if (min !== undefined && !costWithinCap(min, price, cap)) {
      errors.push({
        field: '/max_hourly_cost',
        message: `${cap} cannot pay for min_replicas: ${min} x ${price} = ${min * price} per hour`,
      });
    }
  }

  const mode = input['on_metric_error'];
  const fallback = input['fallback'];
  if (mode === 'fallback' && !isObj(fallback)) {
    errors.push({ field: '/fallback', message: 'is required when on_metric_error is "fallback"' });
  }
  if (isObj(fallback) && isInt(fallback['replicas']) && min !== undefined && max !== undefined && min <= max) {
    const r = fallback['replicas'];
    if ((r !== 0 || !scaleToZero) && (r < min || r > max)) {
      errors.push({ field: '/fallback/replicas', message: `must be within [min_replicas, max_replicas] = [${min}, ${max}]` });
    }
  }
  return errors;
}

/** The value a JSON pointer names inside `doc`, or undefined. */
function valueAt(doc: unknown, pointer: string): unknown {
  let v: unknown = doc;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(v)) v = v[Number(key)];
    else if (isObj(v) && Object.hasOwn(v, key)) v = v[key];
    else return undefined;
  }
  return v;
}

/**
 * YAML can say `.inf` and `.nan`, which ajv refuses as "must be number" (it checks numbers are
 * finite); to a reader who wrote a number that message is a riddle, so it says what is wrong.
 */
function explainNonFinite(errors: FieldError[], input: unknown): FieldError[] {
  return errors.map((e) => {
    if (e.message !== 'must be number' && e.message !== 'must be integer') return e;
    const v = valueAt(input, e.field);
    return typeof v === 'number' && !Number.isFinite(v) ? { field: e.field, message: `must be a finite number, not ${String(v)}` } : e;
  });
}

const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Strings with a lone UTF-16 surrogate (JSON's "\ud800", YAML's "\ud800") cannot be stored as
 * sent: storage writes UTF-8, and the text would come back as replacement characters (a metric
 * query silently changed). Run on schema-valid input only, whose depth the schema bounds.
 */
function illFormedStrings(input: unknown): FieldError[] {
  const errors: FieldError[] = [];
  const walk = (v: unknown, at: string): void => {
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) errors.push({ field: at, message: 'must be well-formed Unicode: it contains a lone surrogate (U+D800 to U+DFFF)' });
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}/${i}`));
    else if (isObj(v)) for (const [k, x] of Object.entries(v)) walk(x, `${at}/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`);
  };
  walk(input, '');
  return errors;
}

/** The input without its condition trees, for the schema (see validatePolicyInput). */
function withoutTrees(input: unknown): unknown {
  if (!isObj(input) || (!Object.hasOwn(input, 'scale_up_when') && !Object.hasOwn(input, 'scale_down_when'))) return input;
  const { scale_up_when: _up, scale_down_when: _down, ...rest } = input;
  return rest;
}

/** Schema then semantic checks; every problem, each with its field. */
export function validatePolicyInput(input: unknown, ctx: ValidationContext): { ok: true; value: PolicyInput } | { ok: false; errors: FieldError[] } {
  const validate = validator<PolicyInput>(POLICY_SCHEMA_ID);
  // Condition trees are checked by checkConditionTree alone (semanticProblems): it names each
  // problem at its node, where the schema's anyOf would list every alternative, and it stops at
  // the depth limit, where the schema's recursion would follow a hostile nesting to its end.
  const body = withoutTrees(input);
  const schemaOk = validate(body);
  const errors = schemaOk ? illFormedStrings(body) : explainNonFinite(toFieldErrors(explainDurationErrors(validate.errors ?? [], body)), body);
  const seen = new Set(errors.map((e) => e.field));
  for (const e of semanticProblems(input, ctx)) {
    if (!seen.has(e.field)) errors.push(e);
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, value: input as PolicyInput };
}
