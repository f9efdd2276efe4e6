import type { Rule } from '../policy/policy-model.js';
import type { Sample } from '../plugins/api.js';
import type { Observation, RuleRecord, RuleWindow, VerdictMemo } from './decision.js';

/** Range queries answer at most this many points per series (Prometheus refuses more than 11,000). */
const MAX_POINTS = 10_000;

/** Windows of the latest instant asked for, by duration: a cycle asks for the same few thousands of times. */
const windows = { at: NaN, interval: NaN, byDuration: new Map<number, RuleWindow>() };

/**
 * The window a rule needs at `now`: steps at most one evaluation interval apart (DESIGN.md step
 * 2), widened only when a very long window would exceed MAX_POINTS. The answer is shared (frozen).
 */
export function ruleWindow(rule: Pick<Rule, 'duration_seconds'>, now: Date, intervalSeconds: number): RuleWindow {
  const at = now.getTime();
  if (at !== windows.at || intervalSeconds !== windows.interval) {
    windows.at = at;
    windows.interval = intervalSeconds;
    windows.byDuration.clear();
  }
  const seconds = rule.duration_seconds;
  let win = windows.byDuration.get(seconds);
  if (win === undefined) {
    const end = Math.floor(at / 1000);
    const step = Math.max(1, Math.min(intervalSeconds, seconds), Math.ceil(seconds / MAX_POINTS));
    win = Object.freeze({ start: end - seconds, end, step, seconds });
    windows.byDuration.set(seconds, win);
  }
  return win;
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

/** Why a rule did not hold, when it did not; the explanation's text is made from it only when asked. */
export type VerdictMiss =
  | 'no_observation'
  | 'source_error'
  | 'empty'
  | 'not_finite'
  | 'not_from_start'
  | 'no_last_step'
  | 'gap'
  | 'violated';

/**
 * What one rule's check found, without the words: enough for the decision (held, error) and for
 * writing its explanation later (`ruleRecord`). `at` is the instant the miss names (the violating
 * sample, the first or last sample) or, for a gap, its width; `bad` the non-finite value.
 */
export interface RuleVerdict {
  held: boolean;
  miss: VerdictMiss | null;
  samples: number;
  value: number | null;
  latest: number | null;
  at: number;
  bad: number;
}

function verdict(held: boolean, miss: VerdictMiss | null, samples: number, value: number | null, latest: number | null, at = 0, bad = 0): RuleVerdict {
  return { held, miss, samples, value, latest, at, bad };
}

/** Whether a verdict is a metric error (DESIGN.md step 8) rather than a condition that did not hold. */
export function isMetricError(v: RuleVerdict): boolean {
  return v.miss === 'no_observation' || v.miss === 'source_error' || v.miss === 'empty' || v.miss === 'not_finite';
}

/**
 * Whether one rule holds (DESIGN.md steps 2 and 8): a value at every step of the window, each
 * satisfying the condition; an error, an empty answer or a non-finite value means it does not.
 * This runs once per rule per evaluation (10,000s per cycle, 43,200 per rule in a month-long
 * backtest), so it makes one pass over the samples and allocates nothing but the verdict.
 */
export function ruleVerdict(rule: Pick<Rule, 'operator' | 'threshold'>, obs: Observation | undefined, win: RuleWindow): RuleVerdict {
  if (obs === undefined) return verdict(false, 'no_observation', 0, null, null);
  if (obs.error !== undefined) return verdict(false, 'source_error', 0, null, null);

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
  if (count === 0) return verdict(false, 'empty', 0, null, null);

  const op = OPS[rule.operator];
  const lowest = rule.operator === 'gt' || rule.operator === 'gte';
  const highest = rule.operator === 'lt' || rule.operator === 'lte';
  let min = Infinity;
  let max = -Infinity;
  let violating: Sample | undefined;
  let widestGap = 0;
  for (let i = lo; i < hi; i++) {
    const s = all[i] as Sample;
    if (!Number.isFinite(s.v)) return verdict(false, 'not_finite', count, null, null, s.t, s.v);
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
    if (first > win.start + tol) return verdict(false, 'not_from_start', count, decisive, latest, first);
    if (last < lastStepOf(win) - tol) return verdict(false, 'no_last_step', count, decisive, latest, last);
    if (widestGap > win.step + tol) return verdict(false, 'gap', count, decisive, latest, widestGap);
  }
  if (violating !== undefined) return verdict(false, 'violated', count, decisive, latest, violating.t, violating.v);
  return verdict(true, null, count, decisive, latest);
}

/** Distinct conditions remembered per observation; beyond that, verdicts are reached each time. */
const MEMO_LIMIT = 16;

/** An empty verdict memo, for an observation whose verdicts its readers may share. */
export function verdictMemo(): VerdictMemo {
  return { window: undefined, operators: [], thresholds: [], verdicts: [] };
}

/**
 * `ruleVerdict`, shared by the rules that read the same observation in the same window with the
 * same operator and threshold (the verdict depends on nothing else). Observations without a memo
 * are checked each time.
 */
export function sharedVerdict(rule: Pick<Rule, 'operator' | 'threshold'>, obs: Observation | undefined, win: RuleWindow): RuleVerdict {
  const memo = obs?.verdicts;
  if (memo === undefined) return ruleVerdict(rule, obs, win);
  if (memo.window !== win) {
    memo.window = win;
    memo.operators.length = 0;
    memo.thresholds.length = 0;
    memo.verdicts.length = 0;
  }
  const { operators, thresholds } = memo;
  for (let i = 0; i < operators.length; i++) {
    if (operators[i] === rule.operator && thresholds[i] === rule.threshold) return memo.verdicts[i] as RuleVerdict;
  }
  const v = ruleVerdict(rule, obs, win);
  if (operators.length < MEMO_LIMIT) {
    operators.push(rule.operator);
    thresholds.push(rule.threshold);
    memo.verdicts.push(v);
  }
  return v;
}

/** The last step of a range query over the window: `end` itself when the window is a whole number of steps. */
function lastStepOf(win: RuleWindow): number {
  return win.start + Math.floor(win.seconds / win.step) * win.step;
}

/** The explanation of one rule's verdict, as the decision record shows it. */
export function ruleRecord(rule: Rule, direction: RuleRecord['direction'], source: string, obs: Observation | undefined, win: RuleWindow, v: RuleVerdict): RuleRecord {
  let error: string | null = null;
  let detail: string | null = null;
  switch (v.miss) {
    case null:
      break;
    case 'no_observation':
      error = 'no observation';
      detail = 'no value was fetched for this rule';
      break;
    case 'source_error':
      error = `${obs?.error?.kind}: ${obs?.error?.message}`;
      detail = 'the metric source failed';
      break;
    case 'empty':
      error = 'empty: no value in the window';
      detail = 'the metric source had no value';
      break;
    case 'not_finite':
      error = `${Number.isNaN(v.bad) ? 'nan' : 'infinite'}: the source answered ${v.bad}`;
      detail = 'a value was not a finite number';
      break;
    case 'not_from_start':
      detail = `no value from ${iso(win.start)} to ${iso(v.at)}: the condition has not been observed for the whole ${win.seconds}s`;
      break;
    case 'no_last_step':
      detail = `no value at the last step ${iso(lastStepOf(win))} (the latest is from ${iso(v.at)}): the condition has not been observed for the whole ${win.seconds}s`;
      break;
    case 'gap':
      detail = `a gap of ${v.at}s in the window (step ${win.step}s): the condition has not held for the whole duration`;
      break;
    case 'violated':
      detail = `${v.bad} ${OPERATOR_SYMBOL[rule.operator]} ${rule.threshold} is false at ${iso(v.at)}`;
      break;
  }
  return {
    id: rule.id,
    direction,
    metric: rule.metric,
    source,
    operator: rule.operator,
    threshold: rule.threshold,
    aggregation: rule.aggregation,
    window_seconds: win.seconds,
    step_seconds: win.step,
    samples: v.samples,
    value: v.value,
    latest: v.latest,
    held: v.held,
    error,
    detail,
  };
}

/** A rule's verdict with its explanation (steps 2 and 8 for one rule). */
export function checkRule(rule: Rule, direction: RuleRecord['direction'], source: string, obs: Observation | undefined, win: RuleWindow): RuleRecord {
  return ruleRecord(rule, direction, source, obs, win, ruleVerdict(rule, obs, win));
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
