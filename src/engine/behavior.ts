/**
 * Scaling behaviour: stabilization windows and rate limits, as Kubernetes' HorizontalPodAutoscaler
 * applies them (its `behavior` field), over the proposals and changes kept in the engine memory.
 *
 * Pure functions of (memory, now, settings): the loop, backtests and policy tests replay them the
 * same way, and the memory they keep is persisted with the rest of the engine memory, so a restart
 * changes nothing.
 */

/** A rate limit on one direction: within any period, the change may not exceed it. */
export interface RateLimit {
  /** Replicas that may be added (removed) per period; null: no replica limit. */
  replicas: number | null;
  /** Percent of the count at the period's start that may be added (removed); null: none. */
  percent: number | null;
  period: string;
  period_seconds: number;
  /** Which of `replicas` and `percent` applies when both are set: the one allowing the larger change (max) or the smaller (min). */
  select: 'max' | 'min';
}

/** A policy's `behavior`, normalized: windows in both forms, defaults filled in. */
export interface Behavior {
  scale_down_stabilization: string;
  scale_down_stabilization_seconds: number;
  scale_up_stabilization: string;
  scale_up_stabilization_seconds: number;
  scale_up_limit: RateLimit | null;
  scale_down_limit: RateLimit | null;
}

/**
 * A proposal and the evaluations it was in force for: `[from, to, replicas]`, times in unix
 * milliseconds. A new proposal closes the previous one at the evaluation before it (`now` minus
 * the evaluation interval), so a proposal repeated evaluation after evaluation is kept once and
 * the memory does not change while it holds.
 */
export type ProposalSpan = [from: number, to: number, replicas: number];

/** An executed change: `[at, delta]`, time in unix milliseconds, delta in replicas (negative: removed). */
export type ChangeEvent = [at: number, delta: number];

/** No stabilization and no limits: the behaviour of a policy that sets none and tracks no target. */
export const NO_BEHAVIOR: Behavior = Object.freeze({
  scale_down_stabilization: '0s',
  scale_down_stabilization_seconds: 0,
  scale_up_stabilization: '0s',
  scale_up_stabilization_seconds: 0,
  scale_up_limit: null,
  scale_down_limit: null,
});

/**
 * The proposals after this evaluation's: the span in force is kept as it is when the proposal is
 * the same, else closed at `nowMs - intervalMs` and a new span opens at `nowMs`. Spans that ended
 * before the longest window are dropped. The same array comes back when nothing changed.
 */
export function recordProposal(proposals: readonly ProposalSpan[], nowMs: number, intervalMs: number, replicas: number, keepMs: number): ProposalSpan[] {
  const last = proposals[proposals.length - 1];
  const cutoff = nowMs - keepMs;
  // Expired: closed spans whose last evaluation is at or before the window's start.
  let first = 0;
  while (first < proposals.length - 1 && (proposals[first] as ProposalSpan)[1] <= cutoff) first++;
  if (last !== undefined && last[2] === replicas) {
    if (first === 0) return proposals as ProposalSpan[];
    return proposals.slice(first);
  }
  const out = proposals.slice(first);
  if (last !== undefined) {
    const closed: ProposalSpan = [last[0], Math.max(last[0], nowMs - intervalMs), last[2]];
    out[out.length - 1] = closed;
    if (closed[1] <= cutoff) out.pop();
  }
  out.push([nowMs, nowMs, replicas]);
  return out;
}

/**
 * Stabilization, as HPA does it: a scale-down goes only as low as the highest proposal made in
 * the last `scale_down_stabilization_seconds` (this one included), a scale-up only as high as the
 * lowest proposal in the last `scale_up_stabilization_seconds`. A proposal counts while its span
 * reaches into the window: it was last made after `now - window`.
 */
