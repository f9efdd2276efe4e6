import type { Policy, Rule, TargetTracking } from '../policy/policy-model.js';
import type { Sample } from '../plugins/api.js';
import type { Observation, RuleRecord, RuleWindow, VerdictMemo } from './decision.js';
import { Interner } from '../util/intern.js';

/** Seconds as the record writes them: `45s`, `22.5s`. */
function formatSeconds(seconds: number): string {
  return `${Math.round(seconds * 1000) / 1000}s`;
}

/** At most this many instants per window (Prometheus refuses range queries over 11,000 points). */
const MAX_POINTS = 10_000;

/**
 * How far back a value reaches: the value of a series at an instant is its latest sample at or
 * before the instant, if that sample is at most this old and is not a staleness marker. This is
 * Prometheus's default lookback (5 minutes, `--query.lookback-delta`); policy tests and sources
 * without range queries apply the same rule, so they agree with a Prometheus holding the same data.
 */
export const LOOKBACK_MS = 300_000;

/** Windows of the latest instant asked for, by duration: a cycle asks for the same few thousands of times. */
const windows = { at: NaN, interval: NaN, byDuration: new Map<number, RuleWindow>() };

/**
 * The window a rule needs at `now`, which is judged at instants that end at `now` (whole
 * seconds): a window of d seconds at an evaluation interval i is cut into n = ceil(d / i) steps of
 * d / n (so both ends are judged and no step exceeds the interval; a window shorter than the
 * interval is judged at its two ends). Instants are whole milliseconds, as Prometheus's are: the
 * step is d / n rounded down to a millisecond and the instants are counted back from the end, so
 * the first lies at most n ms after `now - d`. Very long windows are cut into at most MAX_POINTS
 * instants. A zero-duration rule is judged at `now` alone. The answer is shared (frozen).
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
    const endMs = Math.floor(at / 1000) * 1000;
    if (seconds <= 0) {
      win = Object.freeze({ start: endMs / 1000, end: endMs / 1000, step: 0, seconds: 0, points: 1, startMs: endMs, endMs, stepMs: 0 });
    } else {
      const steps = Math.min(MAX_POINTS - 1, Math.ceil(seconds / Math.max(1, intervalSeconds)));
      const stepMs = Math.floor((seconds * 1000) / steps);
      const startMs = endMs - steps * stepMs;
      win = Object.freeze({ start: startMs / 1000, end: endMs / 1000, step: stepMs / 1000, seconds, points: steps + 1, startMs, endMs, stepMs });
    }
    windows.byDuration.set(seconds, win);
  }
  return win;
}

/**
 * Samples as a source scraped them (times in ms, oldest first), with staleness markers: what
 * policy tests give and what the loop keeps for a source without range queries.
 */
export interface ScrapedSamples {
  readonly t: ArrayLike<number>;
  readonly v: ArrayLike<number>;
  /** Non-zero where the sample is a staleness marker (the series ended there); absent: none. */
  readonly stale?: ArrayLike<number>;
  readonly length: number;
}

/**
 * The values a series has at a window's instants, as Prometheus would answer them: at each
 * instant the latest sample at or before it, if at most LOOKBACK_MS old and not a staleness
 * marker; an instant without one has no value (and no sample in the answer). Times in the answer
 * are unix seconds.
 */
export function valuesAtInstants(series: ScrapedSamples, win: RuleWindow, lookbackMs = LOOKBACK_MS): Sample[] {
  const out: Sample[] = [];
  const { t, v, stale, length } = series;
  // i: the first sample after the current instant; i - 1 is the latest at or before it.
  let lo = 0;
  let hi = length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((t[mid] as number) <= win.startMs) lo = mid + 1;
    else hi = mid;
  }
  let i = lo;
  for (let k = 0; k < win.points; k++) {
    const x = win.startMs + k * win.stepMs;
    while (i < length && (t[i] as number) <= x) i++;
    if (i === 0) continue;
    const j = i - 1;
    if (x - (t[j] as number) > lookbackMs) continue;
    if (stale !== undefined && stale[j] !== 0) continue;
    out.push({ t: x / 1000, v: v[j] as number });
  }
  return out;
}

