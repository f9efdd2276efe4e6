import type { IsolatedMetricSource } from '../plugins/plugin-manager.js';
import type { Policy } from '../policy/policy-model.js';
import { mapLimit } from '../util/async.js';
import { observationKey, queriedBy, ruleWindow, type Queried } from '../engine/rule-window.js';
import type { PackedSeries, SeriesInput } from './replay.js';

/** Prometheus answers at most 11,000 points per series; stay under it. */
const MAX_POINTS_PER_REQUEST = 10_000;

/** One range of instants a series is fetched at: from `startMs` to `endMs` every `stepMs`. */
export interface Lane {
  startMs: number;
  endMs: number;
  stepMs: number;
  points: number;
}

/** One distinct query a replay needs: the lanes of instants its evaluations judge, and how many points they hold. */
export interface SeriesPlan {
  key: string;
  rule: Queried;
  lanes: Lane[];
  /** Points in all lanes: the most this series can hold. */
  points: number;
}

/**
 * The history a replay of [from, to] needs, once per distinct query: exactly the instants its
 * evaluations judge (see ruleWindow), so every value is what the live loop would have been
 * answered. Evaluations run every interval from `from`; a window's instants lie at fixed offsets
 * before each evaluation, so the instants of one offset (modulo the interval) form one lane,
 * fetched with the interval as step; a window whose step divides the interval needs one lane.
 * Known before anything is fetched, so a backtest's memory is too.
 */
export function planSeries(policies: readonly Policy[], from: Date, to: Date, intervalSeconds: number, defaultSource: string): SeriesPlan[] {
  const distinct = new Map<string, Queried>();
  for (const p of policies) for (const r of queriedBy(p)) distinct.set(observationKey(r, defaultSource), r);
  const intervalMs = intervalSeconds * 1000;
  const evaluations = Math.floor((to.getTime() - from.getTime()) / intervalMs) + 1;
  const fromMs = Math.floor(from.getTime() / 1000) * 1000;
  const lastMs = fromMs + (evaluations - 1) * intervalMs;
  return [...distinct.entries()].map(([key, rule]) => {
    const win = ruleWindow(rule, from, intervalSeconds);
    // Offsets before an evaluation, grouped by their remainder modulo the interval.
    const byResidue = new Map<number, { min: number; max: number }>();
    for (let k = 0; k < win.points; k++) {
      const offset = win.endMs - (win.startMs + k * win.stepMs);
      const residue = offset % intervalMs;
      const r = byResidue.get(residue);
      if (r === undefined) byResidue.set(residue, { min: offset, max: offset });
      else {
        r.min = Math.min(r.min, offset);
        r.max = Math.max(r.max, offset);
      }
    }
    const lanes = [...byResidue.values()].map(({ min, max }) => {
      const startMs = fromMs - max;
      const endMs = lastMs - min;
      return { startMs, endMs, stepMs: intervalMs, points: Math.floor((endMs - startMs) / intervalMs) + 1 };
    });
    return { key, rule, lanes, points: lanes.reduce((n, l) => n + l.points, 0) };
  });
}

/**
 * Fetches, once per distinct query, the values a replay of [from, to] judges (see planSeries);
 * long lanes are fetched in chunks. Each series is packed, sorted by time, into typed arrays sized
 * by its plan: the values at those instants exactly, which the replay reads without a lookback.
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
  await mapLimit(planSeries(policies, from, to, intervalSeconds, defaultSource), concurrency, async ({ key, rule, lanes, points }) => {
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
      for (const lane of lanes) {
        const laneFrom = length;
        for (let chunk = lane.startMs; chunk <= lane.endMs; chunk += MAX_POINTS_PER_REQUEST * lane.stepMs) {
          const chunkEnd = Math.min(lane.endMs, chunk + (MAX_POINTS_PER_REQUEST - 1) * lane.stepMs);
          requests++;
          try {
            const part = await source.rangeQuery({
              query: rule.metric,
              aggregation: rule.aggregation,
              start: new Date(chunk),
              end: new Date(chunkEnd),
              stepSeconds: lane.stepMs / 1000,
            });
            for (const s of part) {
              const ms = Math.round(s.t * 1000);
              if (length > laneFrom && ms <= (t[length - 1] as number)) continue;
              // The memory a backtest holds was settled before the fetch: a source answering more
              // than one value per step breaks the contract (MetricSource.rangeQuery) and is refused.
              if (length >= points) {
                throw Object.assign(new Error(`metric source "${name}" answered more than one value per step (over ${points} points for ${rule.metric}); a range query answers one value per step`), { kind: 'malformed' });
              }
              t[length] = ms;
              v[length] = s.v;
              length++;
            }
          } catch (err) {
            // A chunk with no data is a gap in history, not a failure of the whole backtest.
            if ((err as { kind?: string }).kind !== 'empty') throw err;
          }
        }
      }
      if (length === 0) {
        series.set(key, { error: { kind: 'empty', message: `${rule.metric} has no data between ${from.toISOString()} and ${to.toISOString()}` } });
        return;
      }
      // Lanes interleave in time: sort the points (one lane, the common case, is sorted already).
      const packed: PackedSeries = lanes.length === 1 ? { kind: 'instants', t, v, length } : sortedInstants(t, v, length);
      series.set(key, packed);
    } catch (err) {
      const e = err as { kind?: string; message?: string };
      series.set(key, { error: { kind: e.kind ?? 'error', message: e.message ?? String(err) } });
    }
  });
  return { series, requests };
}

/**
 * Sorts the first `length` points by time in place (lanes interleave in time), with 4 bytes of
 * index a point rather than a second copy of the series.
 */
function sortedInstants(t: Float64Array, v: Float64Array, length: number): PackedSeries {
  const order = new Uint32Array(length);
  for (let i = 0; i < length; i++) order[i] = i;
  order.sort((a, b) => (t[a] as number) - (t[b] as number));
  // Position i takes the point at order[i]: follow each cycle of the permutation once.
  for (let i = 0; i < length; i++) {
    if (order[i] === i) continue;
    const keepT = t[i] as number;
    const keepV = v[i] as number;
    let j = i;
    for (;;) {
      const k = order[j] as number;
      order[j] = j;
      if (k === i) {
        t[j] = keepT;
        v[j] = keepV;
        break;
      }
      t[j] = t[k] as number;
      v[j] = v[k] as number;
      j = k;
    }
  }
  return { kind: 'instants', t, v, length };
}
