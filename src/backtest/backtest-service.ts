import { validationError, type FieldError } from '../errors.js';
import type { IsolatedMetricSource } from '../plugins/plugin-manager.js';
import type { Policy } from '../policy/policy-model.js';
import { parseDuration } from '../util/duration.js';
import { fetchSeries, planSeries } from './fetch-series.js';
import { branchSpanAnswer, replay, type BranchSpan, type ReplayResult, type TimelineRow } from './replay.js';

export interface BacktestRequest {
  from: Date;
  to: Date;
  stepSeconds: number;
  initialReplicas: number | null;
}

export interface BacktestDeps {
  sources: ReadonlyMap<string, IsolatedMetricSource>;
  defaultSource: string;
  defaultCooldown: number;
  prices: Readonly<Record<string, number>>;
}

/** At most this many evaluations per backtest, so one request cannot occupy the daemon for long. */
export const MAX_BACKTEST_STEPS = 500_000;

/**
 * At most this many points of history per backtest (all its distinct queries together). The API
 * holds them packed, 16 bytes a point: 32 MB at most, known before anything is fetched. The
 * longest backtest (500,000 one-minute steps, almost a year) fits with 3 distinct queries, not 10.
 */
export const MAX_BACKTEST_SAMPLES = 2_000_000;

/** At most this many evaluations in a chart (?format=svg), which is drawn from the whole timeline in memory. */
export const MAX_CHART_EVALUATIONS = 50_000;

export type BacktestResult = ReplayResult & { requests: number; policy: Pick<Policy, 'id' | 'name'> };

/** What a backtest will hold and do, known from the request alone. */
export interface BacktestSize {
  evaluations: number;
  /** Distinct queries fetched. */
  series: number;
  /** Points of history fetched and held, at most. */
  samples: number;
}

/** The size of a backtest of `policy` over `req`, before anything is fetched. */
export function backtestSize(policy: Policy, req: BacktestRequest, defaultSource = 'prometheus'): BacktestSize {
  const plans = planSeries([policy], req.from, req.to, req.stepSeconds, defaultSource);
  return {
    evaluations: Math.floor((req.to.getTime() - req.from.getTime()) / 1000 / req.stepSeconds) + 1,
    series: plans.length,
    samples: plans.reduce((n, p) => n + p.points, 0),
  };
}

const fmt = (n: number): string => n.toLocaleString('en-US');

/**
 * Refuses (422, naming the limit) a backtest whose history would not fit the daemon's bound, so a
 * request cannot exhaust its memory; answers its size otherwise.
 */
export function checkBacktestSize(policy: Policy, req: BacktestRequest, defaultSource = 'prometheus', opts: { chart?: boolean } = {}): BacktestSize {
  const size = backtestSize(policy, req, defaultSource);
  if (size.samples > MAX_BACKTEST_SAMPLES) {
    throw validationError(
      [
        {
          field: '/step',
          message: `needs ${fmt(size.samples)} points of history (${size.series} distinct rule ${size.series === 1 ? 'query' : 'queries'} over ${fmt(size.evaluations)} evaluations), more than the limit of ${fmt(MAX_BACKTEST_SAMPLES)} a backtest may hold; use a larger step, a shorter range or fewer distinct rule queries`,
        },
      ],
      'backtest request',
    );
  }
  if (opts.chart === true && size.evaluations > MAX_CHART_EVALUATIONS) {
    throw validationError(
      [{ field: '/step', message: `gives ${fmt(size.evaluations)} evaluations, more than the ${fmt(MAX_CHART_EVALUATIONS)} a chart (format=svg) may draw; use a larger step or a shorter range` }],
      'backtest request',
    );
  }
  return size;
}

