import type { Sample } from '../plugins/api.js';
import type { Policy } from '../policy/policy-model.js';
import { decide } from '../engine/decide.js';
import { EMPTY_MEMORY, type DecisionRecord, type EngineMemory, type Observation, type RuleWindow } from '../engine/decision.js';
import { applyExecution } from '../engine/execution.js';
import { OPS, observationKey, queriedBy, ruleWindow, valuesAtInstants } from '../engine/rule-window.js';

/**
 * A metric series packed in typed arrays (16 bytes a point instead of an object's ~50): how the
 * API's backtests hold history, so its memory is known before it is fetched. Times in ms.
 *
 * - `instants`: the values a source answered at exact instants (range-query steps, see
 *   planSeries): an instant's value is the point at that very time, or none.
 * - `scraped`: samples as scraped (policy tests' input series): an instant's value is the latest
 *   sample at or before it within the lookback, unless that sample is a staleness marker.
 */
export interface PackedSeries {
  readonly kind: 'instants' | 'scraped';
  readonly t: Float64Array;
  readonly v: Float64Array;
  /** Scraped series only: non-zero where the sample is a staleness marker. */
  readonly stale?: Uint8Array;
  /** Only the first `length` entries count. */
  readonly length: number;
}

/**
 * A metric series for one observation key, or the error fetching it gave. Plain samples (times in
 * seconds, oldest first) are read as scraped samples.
 */
export type SeriesInput = Sample[] | PackedSeries | { error: { kind: string; message: string } };

function isPacked(s: SeriesInput): s is PackedSeries {
  return (s as PackedSeries).t instanceof Float64Array;
}

/** Packs scraped samples (times in seconds, sorted) into typed arrays. */
export function packSeries(samples: readonly Sample[]): PackedSeries {
  const t = new Float64Array(samples.length);
  const v = new Float64Array(samples.length);
  samples.forEach((s, i) => {
    t[i] = Math.round(s.t * 1000);
    v[i] = s.v;
  });
  return { kind: 'scraped', t, v, length: samples.length };
}

export interface ReplayInput {
  policy: Policy;
  /** First and last evaluation instants; evaluations run every intervalSeconds from `from`. */
  from: Date;
  to: Date;
  intervalSeconds: number;
  initialReplicas: number;
  defaultCooldown: number;
  defaultSource: string;
  price: number | null;
  /** Series by observationKey(rule, defaultSource), covering [from - duration, to] (see SeriesInput). */
  series: ReadonlyMap<string, SeriesInput>;
}

/** One evaluation of a replay. */
export interface TimelineRow {
  time: string;
  /**
   * Latest value of each rule's metric at this instant (null when missing or failed), by rule id;
   * and the value each target-tracking entry used (the latest, or its window's average), by entry id.
   */
  values: Record<string, number | null>;
  /** Each rule's verdict, by rule id. */
  held: Record<string, boolean>;
  replicas_before: number;
  replicas: number;
  /** The highest opinion of rules and target tracking, before stabilization and rate limits (null: none); present with target tracking. */
  proposal?: number | null;
  action: DecisionRecord['action'];
  reason_code: DecisionRecord['reason_code'];
  reason: string;
}

export interface ReplaySummary {
  from: string;
  to: string;
  step_seconds: number;
  evaluations: number;
  actions: Record<string, number>;
  reason_codes: Record<string, number>;
  replica_hours: number;
  estimated_cost: number | null;
  /**
   * Minutes in which a scale-up was wanted but none happened: some scale-up rule's condition was
   * true at that instant, or target tracking proposed more replicas than ran.
   */
  scale_up_pending_minutes: number;
  peak_replicas: number;
  min_replicas_seen: number;
  final_replicas: number;
}

/**
 * A run of consecutive evaluations at which a direction's condition tree held through one branch:
 * the decision records' `decided_by` was `branch` at every one of them.
 */
export interface BranchSpan {
  /** The deciding branch as text, as the decision record gives it ("lag_high and buffer_deep"). */
  branch: string;
  /** Positions of the run's first and last evaluation in the replay (0: the one at `from`). */
  start: number;
  end: number;
}

/**
 * Which branch of each direction's condition tree held over a replay, as runs rather than a text
 * per evaluation: a span starts only where the tree starts to hold or its deciding branch changes,
 * so a month at one minute is typically a few hundred small objects sharing one string per branch.
 * Spans are in time order and never overlap; null for a direction without a tree.
 */
export interface BranchSpans {
  scale_up: BranchSpan[] | null;
  scale_down: BranchSpan[] | null;
}

