import type { Sample } from '../plugins/api.js';
import type { Rule } from '../policy/policy-model.js';
import type { Observation, RuleWindow } from './decision.js';

/**
 * Target tracking: the replica count computed from a metric and a target, as Kubernetes' HPA,
 * KEDA, Nomad's target-value strategy and AWS target tracking do.
 *
 * - `target_per_replica` (KEDA's AverageValue, HPA's AverageValue): the metric is a total, each
 *   replica should carry `target`: desired = ceil(value / target). Its usage ratio, for the
 *   tolerance, is value / (target x current), the load per replica over the target.
 * - `target_value` (HPA's utilization): the metric is a per-replica average that should sit at
 *   `target`: desired = ceil(current x value / target), with current 0 counted as 1. Its usage
 *   ratio is value / target.
 *
 * Within tolerance (|ratio - 1| <= tolerance) an entry has no opinion; so has an entry whose metric
 * failed or gave no finite value.
 */

/** A policy's target-tracking entry, normalized. */
export interface TargetTracking {
  id: string;
  metric: string;
  source: string | null;
  /** How the series the query returns are folded into one value, as for rules. */
  aggregation: Rule['aggregation'];
  /** 0: the latest value; else the average of the window's values. */
  duration: string;
  duration_seconds: number;
  target_per_replica: number | null;
  target_value: number | null;
  /** In [0, 1); default 0.1. */
  tolerance: number;
}

/** What one entry found at one evaluation, for the decision and its record. */
export interface TrackingVerdict {
  /** The value used: the latest, or the window's average; null when there was none. */
  value: number | null;
  samples: number;
  /** value / target (target_value) or value / (target x current) (target_per_replica); null when it cannot be computed. */
  ratio: number | null;
  /** The replicas it wants; null: no opinion. */
  opinion: number | null;
  /** The arithmetic, in words: "ceil(550 / 100) = 6". */
  formula: string | null;
  outcome: 'opinion' | 'within_tolerance' | 'metric_error' | 'not_finite';
}

/** Rounds up, forgiving the last bits of a float product (3 x 0.21 / 0.07 is 9, not 10). */
function ceilish(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - r) <= 1e-9 * Math.max(1, Math.abs(x)) ? r : Math.ceil(x);
}

function num(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)));
}

/**
 * The value an entry reads from its observation: the latest sample when its window is one
 * instant; else the average of the finite values at the window's instants (a missing instant is
 * left out, as a rule leaves out nothing; a window with no finite value has none).
 */
export function trackingValue(obs: Observation | undefined, win: RuleWindow): { value: number | null; samples: number; error: boolean } {
  if (obs === undefined || obs.error !== undefined) return { value: null, samples: 0, error: true };
  const all = obs.samples;
  if (all.length === 0) return { value: null, samples: 0, error: true };
  if (win.points === 1) {
    const s = all[all.length - 1] as Sample;
    return { value: Number.isFinite(s.v) ? s.v : null, samples: 1, error: false };
  }
  const { startMs, stepMs, points } = win;
  const tolMs = stepMs / 2;
  let sum = 0;
  let n = 0;
  let seen = 0;
  let next = 0;
  for (const s of all) {
    const ms = s.t * 1000;
    const k = Math.round((ms - startMs) / stepMs);
    if (k < next || k >= points || Math.abs(ms - (startMs + k * stepMs)) > tolMs) continue;
    next = k + 1;
    seen++;
    if (!Number.isFinite(s.v)) continue;
    sum += s.v;
    n++;
  }
  if (seen === 0) return { value: null, samples: 0, error: true };
  return { value: n === 0 ? null : sum / n, samples: seen, error: false };
}

/** The opinion of one entry at `current` replicas, given the value it read. */
export function trackingOpinion(entry: TargetTracking, current: number, read: { value: number | null; samples: number; error: boolean }): TrackingVerdict {
  const { value, samples } = read;
  if (read.error) return { value: null, samples, ratio: null, opinion: null, formula: null, outcome: 'metric_error' };
  if (value === null) return { value: null, samples, ratio: null, opinion: null, formula: null, outcome: 'not_finite' };
  let ratio: number | null;
  let desired: number;
  let formula: string;
  if (entry.target_per_replica !== null) {
    const target = entry.target_per_replica;
    ratio = current > 0 ? value / (target * current) : null;
    desired = Math.max(0, ceilish(value / target));
    formula = `ceil(${num(value)} / ${num(target)}) = ${desired}`;
  } else {
    const target = entry.target_value as number;
    const base = Math.max(current, 1);
    ratio = value / target;
    desired = Math.max(0, ceilish((base * value) / target));
    formula = `ceil(${base} x ${num(value)} / ${num(target)}) = ${desired}`;
  }
  if (ratio !== null && Math.abs(ratio - 1) <= entry.tolerance + 1e-12) {
    return { value, samples, ratio, opinion: null, formula, outcome: 'within_tolerance' };
  }
  return { value, samples, ratio, opinion: desired, formula, outcome: 'opinion' };
}