/** Parses and checks backtest parameters (API body or CLI flags); every problem names its field. */
export function parseBacktestRequest(raw: Record<string, unknown>, prefix = ''): BacktestRequest {
  const errors: FieldError[] = [];
  const time = (key: string): Date | undefined => {
    const v = raw[key];
    if (v === undefined) {
      errors.push({ field: `${prefix}/${key}`, message: 'is required (an ISO-8601 time such as 2026-01-28T00:00:00Z)' });
      return undefined;
    }
    if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(v) || Number.isNaN(Date.parse(v))) {
      errors.push({ field: `${prefix}/${key}`, message: 'must be an ISO-8601 time with an offset, such as 2026-01-28T00:00:00Z' });
      return undefined;
    }
    return new Date(v);
  };
  const from = time('from');
  const to = time('to');
  let stepSeconds = 60;
  const step = raw['step'];
  if (step !== undefined) {
    const s = typeof step === 'string' ? parseDuration(step) : typeof step === 'number' && Number.isInteger(step) ? step : undefined;
    if (s === undefined || s < 1 || s > 86_400) errors.push({ field: `${prefix}/step`, message: 'must be a duration from 1s to 1d, such as "1m" or 60' });
    else stepSeconds = s;
  }
  let initialReplicas: number | null = null;
  const init = raw['initial_replicas'];
  if (init !== undefined && init !== null) {
    if (typeof init !== 'number' || !Number.isInteger(init) || init < 0 || init > 100_000) errors.push({ field: `${prefix}/initial_replicas`, message: 'must be an integer from 0 to 100000' });
    else initialReplicas = init;
  }
  for (const key of Object.keys(raw)) {
    if (!['from', 'to', 'step', 'initial_replicas', 'policy'].includes(key)) errors.push({ field: `${prefix}/${key}`, message: 'is not a known property' });
  }
  if (from !== undefined && to !== undefined) {
    if (to <= from) errors.push({ field: `${prefix}/to`, message: 'must be after from' });
    else if ((to.getTime() - from.getTime()) / 1000 / stepSeconds > MAX_BACKTEST_STEPS) {
      errors.push({ field: `${prefix}/step`, message: `gives more than ${MAX_BACKTEST_STEPS} evaluations for this range; use a larger step or a shorter range` });
    }
  }
  if (errors.length > 0 || from === undefined || to === undefined) throw validationError(errors, 'backtest request');
  return { from, to, stepSeconds, initialReplicas };
}

/** Receives a backtest as it runs: the number of requests made, then the timeline in batches. */
export interface BacktestSink {
  /** History is fetched; the replay starts. */
  begin(requests: number): Promise<void> | void;
  /** The next rows of the timeline, in order; the replay waits for a returned promise. */
  rows(rows: TimelineRow[]): Promise<void> | void;
}

/**
 * Fetches history once per distinct query and replays the policy over it. With a sink, the
 * timeline goes to the sink as it is made and the result's timeline is empty.
 */
export async function runBacktest(policy: Policy, req: BacktestRequest, deps: BacktestDeps, sink?: BacktestSink): Promise<BacktestResult> {
  const { series, requests } = await fetchSeries([policy], req.from, req.to, req.stepSeconds, deps.sources, deps.defaultSource);
  await sink?.begin(requests);
  const result = await replay({
    policy,
    from: req.from,
    to: req.to,
    intervalSeconds: req.stepSeconds,
    initialReplicas: req.initialReplicas ?? policy.min_replicas,
    defaultCooldown: deps.defaultCooldown,
    defaultSource: deps.defaultSource,
    price: policy.cost_per_replica_hour ?? deps.prices[policy.target_type] ?? null,
    series,
  }, sink === undefined ? {} : { onRows: (rows) => sink.rows(rows) });
  return { ...result, requests, policy: { id: policy.id, name: policy.name } };
}

/**
 * The answer's `branches` member (`,"branches":{"scale_up": [...], "scale_down": [...]}`) in
 * pieces of at most `batch` spans, so a long list is written out without one string of it all;
 * nothing for a policy without a condition tree.
 */
export function* branchesJson(result: Pick<ReplayResult, 'branches' | 'summary'>, batch = 512): Generator<string> {
  const branches = result.branches;
  if (branches === undefined) return;
  let text = ',"branches":{';
  for (const direction of ['scale_up', 'scale_down'] as const) {
    const spans = branches[direction];
    text += `${direction === 'scale_up' ? '' : ','}"${direction}":`;
    if (spans === null) {
      text += 'null';
      continue;
    }
    text += '[';
    for (let k = 0; k < spans.length; k++) {
      text += `${k === 0 ? '' : ','}${JSON.stringify(branchSpanAnswer(result.summary, spans[k] as BranchSpan))}`;
      if ((k + 1) % batch === 0) {
        yield text;
        text = '';
      }
    }
    text += ']';
  }
  yield `${text}}`;
}

/** The timeline as CSV: one row per evaluation, one column per rule value. */
export function timelineCsv(policy: Policy, result: ReplayResult): string {
  const rules = [...policy.scale_up_rules, ...policy.scale_down_rules];
  const quote = (s: string): string => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  const header = ['time', ...rules.map((r, i) => `${i < policy.scale_up_rules.length ? 'up' : 'down'}:${r.metric}`), 'replicas_before', 'replicas', 'action', 'reason_code'];
  const lines = [header.map(quote).join(',')];
  for (const row of result.timeline) {
    lines.push(
      [row.time, ...rules.map((r) => (row.values[r.id] === null || row.values[r.id] === undefined ? '' : String(row.values[r.id]))), String(row.replicas_before), String(row.replicas), row.action, row.reason_code]
        .map(quote)
        .join(','),
    );
  }
  return `${lines.join('\n')}\n`;
}