/** A span as the API answers it: the branch, the times of its first and last evaluation, and how many evaluations it covers. */
export interface BranchSpanAnswer {
  branch: string;
  from: string;
  to: string;
  evaluations: number;
}

/** The answer's form of a span of a replay that started at `from` and stepped `step_seconds`. */
export function branchSpanAnswer(summary: Pick<ReplaySummary, 'from' | 'step_seconds'>, span: BranchSpan): BranchSpanAnswer {
  const start = Date.parse(summary.from);
  const stepMs = summary.step_seconds * 1000;
  return {
    branch: span.branch,
    from: new Date(start + span.start * stepMs).toISOString(),
    to: new Date(start + span.end * stepMs).toISOString(),
    evaluations: span.end - span.start + 1,
  };
}

export interface ReplayResult {
  timeline: TimelineRow[];
  summary: ReplaySummary;
  /** Only for a policy with a condition tree (scale_up_when or scale_down_when): which branch held, over time. */
  branches?: BranchSpans;
  /** Full decision records, when asked for (policy tests and the API's detail mode). */
  records?: DecisionRecord[];
}

/** Index of the first point with t >= x (points sorted by t). */
function lowerBound(s: PackedSeries, x: number): number {
  let lo = 0;
  let hi = s.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((s.t[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The values of an `instants` series at a window's instants: points at exactly those times. */
function exactValues(s: PackedSeries, win: RuleWindow): Sample[] {
  const out: Sample[] = [];
  let i = lowerBound(s, win.startMs);
  for (let k = 0; k < win.points && i < s.length; k++) {
    const x = win.startMs + k * win.stepMs;
    while (i < s.length && (s.t[i] as number) < x) i++;
    if (i < s.length && s.t[i] === x) out.push({ t: x / 1000, v: s.v[i] as number });
  }
  return out;
}

/** What a series answers for one rule's window at one evaluation. */
export function observe(s: PackedSeries, win: RuleWindow): Sample[] {
  return s.kind === 'instants' ? exactValues(s, win) : valuesAtInstants(s, win);
}

/** How long a replay may hold the event loop before it lets other work (API requests, the loop) run. */
const SLICE_MS = 10;

/** Lets timers and I/O run: a long replay must not stall /healthz or the evaluation loop. */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface ReplayOptions {
  /** Keep full decision records (policy tests and the API's detail mode). */
  keepRecords?: boolean;
  /**
   * Receives the timeline in batches, in order, instead of the result keeping it (the API streams
   * a long timeline out rather than holding it); the result's timeline is then empty. The replay
   * waits for a returned promise (backpressure) and stops when it rejects.
   */
  onRows?: (rows: TimelineRow[]) => Promise<void> | void;
  /** Rows per onRows batch (default 512). */
  batchRows?: number;
}

/**
 * Replays a policy over metric history with the same decision function the live loop uses:
 * every step is one evaluation, memory (cooldown, failures, one-shot marks) carries over, and a
 * change the decision makes is applied as a successful execution would be.
 */
export async function replay(input: ReplayInput, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const { intervalSeconds } = input;
  // A replay shows what the policy would do if it acted: shadow mode does not apply to it.
  const policy: Policy = { ...input.policy, dry_run: false };
  const rules = queriedBy(policy);
  const keys = new Map(rules.map((r) => [r.id, observationKey(r, input.defaultSource)]));
  const tracks = policy.target_tracking.length > 0;
  const series = new Map<string, PackedSeries | { error: { kind: string; message: string } }>();
  for (const [key, s] of input.series) series.set(key, Array.isArray(s) ? packSeries(s) : s);
  let memory: EngineMemory = { ...EMPTY_MEMORY, current_replicas: input.initialReplicas };
  let replicas = input.initialReplicas;
  const timeline: TimelineRow[] = [];
  let batch: TimelineRow[] = [];
  const batchRows = opts.batchRows ?? 512;
  const records: DecisionRecord[] = [];
  const actions: Record<string, number> = {};
  const reasons: Record<string, number> = {};
  let replicaSeconds = 0;
  let pendingSeconds = 0;
  let peak = replicas;
  let lowest = replicas;
  let evaluations = 0;
  let sliceStarted = performance.now();
  const branches: BranchSpans | undefined =
    policy.scale_up_when === null && policy.scale_down_when === null
      ? undefined
      : { scale_up: policy.scale_up_when === null ? null : [], scale_down: policy.scale_down_when === null ? null : [] };
  // One string per distinct branch, shared by its spans (the records make a new one each step).
  const branchTexts = new Map<string, string>();
  const extendSpans = (spans: BranchSpan[] | null, branch: string | null, at: number): void => {
    if (spans === null || branch === null) return;
    const last = spans.at(-1);
    if (last !== undefined && last.end === at - 1 && last.branch === branch) {
      last.end = at;
      return;
    }
    let text = branchTexts.get(branch);
    if (text === undefined) {
      text = branch;
      branchTexts.set(branch, text);
    }
    spans.push({ branch: text, start: at, end: at });
  };

  const start = input.from.getTime();
  const end = input.to.getTime();
  const stepMs = intervalSeconds * 1000;
  for (let at = start; at <= end; at += stepMs) {
    const now = new Date(at);
    const observations = new Map<string, Observation>();
    const latest: Record<string, number | null> = {};
    for (const rule of rules) {
      const key = keys.get(rule.id) as string;
      if (observations.has(key)) continue;
      const s = series.get(key);
      if (s === undefined) {
        observations.set(key, { samples: [], error: { kind: 'empty', message: `no series for ${rule.metric}` } });
        continue;
      }
      if (!isPacked(s)) {
        observations.set(key, { samples: [], error: s.error });
        continue;
      }
      observations.set(key, { samples: observe(s, ruleWindow(rule, now, intervalSeconds)) });
    }
    const { record, memory: next } = await decide({
      policy,
      now,
      intervalSeconds,
      defaultCooldown: input.defaultCooldown,
      defaultSource: input.defaultSource,
      price: input.price,
      executorReplicas: replicas,
      memory,
      observations,
    });
    const before = replicas;
    memory = applyExecution(next, record, now, { succeeded: true });
    if (record.should_scale) replicas = record.desired_replicas;
    for (const r of record.rules) latest[r.id] = r.latest;
    for (const t of record.target_tracking) latest[t.id] = t.value;

    actions[record.action] = (actions[record.action] ?? 0) + 1;
    reasons[record.reason_code] = (reasons[record.reason_code] ?? 0) + 1;
    const span = Math.min(stepMs, end - at) / 1000 || intervalSeconds;
    replicaSeconds += replicas * span;
    const upCondition = policy.scale_up_rules.some((r) => {
      const v = latest[r.id];
      return v !== null && v !== undefined && OPS[r.operator]?.(v, r.threshold) === true;
    });
    const upProposed = record.proposal !== null && record.proposal > before;
    if ((upCondition || upProposed) && record.action !== 'scale_up') pendingSeconds += span;
    peak = Math.max(peak, replicas);
    lowest = Math.min(lowest, replicas);
    if (branches !== undefined) {
      extendSpans(branches.scale_up, record.directions.scale_up.decided_by, evaluations);
      extendSpans(branches.scale_down, record.directions.scale_down.decided_by, evaluations);
    }
    evaluations++;
    const row: TimelineRow = {
      time: record.evaluated_at,
      values: latest,
      held: Object.fromEntries(record.rules.map((r) => [r.id, r.held])),
      replicas_before: before,
      replicas,
      ...(tracks ? { proposal: record.proposal } : {}),
      action: record.action,
      reason_code: record.reason_code,
      reason: record.reason,
    };
    if (opts.onRows === undefined) timeline.push(row);
    else {
      batch.push(row);
      if (batch.length >= batchRows) {
        const rows = batch;
        batch = [];
        await opts.onRows(rows);
      }
    }
    if (opts.keepRecords === true) records.push(record);
    if ((evaluations & 63) === 0 && performance.now() - sliceStarted > SLICE_MS) {
      await yieldToEventLoop();
      sliceStarted = performance.now();
    }
  }
  if (opts.onRows !== undefined && batch.length > 0) await opts.onRows(batch);
  const replicaHours = replicaSeconds / 3600;
  return {
    timeline,
    summary: {
      from: input.from.toISOString(),
      to: input.to.toISOString(),
      step_seconds: intervalSeconds,
      evaluations,
      actions,
      reason_codes: reasons,
      replica_hours: Math.round(replicaHours * 1000) / 1000,
      estimated_cost: input.price === null ? null : Math.round(replicaHours * input.price * 100) / 100,
      scale_up_pending_minutes: Math.round((pendingSeconds / 60) * 10) / 10,
      peak_replicas: peak,
      min_replicas_seen: lowest,
      final_replicas: replicas,
    },
    ...(branches !== undefined ? { branches } : {}),
    ...(opts.keepRecords === true ? { records } : {}),
  };
}
