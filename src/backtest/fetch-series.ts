import type { Sample } from '../plugins/api.js';
import type { IsolatedMetricSource } from '../plugins/plugin-manager.js';
import type { Policy, Rule } from '../policy/policy-model.js';
import { mapLimit } from '../util/async.js';
import { observationKey, ruleWindow } from '../engine/rule-window.js';
import type { SeriesInput } from './replay.js';

/** Prometheus answers at most 11,000 points per series; stay under it. */
const MAX_POINTS_PER_REQUEST = 10_000;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * Fetches, once per distinct query, the history a replay of [from, to] needs. Each key's grid
 * starts at `from - duration` with the step the live loop would use, so every evaluation's window
 * falls on fetched points exactly; long ranges are fetched in chunks.
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
  const distinct = new Map<string, Rule>();
  for (const p of policies) for (const r of [...p.scale_up_rules, ...p.scale_down_rules]) distinct.set(observationKey(r, defaultSource), r);
  const series = new Map<string, SeriesInput>();
  let requests = 0;
  await mapLimit([...distinct.entries()], concurrency, async ([key, rule]) => {
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
    const win = ruleWindow(rule, from, intervalSeconds);
    // The grid must contain every evaluation's window points: step divides the interval.
    const step = win.seconds === 0 ? intervalSeconds : gcd(intervalSeconds, win.step);
    const start = Math.floor(from.getTime() / 1000) - win.seconds;
    const end = Math.floor(to.getTime() / 1000);
    const out: Sample[] = [];
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
          out.push(...part);
        } catch (err) {
          // A chunk with no data is a gap in history, not a failure of the whole backtest.
          if ((err as { kind?: string }).kind !== 'empty') throw err;
        }
      }
      series.set(key, out.length > 0 ? out : { error: { kind: 'empty', message: `${rule.metric} has no data between ${from.toISOString()} and ${to.toISOString()}` } });
    } catch (err) {
      const e = err as { kind?: string; message?: string };
      series.set(key, { error: { kind: e.kind ?? 'error', message: e.message ?? String(err) } });
    }
  });
  return { series, requests };
}