export function stabilize(current: number, proposal: number, proposals: readonly ProposalSpan[], nowMs: number, b: Behavior): number {
  let upFloor = proposal; // the lowest proposal within the scale-up window
  let downCeiling = proposal; // the highest within the scale-down window
  const upCutoff = nowMs - b.scale_up_stabilization_seconds * 1000;
  const downCutoff = nowMs - b.scale_down_stabilization_seconds * 1000;
  for (let i = 0; i < proposals.length; i++) {
    const [, to, replicas] = proposals[i] as ProposalSpan;
    // The span in force (the last one) was made at its `to` at the latest and holds until now.
    const lastMade = i === proposals.length - 1 ? nowMs : to;
    if (lastMade > upCutoff && b.scale_up_stabilization_seconds > 0) upFloor = Math.min(upFloor, replicas);
    if (lastMade > downCutoff && b.scale_down_stabilization_seconds > 0) downCeiling = Math.max(downCeiling, replicas);
  }
  if (current < upFloor) return upFloor;
  if (current > downCeiling) return downCeiling;
  return current;
}

/** The changes after one of `delta` at `nowMs`, without those older than `keepMs`. */
export function recordChange(changes: readonly ChangeEvent[], nowMs: number, delta: number, keepMs: number): ChangeEvent[] {
  const cutoff = nowMs - keepMs;
  let first = 0;
  while (first < changes.length && (changes[first] as ChangeEvent)[0] <= cutoff) first++;
  // Nothing dropped, nothing added: the same array, so the memory does not change.
  if (first === 0 && delta === 0) return changes as ChangeEvent[];
  const out = changes.slice(first);
  if (delta !== 0) out.push([nowMs, delta]);
  return out;
}

/** Net replicas added within the period ending now (negative: removed). */
function changedWithin(changes: readonly ChangeEvent[], nowMs: number, periodSeconds: number): number {
  const cutoff = nowMs - periodSeconds * 1000;
  let sum = 0;
  for (const [at, delta] of changes) if (at > cutoff) sum += delta;
  return sum;
}

/**
 * The highest count a scale-up may reach now: the count at the period's start (the current count
 * less what was added within the period) plus `replicas`, or times (1 + percent / 100) rounded
 * up; with both, the larger (select max) or the smaller (select min).
 */
export function scaleUpLimit(current: number, changes: readonly ChangeEvent[], nowMs: number, limit: RateLimit): number {
  const start = current - changedWithin(changes, nowMs, limit.period_seconds);
  const byReplicas = limit.replicas === null ? undefined : start + limit.replicas;
  const byPercent = limit.percent === null ? undefined : Math.ceil(start * (1 + limit.percent / 100) - 1e-9);
  const candidates = [byReplicas, byPercent].filter((x): x is number => x !== undefined);
  const allowed = limit.select === 'max' ? Math.max(...candidates) : Math.min(...candidates);
  // A limit never forbids what is already there.
  return Math.max(allowed, current);
}

/**
 * The lowest count a scale-down may reach now: the count at the period's start less `replicas`,
 * or times (1 - percent / 100) rounded down; with both, the one allowing the larger drop (select
 * max) or the smaller (select min). Never below 0.
 */
export function scaleDownLimit(current: number, changes: readonly ChangeEvent[], nowMs: number, limit: RateLimit): number {
  const start = current - changedWithin(changes, nowMs, limit.period_seconds);
  const byReplicas = limit.replicas === null ? undefined : start - limit.replicas;
  const byPercent = limit.percent === null ? undefined : Math.floor(start * (1 - limit.percent / 100) + 1e-9);
  const candidates = [byReplicas, byPercent].filter((x): x is number => x !== undefined);
  const allowed = limit.select === 'max' ? Math.min(...candidates) : Math.max(...candidates);
  return Math.min(Math.max(0, allowed), current);
}

/** The longest span of history stabilization and limits read, in milliseconds. */
export function behaviorHorizonMs(b: Behavior): { proposals: number; changes: number } {
  return {
    proposals: Math.max(b.scale_up_stabilization_seconds, b.scale_down_stabilization_seconds) * 1000,
    changes: Math.max(b.scale_up_limit?.period_seconds ?? 0, b.scale_down_limit?.period_seconds ?? 0) * 1000,
  };
}