const KEY = Symbol('observationKey');
type Keyed = { [KEY]?: { defaultSource: string; key: string } };
const keyHolders = new Interner<{ defaultSource: string; key: string }>(20_000);

/** Identifies one metric request: rules with equal keys share one fetch per cycle. */
export function observationKey(rule: Pick<Rule, 'source' | 'metric' | 'aggregation' | 'duration_seconds'>, defaultSource: string): string {
  // Rule objects are reused across cycles (the loop caches policies), so the key is built once
  // and kept on the rule under a private symbol (a WeakMap lookup per rule per cycle cost more).
  const cached = (rule as Keyed)[KEY];
  if (cached !== undefined && cached.defaultSource === defaultSource) return cached.key;
  const key = `${rule.source ?? defaultSource}\u0000${rule.aggregation}\u0000${rule.duration_seconds}\u0000${rule.metric}`;
  // One holder per distinct key, shared by every rule with it (100,000 policies: 300,000 rules).
  const holder = keyHolders.get(`${defaultSource}\u0001${key}`, () => Object.freeze({ defaultSource, key }));
  if (Object.isExtensible(rule)) Object.defineProperty(rule, KEY, { value: holder, writable: true, enumerable: false });
  return holder.key;
}

/** What a query is made of: a rule's, or a target-tracking entry's. */
export type Queried = Pick<Rule, 'source' | 'metric' | 'aggregation' | 'duration_seconds'>;

/**
 * Everything a policy queries: its step rules, then its target-tracking entries. Observations are
 * keyed by observationKey, so a query shared by rules and entries (of any policies) is one fetch.
 */
