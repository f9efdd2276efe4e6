import type { Rule } from '../policy/policy-model.js';
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

/** Identifies one metric request: rules with equal keys share one fetch per cycle. */
export function observationKey(rule: Pick<Rule, 'source' | 'metric' | 'aggregation' | 'duration_seconds'>, defaultSource: string): string {
  return [rule.source ?? defaultSource, rule.aggregation, rule.duration_seconds, rule.metric].join('\u0000');
}

const OPS: Record<Rule['operator'], (v: number, t: number) => boolean> = {
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
  const base = {
    id: rule.id,
    direction,
    metric: rule.metric,
    source,
    operator: rule.operator,
    threshold: rule.threshold,
    aggregation: rule.aggregation,
    window_seconds: win.seconds,
    step_seconds: win.step,
  };
  const fail = (error: string | null, detail: string, samples = 0, value: number | null = null, latest: number | null = null): RuleRecord => ({
    ...base,
    samples,
    value,
    latest,
    held: false,
    error,
    detail,
  });
  if (obs === undefined) return fail('no observation', 'no value was fetched for this rule');
  if (obs.error !== undefined) return fail(`${obs.error.kind}: ${obs.error.message}`, 'the metric source failed');

  // Only the part of the answer inside the window counts.
  const tol = win.step / 2;
  const samples = win.seconds === 0 ? obs.samples.slice(-1) : obs.samples.filter((s) => s.t >= win.start - tol && s.t <= win.end + tol);
  if (samples.length === 0) return fail('empty: no value in the window', 'the metric source had no value');
  for (const s of samples) {
    if (!Number.isFinite(s.v)) {
      return fail(`${Number.isNaN(s.v) ? 'nan' : 'infinite'}: the source answered ${s.v}`, 'a value was not a finite number', samples.length);
    }
  }
  const latest = (samples.at(-1) as { v: number }).v;
  const values = samples.map((s) => s.v);
  const decisive =
    rule.operator === 'gt' || rule.operator === 'gte' ? Math.min(...values) : rule.operator === 'lt' || rule.operator === 'lte' ? Math.max(...values) : latest;

  if (win.seconds > 0) {
    // Coverage: a value near the start, one near the end, and no gap wider than a step.
    const first = (samples[0] as { t: number }).t;
    const last = (samples.at(-1) as { t: number }).t;
    if (first > win.start + tol) {
      return fail(null, `no value from ${new Date(win.start * 1000).toISOString()} to ${new Date(first * 1000).toISOString()}: the condition has not been observed for the whole ${win.seconds}s`, samples.length, decisive, latest);
    }
    // The last step of the range query: `end` itself when the window is a whole number of steps.
    const lastStep = win.start + Math.floor(win.seconds / win.step) * win.step;
    if (last < lastStep - tol) {
      return fail(null, `no value at the last step ${new Date(lastStep * 1000).toISOString()} (the latest is from ${new Date(last * 1000).toISOString()}): the condition has not been observed for the whole ${win.seconds}s`, samples.length, decisive, latest);
    }
    for (let i = 1; i < samples.length; i++) {
      const gap = (samples[i] as { t: number }).t - (samples[i - 1] as { t: number }).t;
      if (gap > win.step + tol) {
        return fail(null, `a gap of ${gap}s in the window (step ${win.step}s): the condition has not held for the whole duration`, samples.length, decisive, latest);
      }
    }
  }
  const op = OPS[rule.operator];
  const violating = samples.find((s) => !op(s.v, rule.threshold));
  if (violating !== undefined) {
    return {
      ...base,
      samples: samples.length,
      value: decisive,
      latest,
      held: false,
      error: null,
      detail: `${violating.v} ${OPERATOR_SYMBOL[rule.operator]} ${rule.threshold} is false at ${new Date(violating.t * 1000).toISOString()}`,
    };
  }
  return { ...base, samples: samples.length, value: decisive, latest, held: true, error: null, detail: null };
}
