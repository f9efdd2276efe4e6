import type { Sample } from '../plugins/api.js';
import type { Policy } from '../policy/policy-model.js';
import { decide } from '../engine/decide.js';
import { EMPTY_MEMORY, type DecisionRecord, type EngineMemory, type Observation } from '../engine/decision.js';
import { applyExecution } from '../engine/execution.js';
import { OPS, observationKey, ruleWindow } from '../engine/rule-window.js';

/** A metric series for one observation key, or the error fetching it gave. */
export type SeriesInput = Sample[] | { error: { kind: string; message: string } };

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
  /** Samples by observationKey(rule, defaultSource), oldest first, covering [from - duration, to]. */
  series: ReadonlyMap<string, SeriesInput>;
}

/** One evaluation of a replay. */
export interface TimelineRow {
  time: string;
  /** Latest value of each rule's metric at this instant (null when missing or failed), by rule id. */
  values: Record<string, number | null>;
  /** Each rule's verdict, by rule id. */
  held: Record<string, boolean>;
  replicas_before: number;
  replicas: number;
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
  /** Minutes in which some scale-up rule's condition was true at that instant but no scale-up happened. */
  scale_up_pending_minutes: number;
  peak_replicas: number;
  min_replicas_seen: number;
  final_replicas: number;
}

export interface ReplayResult {
  timeline: TimelineRow[];
  summary: ReplaySummary;
  /** Full decision records, when asked for (policy tests and the API's detail mode). */
  records?: DecisionRecord[];
}

/** Index of the first sample with t >= x (samples sorted by t). */
function lowerBound(samples: Sample[], x: number): number {
  let lo = 0;
  let hi = samples.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((samples[mid] as Sample).t < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}


/**
 * Replays a policy over metric history with the same decision function the live loop uses:
 * every step is one evaluation, memory (cooldown, failures, one-shot marks) carries over, and a
 * change the decision makes is applied as a successful execution would be.
 */
export async function replay(input: ReplayInput, opts: { keepRecords?: boolean } = {}): Promise<ReplayResult> {
  const { intervalSeconds } = input;
  // A replay shows what the policy would do if it acted: shadow mode does not apply to it.
  const policy: Policy = { ...input.policy, dry_run: false };
  const rules = [...policy.scale_up_rules, ...policy.scale_down_rules];
  const keys = new Map(rules.map((r) => [r.id, observationKey(r, input.defaultSource)]));
  let memory: EngineMemory = { ...EMPTY_MEMORY, current_replicas: input.initialReplicas };
  let replicas = input.initialReplicas;
  const timeline: TimelineRow[] = [];
  const records: DecisionRecord[] = [];
  const actions: Record<string, number> = {};
  const reasons: Record<string, number> = {};
  let replicaSeconds = 0;
  let pendingSeconds = 0;
  let peak = replicas;
  let lowest = replicas;

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
      const s = input.series.get(key);
      if (s === undefined) {
        observations.set(key, { samples: [], error: { kind: 'empty', message: `no series for ${rule.metric}` } });
        continue;
      }
      if (!Array.isArray(s)) {
        observations.set(key, { samples: [], error: s.error });
        continue;
      }
      const win = ruleWindow(rule, now, intervalSeconds);
      const tol = win.step / 2;
      const lo = lowerBound(s, win.seconds === 0 ? win.end - intervalSeconds - tol : win.start - tol);
      const hi = lowerBound(s, win.end + tol + 1e-9);
      const samples = s.slice(lo, hi);
      // A zero-duration rule reads the latest value: only one at this instant counts (no stale values).
      const usable = win.seconds === 0 ? samples.filter((x) => Math.abs(x.t - win.end) <= tol) : samples;
      observations.set(
        key,
        usable.length === 0 && win.seconds === 0 ? { samples: [], error: { kind: 'empty', message: `no value of ${rule.metric} at ${now.toISOString()}` } } : { samples: usable },
      );
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

    actions[record.action] = (actions[record.action] ?? 0) + 1;
    reasons[record.reason_code] = (reasons[record.reason_code] ?? 0) + 1;
    const span = Math.min(stepMs, end - at) / 1000 || intervalSeconds;
    replicaSeconds += replicas * span;
    const upCondition = policy.scale_up_rules.some((r) => {
      const v = latest[r.id];
      return v !== null && v !== undefined && OPS[r.operator]?.(v, r.threshold) === true;
    });
    if (upCondition && record.action !== 'scale_up') pendingSeconds += span;
    peak = Math.max(peak, replicas);
    lowest = Math.min(lowest, replicas);
    timeline.push({
      time: record.evaluated_at,
      values: latest,
      held: Object.fromEntries(record.rules.map((r) => [r.id, r.held])),
      replicas_before: before,
      replicas,
      action: record.action,
      reason_code: record.reason_code,
      reason: record.reason,
    });
    if (opts.keepRecords === true) records.push(record);
  }
  const replicaHours = replicaSeconds / 3600;
  return {
    timeline,
    summary: {
      from: input.from.toISOString(),
      to: input.to.toISOString(),
      step_seconds: intervalSeconds,
      evaluations: timeline.length,
      actions,
      reason_codes: reasons,
      replica_hours: Math.round(replicaHours * 1000) / 1000,
      estimated_cost: input.price === null ? null : Math.round(replicaHours * input.price * 100) / 100,
      scale_up_pending_minutes: Math.round((pendingSeconds / 60) * 10) / 10,
      peak_replicas: peak,
      min_replicas_seen: lowest,
      final_replicas: replicas,
    },
    ...(opts.keepRecords === true ? { records } : {}),
  };
}
