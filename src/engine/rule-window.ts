import type { Rule } from '../policy/policy-model.js';
import type { Sample } from '../plugins/api.js';
import type { Observation, RuleRecord, RuleWindow } from './decision.js';

/** Range queries answer at most this many points per series (Prometheus refuses more than 11,000). */
const MAX_POINTS = 10_000;

/**
 * The window a rule needs at `now`: steps at most one evaluation interval apart (DESIGN.md step
 * 2), widened only when a very long window would exceed MAX_POINTS.
 */
export function ruleWindow(rule: Pick<Rule, 'duration_seconds'>, now: Date, intervalSeconds: number): RuleWindow {
  const end = Math.floor(now.getTime() / 1000);
  const seconds = rule.duration_seconds;
  const step = Math.max(1, Math.min(intervalSeconds, seconds), Math.ceil(seconds / MAX_POINTS));
  return { start: end - seconds, end, step, seconds };
}

const KEY = Symbol('observationKey');
type Keyed = { [KEY]?: { defaultSource: string; key: string } };

/** Identifies one metric request: rules with equal keys share one fetch per cycle. */
export function observationKey(rule: Pick<Rule, 'source' | 'metric' | 'aggregation' | 'duration_seconds'>, defaultSource: string): string {
  // Rule objects are reused across cycles (the loop caches policies), so the key is built once
  // and kept on the rule under a private symbol (a WeakMap lookup per rule per cycle cost more).
  const cached = (rule as Keyed)[KEY];
  if (cached !== undefined && cached.defaultSource === defaultSource) return cached.key;
  const key = `${rule.source ?? defaultSource}\u0000${rule.aggregation}\u0000${rule.duration_seconds}\u0000${rule.metric}`;
  if (Object.isExtensible(rule)) Object.defineProperty(rule, KEY, { value: { defaultSource, key }, writable: true, enumerable: false });
  return key;
}

/** The comparison each operator makes (value OP threshold). */
export const OPS: Record<Rule['operator'], (v: number, t: number) => boolean> = {
  gt: (v, t) => v > t,
  gte: (v, t) => v >= t,
  lt: (v, t) => v < t,
  lte: (v, t) => v <= t,
  eq: (v, t) => v === t,
  ne: (v, t) => v !== t,
};

export const OPERATOR_SYMBOL: Record<Rule['operator'], string> = { gt: '>', gte: '>=', lt: '<', lte: '<=', eq: '==', ne: '!=' };

/**
 * Whether one rule holds (DESIGN.md steps 2 and 8): a value at every step of the window, each
 * satisfying the condition; an error, an empty answer or a non-finite value means it does not.
 */
export function checkRule(
  rule: Rule,
  direction: RuleRecord['direction'],
  source: string,
  obs: Observation | undefined,
  win: RuleWindow,
): RuleRecord {
  // This runs once per rule per evaluation (43,200 times per rule in a month-long backtest), so it
  // makes one pass over the samples and allocates nothing but the record.
  const record = (held: boolean, samples: number, value: number | null, latest: number | null, error: string | null, detail: string | null): RuleRecord => ({
    id: rule.id,
    direction,
    metric: rule.metric,
    source,
    operator: rule.operator,
    threshold: rule.threshold,
    aggregation: rule.aggregation,
    window_seconds: win.seconds,
    step_seconds: win.step,
    samples,
    value,
    latest,
    held,
    error,
    detail,
  });
  if (obs === undefined) return record(false, 0, null, null, 'no observation', 'no value was fetched for this rule');
  if (obs.error !== undefined) return record(false, 0, null, null, `${obs.error.kind}: ${obs.error.message}`, 'the metric source failed');

  // Only the part of the answer inside the window counts: [lo, hi) of the samples.
  const all = obs.samples;
  const tol = win.step / 2;
  let lo = 0;
  let hi = all.length;
  if (win.seconds === 0) lo = Math.max(0, hi - 1);
  else {
    while (lo < hi && (all[lo] as Sample).t < win.start - tol) lo++;
    while (hi > lo && (all[hi - 1] as Sample).t > win.end + tol) hi--;
  }
  const count = hi - lo;
  if (count === 0) return record(false, 0, null, null, 'empty: no value in the window', 'the metric source had no value');

  const op = OPS[rule.operator];
  const lowest = rule.operator === 'gt' || rule.operator === 'gte';
  const highest = rule.operator === 'lt' || rule.operator === 'lte';
  let min = Infinity;
  let max = -Infinity;
  let violating: Sample | undefined;
  let widestGap = 0;
  for (let i = lo; i < hi; i++) {
    const s = all[i] as Sample;
    if (!Number.isFinite(s.v)) {
      return record(false, count, null, null, `${Number.isNaN(s.v) ? 'nan' : 'infinite'}: the source answered ${s.v}`, 'a value was not a finite number');
    }
    if (s.v < min) min = s.v;
    if (s.v > max) max = s.v;
    if (violating === undefined && !op(s.v, rule.threshold)) violating = s;
    if (i > lo) {
      const gap = s.t - (all[i - 1] as Sample).t;
      if (gap > widestGap) widestGap = gap;
    }
  }
  const latest = (all[hi - 1] as Sample).v;
  const decisive = lowest ? min : highest ? max : latest;

  if (win.seconds > 0) {
    // Coverage: a value near the start, one at the last step, and no gap wider than a step.
    const first = (all[lo] as Sample).t;
    const last = (all[hi - 1] as Sample).t;
    if (first > win.start + tol) {
      return record(false, count, decisive, latest, null, `no value from ${iso(win.start)} to ${iso(first)}: the condition has not been observed for the whole ${win.seconds}s`);
    }
    // The last step of the range query: `end` itself when the window is a whole number of steps.
    const lastStep = win.start + Math.floor(win.seconds / win.step) * win.step;
    if (last < lastStep - tol) {
      return record(false, count, decisive, latest, null, `no value at the last step ${iso(lastStep)} (the latest is from ${iso(last)}): the condition has not been observed for the whole ${win.seconds}s`);
    }
    if (widestGap > win.step + tol) {
      return record(false, count, decisive, latest, null, `a gap of ${widestGap}s in the window (step ${win.step}s): the condition has not held for the whole duration`);
    }
  }
  if (violating !== undefined) {
    return record(false, count, decisive, latest, null, `${violating.v} ${OPERATOR_SYMBOL[rule.operator]} ${rule.threshold} is false at ${iso(violating.t)}`);
  }
  return record(true, count, decisive, latest, null, null);
}

const isoCache = new Map<number, string>();

/**
 * ISO text of a unix time, cached: in one cycle thousands of records name the same few instants
 * (now, window starts, sample times), and formatting dates was the largest cost left in an evaluation.
 */
export function isoMs(ms: number): string {
  let text = isoCache.get(ms);
  if (text === undefined) {
    text = new Date(ms).toISOString();
    if (isoCache.size >= 4096) isoCache.clear();
    isoCache.set(ms, text);
  }
  return text;
}

export function iso(unixSeconds: number): string {
  return isoMs(unixSeconds * 1000);
}