export function queriedBy(p: Pick<Policy, 'scale_up_rules' | 'scale_down_rules' | 'target_tracking'>): Array<Rule | TargetTracking> {
  if (p.target_tracking.length === 0) return p.scale_down_rules.length === 0 ? p.scale_up_rules : [...p.scale_up_rules, ...p.scale_down_rules];
  return [...p.scale_up_rules, ...p.scale_down_rules, ...p.target_tracking];
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
 * writing its explanation later (`ruleRecord`). `at` is the instant (unix seconds) the miss names:
 * the first instant without a value, with a value that is not a finite number, or with one that
 * fails the condition; `bad` that value.
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

/**
 * Whether a verdict is a metric error (a failed query, or no value in the whole window) rather
 * than a condition that did not hold. A NaN or infinite value is not an error: the instant it is
 * at fails the condition.
 */
export function isMetricError(v: RuleVerdict): boolean {
  return v.miss === 'no_observation' || v.miss === 'source_error' || v.miss === 'empty';
}

/**
 * Whether one rule holds: a value at every instant of its window, each a finite number satisfying
 * the condition (a zero-duration rule: the latest value). A failed query or no value at all is a
 * metric error; a missing instant, a NaN or an infinity means the condition was not observed to
 * hold, and the first such instant is named. Samples are values at the window's instants (see
 * valuesAtInstants); one that is not within half a step of an instant is ignored.
 * This runs once per rule per evaluation (10,000s per cycle, 43,200 per rule in a month-long
 * backtest), so it makes one pass over the samples and allocates nothing but the verdict.
 */
export function ruleVerdict(rule: Pick<Rule, 'operator' | 'threshold'>, obs: Observation | undefined, win: RuleWindow): RuleVerdict {
  if (obs === undefined) return verdict(false, 'no_observation', 0, null, null);
  if (obs.error !== undefined) return verdict(false, 'source_error', 0, null, null);
  const all = obs.samples;
  const op = OPS[rule.operator];

  if (win.points === 1) {
    // Zero duration: the latest value the source answered.
    const s = all[all.length - 1];
    if (s === undefined) return verdict(false, 'empty', 0, null, null);
    if (!Number.isFinite(s.v)) return verdict(false, 'not_finite', 1, null, null, win.end, s.v);
    if (!op(s.v, rule.threshold)) return verdict(false, 'violated', 1, s.v, s.v, win.end, s.v);
    return verdict(true, null, 1, s.v, s.v);
  }

  const lowest = rule.operator === 'gt' || rule.operator === 'gte';
  const highest = rule.operator === 'lt' || rule.operator === 'lte';
  const { startMs, stepMs, points } = win;
  const tolMs = stepMs / 2;
  let min = Infinity;
  let max = -Infinity;
  let latest: number | null = null;
  let count = 0;
  // The next instant a value is expected at, and the first failing instant (index and kind).
  let expected = 0;
  let failAt = -1;
  let failMiss: VerdictMiss | null = null;
  let failValue = 0;
  for (let i = 0; i < all.length; i++) {
    const s = all[i] as Sample;
    const ms = s.t * 1000;
    const k = Math.round((ms - startMs) / stepMs);
    if (k < expected || k >= points || Math.abs(ms - (startMs + k * stepMs)) > tolMs) continue;
    if (k > expected && failAt < 0) {
      failAt = expected;
      failMiss = 'gap';
    }
    expected = k + 1;
    count++;
    latest = s.v;
    if (!Number.isFinite(s.v)) {
      if (failAt < 0) {
        failAt = k;
        failMiss = 'not_finite';
        failValue = s.v;
      }
      continue;
    }
    if (s.v < min) min = s.v;
    if (s.v > max) max = s.v;
    if (failAt < 0 && !op(s.v, rule.threshold)) {
      failAt = k;
      failMiss = 'violated';
      failValue = s.v;
    }
  }
  if (count === 0) return verdict(false, 'empty', 0, null, null);
  if (expected < points && failAt < 0) {
    failAt = expected;
    failMiss = 'gap';
  }
  const decisive = min === Infinity ? null : lowest ? min : highest ? max : latest !== null && Number.isFinite(latest) ? latest : null;
  const latestFinite = latest !== null && Number.isFinite(latest) ? latest : null;
  if (failAt < 0) return verdict(true, null, count, decisive, latestFinite);
  if (failMiss === 'gap') failMiss = failAt === 0 ? 'not_from_start' : failAt === points - 1 ? 'no_last_step' : 'gap';
  return verdict(false, failMiss, count, decisive, latestFinite, (startMs + failAt * stepMs) / 1000, failValue);
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
      error = win.points === 1 ? 'empty: no value' : 'empty: no value in the window';
      detail = win.points === 1 ? 'the metric source had no value' : 'the metric source had no value at any instant of the window';
      break;
    case 'not_finite':
      detail = `the value at ${iso(v.at)} is ${Number.isNaN(v.bad) ? 'NaN' : v.bad > 0 ? '+Inf' : '-Inf'}, which is not a finite number: the condition fails there`;
      break;
    case 'not_from_start':
      detail = `no value at ${iso(v.at)}, the start of the window: the condition has not been observed for the whole ${formatSeconds(win.seconds)}`;
      break;
    case 'no_last_step':
      detail = `no value at ${iso(v.at)}, the end of the window: the condition has not been observed for the whole ${formatSeconds(win.seconds)}`;
      break;
    case 'gap':
      detail = `no value at ${iso(v.at)} (a gap in the window, judged every ${formatSeconds(win.step)}): the condition has not been observed for the whole ${formatSeconds(win.seconds)}`;
      break;
    case 'violated':
      detail = `${v.bad} ${OPERATOR_SYMBOL[rule.operator]} ${rule.threshold} is false at ${iso(v.at)}`;
      break;
  }
  return {
    id: rule.id,
    name: rule.name,
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
