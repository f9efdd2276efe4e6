import type { IsolatedMetricSource } from '../plugins/plugin-manager.js';
import type { Policy, Rule } from '../policy/policy-model.js';
import { mapLimit } from '../util/async.js';
import { observationKey, ruleWindow } from '../engine/rule-window.js';
import type { PackedSeries, SeriesInput } from './replay.js';

/** Prometheus answers at most 11,000 points per series; stay under it. */
const MAX_POINTS_PER_REQUEST = 10_000;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** One distinct query a replay needs: its grid (seconds) and how many points it can answer. */
export interface SeriesPlan {
  key: string;
  rule: Rule;
  start: number;
  end: number;
  step: number;
  /** Points on the grid: the most this series can hold. */
  points: number;
}

/**
 * The history a replay of [from, to] needs, once per distinct query. Each key's grid starts at
 * `from - duration` with the step the live loop would use, so every evaluation's window falls on
 * fetched points exactly. Known before anything is fetched, so a backtest's memory is too.
 */
export function planSeries(policies: readonly Policy[], from: Date, to: Date, intervalSeconds: number, defaultSource: string): SeriesPlan[] {
  const distinct = new Map<string, Rule>();
  for (const p of policies) for (const r of [...p.scale_up_rules, ...p.scale_down_rules]) distinct.set(observationKey(r, defaultSource), r);
  return [...distinct.entries()].map(([key, rule]) => {
    const win = ruleWindow(rule, from, intervalSeconds);
    // The grid must contain every evaluation's window points: step divides the interval.
    const step = win.seconds === 0 ? intervalSeconds : gcd(intervalSeconds, win.step);
    const start = Math.floor(from.getTime() / 1000) - win.seconds;
    const end = Math.floor(to.getTime() / 1000);
    return { key, rule, start, end, step, points: Math.floor((end - start) / step) + 1 };
  });
}

/**
 * Fetches, once per distinct query, the history a replay of [from, to] needs (see planSeries);
 * long ranges are fetched in chunks. Each series is packed into typed arrays sized by its plan.
 */
export async function fetchSeries(
  policies: readonly Policy[],
  from: Date,
  to: Date,
  intervalSeconds: number,
  sources: ReadonlyMap<string, IsolatedMetricSource>,
  defaultSource: string,
  concurrency = 4,
): Promise<{ series: Map<string, SeriesInput>; requests: number }> {
  const series = new Map<string, SeriesInput>();
  let requests = 0;
  await mapLimit(planSeries(policies, from, to, intervalSeconds, defaultSource), concurrency, async ({ key, rule, start, end, step, points }) => {
    const name = rule.source ?? defaultSource;
    const source = sources.get(name);
    if (source === undefined) {
      series.set(key, { error: { kind: 'unknown_source', message: `metric source "${name}" is not loaded` } });
      return;
    }
    if (!source.supportsRange) {
      series.set(key, { error: { kind: 'unsupported', message: `metric source "${name}" has no range queries, which a backtest needs` } });
      return;
    }
    const t = new Float64Array(points);
    const v = new Float64Array(points);
    let length = 0;
    try {
      for (let chunk = start; chunk <= end; chunk += MAX_POINTS_PER_REQUEST * step) {
        const chunkEnd = Math.min(end, chunk + (MAX_POINTS_PER_REQUEST - 1) * step);
        requests++;
        try {
          const part = await source.rangeQuery({
            query: rule.metric,
            aggregation: rule.aggregation,
            start: new Date(chunk * 1000),
            end: new Date(chunkEnd * 1000),
            stepSeconds: step,
          });
          for (const s of part) {
            if (length > 0 && s.t <= (t[length - 1] as number)) continue;
            // The memory a backtest holds was settled before the fetch: a source answering more
            // than one value per step breaks the contract (MetricSource.rangeQuery) and is refused.
            if (length >= points) {
              throw Object.assign(new Error(`metric source "${name}" answered more than one value per step (over ${points} points for ${rule.metric}); a range query answers one value per step`), { kind: 'malformed' });
            }
            t[length] = s.t;
            v[length] = s.v;
            length++;
          }
        } catch (err) {
          // A chunk with no data is a gap in history, not a failure of the whole backtest.
          if ((err as { kind?: string }).kind !== 'empty') throw err;
        }
      }
      const packed: PackedSeries = { t, v, length };
      series.set(key, length > 0 ? packed : { error: { kind: 'empty', message: `${rule.metric} has no data between ${from.toISOString()} and ${to.toISOString()}` } });
    } catch (err) {
      const e = err as { kind?: string; message?: string };
      series.set(key, { error: { kind: e.kind ?? 'error', message: e.message ?? String(err) } });
    }
  });
  return { series, requests };
}
