import type { Policy, Rule, Schedule } from '../policy/policy-model.js';
import { formatDuration } from '../util/duration.js';
import type {
  Action,
  AdjustmentRecord,
  DecisionRecord,
  DirectionRecord,
  EngineMemory,
  Observation,
  ReasonCode,
  RuleRecord,
  ScheduleRecord,
  TrackingRecord,
} from './decision.js';
import { combinerFor, conditionRecord, decidingBranch, stepRules, type DirectionShape } from './rule-combiner.js';
import { OPERATOR_SYMBOL, isMetricError, isoMs, observationKey, ruleRecord, ruleWindow, sharedVerdict, type RuleVerdict } from './rule-window.js';
import { lastFireMs } from './schedule-clock.js';
import { NO_BEHAVIOR, behaviorHorizonMs, recordChange, recordProposal, scaleDownLimit, scaleUpLimit, stabilize, type Behavior } from './behavior.js';
import { trackingOpinion, trackingValue, type TrackingVerdict } from './target-tracking.js';

/** Everything one evaluation depends on; nothing else is read. */
export interface DecisionInput {
  policy: Policy;
  now: Date;
  intervalSeconds: number;
  /** Cooldown for a policy whose cooldown_seconds is null. */
  defaultCooldown: number;
  /** Metric source of a rule whose source is null. */
  defaultSource: string;
  /** Price of one replica-hour: the policy's, else the config's for its target type; null if none. */
  price: number | null;
  /** What the executor reported; null when it could not tell. */
  executorReplicas: number | null;
  memory: EngineMemory;
  /** Keyed by observationKey(rule, defaultSource). */
  observations: ReadonlyMap<string, Observation>;
  dryRun?: { request?: boolean; global?: boolean };
}

export interface DecisionResult {
  record: DecisionRecord;
  /** Memory after this evaluation, before execution (the manager adds the execution's effects). */
  memory: EngineMemory;
  /** Whether this evaluation should write a `blocked` history row (new blocked reason). */
  recordBlocked: boolean;
}

type Driver = 'rule' | 'schedule' | 'fallback' | null;

interface Settled {
  driver: Driver;
  wanted: number;
  target: number;
  floorHeld: boolean;
}

const EMPTY_ONE_SHOTS: Record<string, string> = Object.freeze({}) as Record<string, string>;

interface ActiveSchedule {
  schedule: Schedule;
  index: number;
  fired: Date;
}

function describeRule(r: RuleRecord): string {
  const cond = `${r.metric} ${OPERATOR_SYMBOL[r.operator]} ${r.threshold}`;
  return r.window_seconds > 0 ? `${cond} for ${formatDuration(r.window_seconds)}` : cond;
}

const NO_SCHEDULES: { window: ActiveSchedule | undefined; oneShot: ActiveSchedule | undefined } = Object.freeze({ window: undefined, oneShot: undefined });

/**
 * The schedules that apply at `now` (step 4, with the daylight-saving rules of docs/decisions.md in lastFireMs):
 * - a window applies over [fire, fire + duration): from its fire instant included to fire +
 *   duration excluded; among windows the one fired last wins (on a tie, the later in the list);
 * - a one-shot applies at the first evaluation at or after its fire, within one interval of it,
 *   unless memory.one_shots already holds that fire (each fire is applied once, however the
 *   evaluations fall around it; the manager persists the mark).
 */
function activeSchedules(policy: Policy, now: Date, intervalSeconds: number, memory: EngineMemory): { window: ActiveSchedule | undefined; oneShot: ActiveSchedule | undefined } {
  const list = policy.schedules;
  if (list.length === 0) return NO_SCHEDULES;
  const at = now.getTime();
  let window: ActiveSchedule | undefined;
  let oneShot: ActiveSchedule | undefined;
  for (let index = 0; index < list.length; index++) {
    const schedule = list[index] as Schedule;
    if (!schedule.enabled) continue;
    const fired = lastFireMs(schedule, at);
    if (Number.isNaN(fired)) continue;
    const age = at - fired;
    if (schedule.duration_seconds > 0) {
      if (age < schedule.duration_seconds * 1000 && (window === undefined || fired >= window.fired.getTime())) window = { schedule, index, fired: new Date(fired) };
    } else if (age <= intervalSeconds * 1000 && (oneShot === undefined || fired >= oneShot.fired.getTime())) {
      const firedAt = new Date(fired);
      if (memory.one_shots[schedule.id] !== firedAt.toISOString()) oneShot = { schedule, index, fired: firedAt };
    }
  }
  return { window, oneShot };
}

function scheduleRecord(a: ActiveSchedule): ScheduleRecord {
  const s = a.schedule;
  return {
    id: s.id,
    cron_expression: s.cron_expression,
    timezone: s.timezone,
    kind: s.duration_seconds > 0 ? 'window' : 'one_shot',
    mode: s.mode,
    fired_at: a.fired.toISOString(),
    until: s.duration_seconds > 0 ? new Date(a.fired.getTime() + s.duration_seconds * 1000).toISOString() : null,
    desired_replicas: s.desired_replicas,
  };
}

/**
 * What one evaluation decided, without its explanation: everything the loop needs to act and to
 * tell a steady state from a change. `explain()` turns it into the decision record; as both are
 * pure, the record can be made later from the same input and is the same.
 */
export interface Assessment {
  evaluatedAt: string;
  current: number;
  currentFrom: DecisionRecord['current_replicas_from'];
  dryRunFrom: DecisionRecord['dry_run_from'];
  up: RuleVerdict[];
  down: RuleVerdict[];
  anyError: boolean;
  failures: number;
  combined: { up: boolean; down: boolean };
  upStep: number;
  downStep: number;
  chosen: 'scale_up' | 'scale_down' | null;
  /** Driver before cooldown (who set the target), and after it. */
  driver: Driver;
  finalDriver: Driver;
  schedule: ScheduleRecord | null;
  adjustments: AdjustmentRecord[];
  /** What rules, bounds and cost cap settled on before cooldown. */
  settledTarget: number;
  wanted: number;
  desired: number;
  cooldownRemaining: number;
  action: Action;
  reasonCode: ReasonCode;
  blocked: boolean;
  memory: EngineMemory;
  recordBlocked: boolean;
  /** Each target-tracking entry's verdict (empty without target tracking). */
  tracking: TrackingVerdict[];
  /** The highest opinion before stabilization and rate limits; null: none. */
  proposal: number | null;
  /** Which target-tracking entry gave the proposal (its index); -1: the step rules; -2: no one. */
  proposedBy: number;
  /** The direction of the proposal before stabilization (what `chosen` was before a window held it). */
  proposedDirection: 'scale_up' | 'scale_down' | null;
}

const NO_TRACKING: TrackingVerdict[] = Object.freeze([]) as unknown as TrackingVerdict[];
const NO_ENTRIES: Policy['target_tracking'] = Object.freeze([]) as unknown as Policy['target_tracking'];

/** Whether a behaviour changes anything: a stabilization window or a rate limit. */
function activeBehavior(b: Behavior): boolean {
  return b.scale_up_stabilization_seconds > 0 || b.scale_down_stabilization_seconds > 0 || b.scale_up_limit !== null || b.scale_down_limit !== null;
}

const BLOCKING: ReadonlySet<ReasonCode> = new Set<ReasonCode>(['cooldown', 'at_max', 'at_min', 'cost_capped']);

/**
 * The largest scale_by (for scale-down rules: the one closest to zero) among the rules whose
 * verdict held (0 when none); with a condition tree, among the rules stepRules() names.
 */
function stepOf(rules: readonly Rule[], verdicts: readonly RuleVerdict[], shape: DirectionShape): number {
  let step = -Infinity;
  if (shape.polarity === null) {
    for (let i = 0; i < rules.length; i++) if ((verdicts[i] as RuleVerdict).held) step = Math.max(step, (rules[i] as Rule).scale_by);
  } else {
    const from = stepRules(shape, heldVector(verdicts), failedVector(verdicts));
    for (let i = 0; i < rules.length; i++) if (from[i] === true) step = Math.max(step, (rules[i] as Rule).scale_by);
  }
  return step === -Infinity ? 0 : step;
}

function verdictsOf(input: DecisionInput, rules: readonly Rule[]): RuleVerdict[] {
  const out = new Array<RuleVerdict>(rules.length);
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as Rule;
    out[i] = sharedVerdict(rule, input.observations.get(observationKey(rule, input.defaultSource)), ruleWindow(rule, input.now, input.intervalSeconds));
  }
  return out;
}

function failedVector(verdicts: readonly RuleVerdict[]): boolean[] {
  const out = new Array<boolean>(verdicts.length);
  for (let i = 0; i < verdicts.length; i++) out[i] = isMetricError(verdicts[i] as RuleVerdict);
  return out;
}

function heldVector(verdicts: readonly RuleVerdict[]): boolean[] {
  const out = new Array<boolean>(verdicts.length);
  for (let i = 0; i < verdicts.length; i++) out[i] = (verdicts[i] as RuleVerdict).held;
  return out;
}

/**
 * The steps 1-9 of README "How a decision is made" for one policy at one instant, without the words. Pure; synchronous once
 * the policy shape's rules engine has seen this verdict vector (json-rules-engine is async).
 */
export function assess(input: DecisionInput): Assessment | Promise<Assessment> {
  const p = input.policy;
  const up = verdictsOf(input, p.scale_up_rules);
  const down = verdictsOf(input, p.scale_down_rules);
  const combiner = combinerFor(p);
  const upHeld = heldVector(up);
  const downHeld = heldVector(down);
  // A condition tree tells a rule whose metric failed from one that did not hold (see treeVerdict).
  const upFailed = combiner.up.tree !== null ? failedVector(up) : undefined;
  const downFailed = combiner.down.tree !== null ? failedVector(down) : undefined;
  const combined = combiner.peek(upHeld, downHeld, upFailed, downFailed);
  if (combined !== undefined) return settleAll(input, up, down, combined);
  return combiner.combine(upHeld, downHeld, upFailed, downFailed).then((c) => settleAll(input, up, down, c));
}

function settleAll(input: DecisionInput, up: RuleVerdict[], down: RuleVerdict[], combined: { up: boolean; down: boolean }): Assessment {
  const { policy: p, now, intervalSeconds, memory } = input;
  const evaluatedAt = isoMs(now.getTime());

  // Step 1: current replicas.
  const currentFrom: DecisionRecord['current_replicas_from'] =
    input.executorReplicas !== null ? 'executor' : memory.current_replicas !== null ? 'state' : 'min_replicas';
  const current = input.executorReplicas ?? memory.current_replicas ?? p.min_replicas;

  const dryRunFrom: DecisionRecord['dry_run_from'] = [];
  if (p.dry_run) dryRunFrom.push('policy');
  if (input.dryRun?.request === true) dryRunFrom.push('request');
  if (input.dryRun?.global === true) dryRunFrom.push('config');

  // Step 2 (verdicts and their combination came in), step 3: direction and step. With `any`,
  // the step comes from the rules that held.
  let anyError = false;
  for (const v of up) if (isMetricError(v)) anyError = true;
  for (const v of down) if (isMetricError(v)) anyError = true;
  const upStep = combined.up ? stepOf(p.scale_up_rules, up, combinerFor(p).up) : 0;
  const downStep = combined.down ? stepOf(p.scale_down_rules, down, combinerFor(p).down) : 0;
  let chosen: 'scale_up' | 'scale_down' | null = combined.up ? 'scale_up' : combined.down ? 'scale_down' : null;
  let ruleTarget = chosen === 'scale_up' ? current + upStep : chosen === 'scale_down' ? current + downStep : current;

  // Target tracking: every entry's opinion; with the step rules' (current + step of the direction
  // that held), the highest is the proposal.
  const entries = p.target_tracking ?? NO_ENTRIES;
  let tracking = NO_TRACKING;
  let proposal: number | null = chosen !== null ? ruleTarget : null;
  let proposedBy = chosen !== null ? -1 : -2;
  let withheldDown = false;
  if (entries.length > 0) {
    tracking = new Array<TrackingVerdict>(entries.length);
    if (combined.up && combined.down) proposal = current + upStep; // both held: up is the higher
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as (typeof entries)[number];
      const v = trackingOpinion(e, current, trackingValue(input.observations.get(observationKey(e, input.defaultSource)), ruleWindow(e, now, intervalSeconds)));
      tracking[i] = v;
      if (v.outcome === 'metric_error') anyError = true;
      if (v.opinion !== null && (proposal === null || v.opinion > proposal)) {
        proposal = v.opinion;
        proposedBy = i;
      }
    }
    ruleTarget = proposal ?? current;
    chosen = proposal === null || proposal === current ? null : proposal > current ? 'scale_up' : 'scale_down';
    // As HPA: no scale-down while a metric fails, since the failing one might have wanted more.
    // The proposal stays in the record; it is not remembered for stabilization.
    if (anyError && chosen === 'scale_down') {
      withheldDown = true;
      chosen = null;
      ruleTarget = current;
    }
  }
  const proposedDirection = chosen;
  const failures = anyError ? memory.consecutive_failures + 1 : 0;

  const nextMemory: EngineMemory = {
    current_replicas: current,
    last_change_at: memory.last_change_at,
    consecutive_failures: failures,
    last_blocked: memory.last_blocked,
    one_shots: p.schedules.length === 0 ? EMPTY_ONE_SHOTS : Object.fromEntries(Object.entries(memory.one_shots).filter(([id]) => p.schedules.some((s) => s.id === id))),
  };

  const behavior = p.behavior ?? NO_BEHAVIOR;
  const behaves = activeBehavior(behavior);
  const nowMs = now.getTime();
  let stabilizedFrom: number | null = null;
  if (behaves) {
    const horizon = behaviorHorizonMs(behavior);
    if (horizon.proposals > 0) {
      // The recommendation of this evaluation: the proposal, or "stay" when no one had an opinion;
      // none at all when no one had an opinion and a metric failed (a failure is not a
      // recommendation to stay).
      const recommendation = proposal ?? current;
      // No proposal remembered yet (the first evaluation, or behaviour just added): the current
      // count counts as proposed now, as HPA seeds its recommendations, so the first evaluation
      // is stabilized too.
      const spans = memory.proposals ?? [[nowMs, nowMs, current] as const];
      if ((proposal !== null && !withheldDown) || !anyError) {
        const st = stabilize(current, recommendation, spans, nowMs, behavior);
        nextMemory.proposals = recordProposal(spans, nowMs, intervalSeconds * 1000, recommendation, horizon.proposals);
        if (st !== recommendation) {
          stabilizedFrom = recommendation;
          ruleTarget = st;
          chosen = st === current ? null : st > current ? 'scale_up' : 'scale_down';
        }
      } else if (memory.proposals !== undefined && memory.proposals.length > 0) nextMemory.proposals = memory.proposals;
    }
    if (horizon.changes > 0) nextMemory.changes = recordChange(memory.changes ?? [], nowMs, 0, horizon.changes);
  }

  if (!p.enabled) {
    return {
      evaluatedAt,
      current,
      currentFrom,
      dryRunFrom,
      up,
      down,
      anyError,
      failures,
      combined,
      upStep,
      downStep,
      chosen,
      driver: null,
      finalDriver: null,
      schedule: null,
      adjustments: [],
      settledTarget: current,
      wanted: current,
      desired: current,
      cooldownRemaining: 0,
      action: 'none',
      reasonCode: 'disabled',
      blocked: false,
      memory: { ...nextMemory, consecutive_failures: memory.consecutive_failures, last_blocked: null },
      recordBlocked: false,
      tracking,
      proposal,
      proposedBy,
      proposedDirection,
    };
  }

  // Step 4 (and 8's fallback): who sets the target.
  const { window, oneShot } = activeSchedules(p, now, intervalSeconds, memory);
  const adjustments: AdjustmentRecord[] = [];
  let driver: Driver = null;
  let wanted = current;
  let schedule: ScheduleRecord | null = null;
  let scheduleHold = false;
  const fallbackActive = p.on_metric_error === 'fallback' && p.fallback !== null && failures >= p.fallback.after_failures;

  if (window !== undefined && window.schedule.mode === 'exact') {
    driver = 'schedule';
    wanted = window.schedule.desired_replicas;
    schedule = scheduleRecord(window);
    scheduleHold = true;
    if (chosen !== null) {
      adjustments.push({
        kind: 'schedule_hold',
        from: ruleTarget,
        to: wanted,
        detail: `rules wanted ${ruleTarget}; the exact schedule window holds ${wanted} until ${schedule.until}`,
      });
    }
  } else if (oneShot !== undefined) {
    driver = 'schedule';
    wanted = oneShot.schedule.desired_replicas;
    schedule = scheduleRecord(oneShot);
    nextMemory.one_shots = { ...nextMemory.one_shots, [oneShot.schedule.id]: oneShot.fired.toISOString() };
  } else if (fallbackActive && p.fallback !== null) {
    driver = 'fallback';
    wanted = p.fallback.replicas;
  } else if (chosen !== null) {
    driver = 'rule';
    wanted = ruleTarget;
  }
  if (stabilizedFrom !== null && (driver === 'rule' || driver === null)) {
    adjustments.push({
      kind: 'stabilization',
      from: stabilizedFrom,
      to: ruleTarget,
      detail: stabilizationDetail(behavior, stabilizedFrom, ruleTarget),
    });
  }
  const floorWindow = window !== undefined && window.schedule.mode === 'floor' ? window : undefined;
  const floorRecord = floorWindow !== undefined ? scheduleRecord(floorWindow) : null;
  if (schedule === null) schedule = floorRecord;

  /**
   * A floor window (step 4), bounds (step 5) and the cost cap (step 6) applied to what `by` wants.
   * Used for the decision and, under cooldown, for the same evaluation without the rules.
   */
  const settle = (by: Driver, wants: number, adj: AdjustmentRecord[]): Settled => {
    let d = by;
    let w = wants;
    let floorHeld = false;
    if (floorWindow !== undefined) {
      const floor = floorWindow.schedule.desired_replicas;
      if (d !== 'schedule' && current < floor && w <= floor) {
        // Below the floor: the schedule raises the target (and ignores cooldown).
        d = 'schedule';
        w = floor;
      } else if (w < floor) {
        adj.push({ kind: 'schedule_floor', from: w, to: floor, detail: `the floor schedule window keeps at least ${floor} until ${floorRecord?.until}` });
        w = floor;
        floorHeld = true;
      }
    }

    // Step 5: bounds, with scale-to-zero.
    let target = w;
    const asleep = p.scale_to_zero && current === 0;
    const floorAllowsZero = floorWindow === undefined || floorWindow.schedule.desired_replicas === 0;
    // A step rule's scale-down at min_replicas goes to 0; target tracking goes there only when its
    // opinion is 0 (an opinion of 1 at min_replicas 1 is no reason to sleep, and would wake again).
    const zeroWanted = proposedBy < 0 || target <= 0;
    if (d === 'rule' && chosen === 'scale_down' && p.scale_to_zero && current > 0 && current <= p.min_replicas && floorAllowsZero && zeroWanted) {
      adj.push({ kind: 'scale_to_zero', from: target, to: 0, detail: `scale-down from min_replicas ${p.min_replicas} goes to 0 (scale_to_zero)` });
      target = 0;
    } else if (target <= 0 && p.scale_to_zero && (d === 'schedule' || d === 'fallback' || asleep)) {
      // Zero is allowed: a schedule or fallback asked for it, or the target sleeps and nothing
      // woke it (a scale-down at 0 stays at 0; only a scale-up wakes it, to min_replicas).
      target = 0;
    } else if (target > p.max_replicas) {
      adj.push({ kind: 'max_replicas', from: target, to: p.max_replicas, detail: `clamped to max_replicas ${p.max_replicas}` });
      target = p.max_replicas;
    } else if (target < p.min_replicas) {
      const detail = current === 0 && target > 0 ? `waking from 0 goes to at least min_replicas ${p.min_replicas}` : `clamped to min_replicas ${p.min_replicas}`;
      adj.push({ kind: 'min_replicas', from: target, to: p.min_replicas, detail });
      target = p.min_replicas;
    }

    // Step 6: cost cap; outranks schedules, never min_replicas.
    if (input.price !== null && input.price > 0 && p.max_hourly_cost !== null) {
      const affordable = Math.max(p.min_replicas, Math.floor(p.max_hourly_cost / input.price + 1e-9));
      if (target > affordable) {
        adj.push({
          kind: 'cost_cap',
          from: target,
          to: affordable,
          detail: `${target} x ${input.price}/h = ${(target * input.price).toFixed(2)}/h exceeds max_hourly_cost ${p.max_hourly_cost}; at most ${affordable} replicas`,
        });
        target = affordable;
      }
    }
    return { driver: d, wanted: w, target, floorHeld };
  };

  const settled = settle(driver, wanted, adjustments);
  driver = settled.driver;
  wanted = settled.wanted;
  if (settled.floorHeld) scheduleHold = true;

  // Rate limits, on what rules and target tracking change (schedules and the fallback are not
  // limited). Bounds corrections are not limited either: waking from 0 or rising to min_replicas,
  // falling to max_replicas or under the cost cap, and going to 0 with scale_to_zero. The limited
  // count stays within the bounds.
  let rateLimited = false;
  if (driver === 'rule' && behaves && (behavior.scale_up_limit !== null || behavior.scale_down_limit !== null)) {
    const changes = nextMemory.changes ?? [];
    const t = settled.target;
    const capped = adjustments.some((x) => x.kind === 'cost_cap');
    let limit = t;
    if (t > current && behavior.scale_up_limit !== null) {
      // From 0 a percent allows nothing: waking goes to min_replicas, and at least 1.
      const free = current === 0 ? Math.max(p.min_replicas, 1) : p.min_replicas;
      limit = Math.min(t, Math.max(scaleUpLimit(current, changes, nowMs, behavior.scale_up_limit), Math.min(t, free)));
    } else if (t < current && behavior.scale_down_limit !== null && !(t === 0 && p.scale_to_zero)) {
      limit = Math.max(t, Math.min(scaleDownLimit(current, changes, nowMs, behavior.scale_down_limit), capped ? t : Math.max(t, p.max_replicas)));
    }
    if (limit !== t) {
      const l = (t > current ? behavior.scale_up_limit : behavior.scale_down_limit) as NonNullable<Behavior['scale_up_limit']>;
      adjustments.push({ kind: 'rate_limit', from: t, to: limit, detail: rateLimitDetail(l, t > current, limit) });
      settled.target = limit;
      rateLimited = true;
    }
  }

  // Step 7: cooldown, for rule-driven changes only. It suppresses what the rules add; the floor
  // window, the bounds and the cost cap still apply as if no rule had held.
  const cooldown = p.cooldown_seconds ?? input.defaultCooldown;
  const sinceChange = memory.last_change_at === null ? Infinity : (now.getTime() - Date.parse(memory.last_change_at)) / 1000;
  const cooldownRemaining = Math.max(0, Math.ceil(cooldown - sinceChange));
  let final = settled.target;
  let finalDriver: Driver = driver;
  let cooled = false;
  if (driver === 'rule' && settled.target !== current && cooldownRemaining > 0) {
    const rest: AdjustmentRecord[] = [];
    const withoutRules = settle(null, current, rest);
    finalDriver = withoutRules.driver;
    if (withoutRules.target !== settled.target) {
      adjustments.push({
        kind: 'cooldown',
        from: settled.target,
        to: withoutRules.target,
        detail: `the last change was ${Math.floor(sinceChange)}s ago; cooldown is ${cooldown}s (${cooldownRemaining}s left)`,
      });
      adjustments.push(...rest);
      final = withoutRules.target;
      cooled = true;
    }
  }

  // Step 9: the outcome (its sentence is written by explain()).
  let action: Action = 'none';
  let reasonCode: ReasonCode;
  if (final !== current) {
    const up = final > current;
    if (finalDriver === 'schedule' && schedule !== null) {
      action = 'scheduled';
      reasonCode = schedule.kind === 'window' ? 'schedule_window' : 'schedule_fired';
    } else if (finalDriver === 'fallback') {
      action = 'fallback';
      reasonCode = 'fallback';
    } else if (finalDriver === 'rule' && (up ? chosen === 'scale_up' : chosen === 'scale_down')) {
      action = up ? 'scale_up' : 'scale_down';
      reasonCode = rateLimited && !cooled ? 'rate_limited' : stabilizedFrom !== null ? 'stabilized' : 'rules_held';
    } else {
      action = up ? 'scale_up' : 'scale_down';
      reasonCode = 'out_of_bounds';
    }
  } else if (cooled) {
    reasonCode = 'cooldown';
  } else if (rateLimited) {
    reasonCode = 'rate_limited';
  } else if (stabilizedFrom !== null && driver !== 'schedule' && driver !== 'fallback' && !scheduleHold) {
    reasonCode = 'stabilized';
  } else if (driver === 'schedule' || scheduleHold) {
    reasonCode = 'schedule_hold';
  } else if (driver === 'rule' && chosen === 'scale_up') {
    reasonCode = adjustments.some((a) => a.kind === 'cost_cap') && current < p.max_replicas ? 'cost_capped' : 'at_max';
  } else if (driver === 'rule' && chosen === 'scale_down') {
    reasonCode = 'at_min';
  } else if (anyError || driver === 'fallback') {
    reasonCode = 'metric_error';
  } else {
    reasonCode = 'no_rule_held';
  }

  const blocked = action === 'none' && driver === 'rule' && BLOCKING.has(reasonCode);
  nextMemory.last_blocked = blocked ? reasonCode : null;
  // One literal with every field (no spread of a shared part): a fixed shape, built on the fast path.
  return {
    evaluatedAt,
    current,
    currentFrom,
    dryRunFrom,
    up,
    down,
    anyError,
    failures,
    combined,
    upStep,
    downStep,
    chosen,
    driver,
    finalDriver,
    schedule,
    adjustments,
    settledTarget: settled.target,
    wanted,
    desired: final,
    cooldownRemaining,
    action,
    reasonCode,
    blocked,
    memory: nextMemory,
    recordBlocked: blocked && memory.last_blocked !== reasonCode,
    tracking,
    proposal,
    proposedBy,
    proposedDirection,
  };
}

function stabilizationDetail(b: Behavior, from: number, to: number): string {
  const seconds = to > from ? b.scale_down_stabilization_seconds : b.scale_up_stabilization_seconds;
  return to > from
    ? `the highest proposal of the last ${formatDuration(seconds)} (scale_down_stabilization) is ${to}`
    : `the lowest proposal of the last ${formatDuration(seconds)} (scale_up_stabilization) is ${to}`;
}

function rateLimitDetail(l: NonNullable<Behavior['scale_up_limit']>, up: boolean, to: number): string {
  const parts = [l.replicas !== null ? `${l.replicas} replicas` : null, l.percent !== null ? `${l.percent}%` : null].filter((x) => x !== null);
  const which = parts.length > 1 ? ` (the ${l.select === 'max' ? 'larger' : 'smaller'} of ${parts.join(' and ')})` : ` (${parts[0]})`;
  return `${up ? 'scale_up_limit' : 'scale_down_limit'} allows ${up ? 'at most' : 'at least'} ${to} within ${formatDuration(l.period_seconds)}${which}`;
}

/** The human sentence of an outcome (step 9). */
/** A sentence with the adjustments that shaped the outcome appended in parentheses. */
function withAdjustments(reason: string, adjustments: readonly AdjustmentRecord[]): string {
  return adjustments.length > 0 ? `${reason.slice(0, -1)} (${adjustments.map((x) => x.detail).join('; ')}).` : reason;
}

/** The branches of the directions' condition trees that decided (null: no tree, or it did not hold). */
interface Branches {
  scale_up: string | null;
  scale_down: string | null;
}

const NO_BRANCHES: Branches = Object.freeze({ scale_up: null, scale_down: null });

/**
 * The rules that triggered, in words ("m > 60 for 1m and ..."); with a condition tree, led by the
 * branch that decided ('scale_up_when held through "a and b" (m > 60 and ...)').
 */
function heldTextOf(rules: readonly RuleRecord[], triggered: readonly string[], branch: string | null = null, direction: RuleRecord['direction'] | null = null): string {
  const text = rules
    .filter((r) => triggered.includes(r.id))
    .map(describeRule)
    .join(' and ');
  if (branch === null || direction === null) return text;
  return `${direction}_when held through "${branch}"${text !== '' ? ` (${text})` : ''}`;
}

/**
 * A floor window's schedule_hold: rules (or the fallback) act above the floor, so nothing was
 * suppressed; either the floor kept what they wanted from going lower, or no one wanted a change
 * and the floor (with the bounds or cost cap, listed) left the target where it is.
 */
function floorHoldReason(a: Assessment, schedule: ScheduleRecord): string {
  const base = `The floor schedule "${schedule.cron_expression}" keeps at least ${schedule.desired_replicas} replicas until ${schedule.until}`;
  const floor = a.adjustments.find((x) => x.kind === 'schedule_floor');
  if (floor !== undefined) {
    const who = a.driver === 'fallback' ? 'the fallback' : 'rules';
    return `${base}: ${who} wanted ${floor.from}, so the floor holds the target at ${a.current}.`;
  }
  const rules = a.chosen === null ? 'no rule held' : `rules wanted ${a.current + (a.chosen === 'scale_up' ? a.upStep : a.downStep)}`;
  return withAdjustments(`${base}; ${rules}, and the target stays at ${a.current}.`, a.adjustments);
}

/** Who made the proposal, in words: a target-tracking entry with its arithmetic, or the rules that held. */
function proposerText(a: Assessment, tracking: readonly TrackingRecord[], rules: readonly RuleRecord[], triggered: readonly string[], branches: Branches): string {
  const t = a.proposedBy >= 0 ? tracking[a.proposedBy] : undefined;
  if (t !== undefined) return `target tracking ${t.metric} at ${t.value} against ${t.kind} ${t.target} wants ${t.opinion} (${t.formula})`;
  // A window may have held the rules' proposal (no direction chosen): name the rules that proposed it.
  if (triggered.length === 0 && a.proposedDirection !== null) {
    const d = a.proposedDirection;
    return heldTextOf(rules, rules.filter((r) => r.direction === d && r.held).map((r) => r.id), branches[d], d);
  }
  const d = a.chosen ?? a.proposedDirection;
  return heldTextOf(rules, triggered, d === null ? null : branches[d], d);
}

function reasonOf(p: Policy, a: Assessment, rules: readonly RuleRecord[], triggered: readonly string[], tracking: readonly TrackingRecord[], branches: Branches): string {
  const { current, desired: final, schedule, adjustments } = a;
  const verb = `from ${current} to ${final}`;
  const up = final > current;
  switch (a.reasonCode) {
    case 'stabilized':
    case 'rate_limited': {
      const what = a.reasonCode === 'stabilized' ? 'stabilization' : 'the rate limit';
      const proposed = `${proposerText(a, tracking, rules, triggered, branches)}`;
      return final === current
        ? withAdjustments(`No change: ${proposed}, but ${what} holds ${current}.`, adjustments)
        : withAdjustments(`Scaled ${up ? 'up' : 'down'} ${verb}: ${proposed}; ${what} allows ${final}.`, adjustments);
    }
    case 'disabled':
      return `Policy ${p.name} is disabled: nothing is changed.`;
    case 'schedule_window':
    case 'schedule_fired':
      return withAdjustments(
        `Scheduled ${verb}: "${schedule?.cron_expression}" (${schedule?.timezone}) fired at ${schedule?.fired_at}${schedule !== null && schedule.until !== null ? `, ${schedule.mode} window until ${schedule.until}` : ''}.`,
        adjustments,
      );
    case 'fallback':
      return withAdjustments(`Fallback ${verb}: metrics failed in ${a.failures} consecutive evaluations (after_failures ${p.fallback?.after_failures}).`, adjustments);
    case 'rules_held':
      return withAdjustments(`Scaled ${up ? 'up' : 'down'} ${verb}: ${proposerText(a, tracking, rules, triggered, branches)}.`, adjustments);
    case 'out_of_bounds':
      return `Scaled ${up ? 'up' : 'down'} ${verb} to respect ${adjustments.map((x) => x.kind).join(', ') || 'the bounds'}.`;
    case 'cooldown':
      return `Rules wanted ${a.settledTarget} (${proposerText(a, tracking, rules, triggered, branches)}) but cooldown holds ${current}: ${adjustments.find((x) => x.kind === 'cooldown')?.detail ?? ''}.`;
    case 'schedule_hold':
      if (schedule === null) return `The schedule holds ${current} replicas.`;
      if (schedule.kind === 'window' && schedule.mode === 'floor') return floorHoldReason(a, schedule);
      // An exact window (or a one-shot firing now) sets the target: rules are only evaluated.
      return `The schedule "${schedule.cron_expression}" holds ${current} replicas${schedule.until !== null ? ` until ${schedule.until}` : ''}${a.chosen !== null ? '; rules were evaluated but suppressed' : ''}.`;
    case 'cost_capped':
      return `Scale-up rules held (${proposerText(a, tracking, rules, triggered, branches)}) but the cost cap allows no more than ${current}: ${adjustments.find((x) => x.kind === 'cost_cap')?.detail ?? ''}.`;
    case 'at_max':
      return `Scale-up rules held (${proposerText(a, tracking, rules, triggered, branches)}) but ${current} is already max_replicas ${p.max_replicas}.`;
    case 'at_min':
      return current === 0
        ? `Scale-down rules held (${heldTextOf(rules, triggered, branches.scale_down, 'scale_down')}) but the target is already scaled to zero.`
        : `Scale-down rules held (${proposerText(a, tracking, rules, triggered, branches)}) but ${current} is already min_replicas ${p.min_replicas}${p.scale_to_zero ? '' : ' (scale_to_zero is off)'}.`;
    case 'metric_error': {
      const ruleErrs = rules.filter((r) => r.error !== null);
      const entryErrs = tracking.filter((r) => r.error !== null);
      const who = [
        ruleErrs.length > 0 ? `${ruleErrs.length} rule${ruleErrs.length === 1 ? '' : 's'}` : null,
        entryErrs.length > 0 ? `${entryErrs.length} target-tracking entr${entryErrs.length === 1 ? 'y' : 'ies'}` : null,
      ].filter((x) => x !== null);
      const errs = [...ruleErrs, ...entryErrs];
      const waits = a.driver !== 'fallback' && tracking.length > 0 && a.proposal !== null && a.proposal < current ? `; the proposed scale-down to ${a.proposal} waits until every metric answers` : '';
      return `No change: ${who.join(' and ') || '0 rules'} had no usable metric (${errs.map((r) => `${r.metric}: ${r.error}`).join('; ')})${a.driver === 'fallback' ? `; holding fallback ${current}` : waits}.`;
    }
    case 'no_rule_held': {
      const first = rules.find((r) => !r.held);
      if (tracking.length > 0) {
        const opinions = tracking.filter((r) => r.opinion !== null);
        if (a.proposal !== null) return `No change: the highest opinion is ${a.proposal}, the current count (${proposerText(a, tracking, rules, triggered, branches)}).`;
        const within = tracking.filter((r) => r.outcome === 'within_tolerance').map((r) => `${r.metric} at ratio ${r.ratio?.toFixed(3)}, tolerance ${r.tolerance}`);
        return `No change: no rule held and no target-tracking entry had an opinion${opinions.length === 0 && within.length > 0 ? ` (within tolerance: ${within.join('; ')})` : ''}.`;
      }
      return rules.length === 0
        ? 'No change: the policy has no rules and no schedule applies.'
        : `No change: no direction's rules held${first !== undefined && first.detail !== null ? ` (${first.metric}: ${first.detail})` : ''}.`;
    }
  }
}

/** Appends the records of one direction's rules, and the ids of those that triggered the chosen direction. */
function explainRules(
  input: DecisionInput,
  list: readonly Rule[],
  verdicts: readonly RuleVerdict[],
  direction: RuleRecord['direction'],
  chosen: Assessment['chosen'],
  rules: RuleRecord[],
  triggered: string[],
): void {
  // With a condition tree, the rules that gave the step triggered (see stepRules).
  const shape = chosen === direction ? combinerFor(input.policy)[direction === 'scale_up' ? 'up' : 'down'] : null;
  const from = shape !== null && shape.polarity !== null ? stepRules(shape, heldVector(verdicts), failedVector(verdicts)) : null;
  for (let i = 0; i < list.length; i++) {
    const rule = list[i] as Rule;
    const v = verdicts[i] as RuleVerdict;
    // The observation itself is read again only to quote a source's error.
    const obs = v.miss === 'source_error' ? input.observations.get(observationKey(rule, input.defaultSource)) : undefined;
    rules.push(ruleRecord(rule, direction, rule.source ?? input.defaultSource, obs, ruleWindow(rule, input.now, input.intervalSeconds), v));
    if (chosen === direction && (from === null ? v.held : from[i] === true)) triggered.push(rule.id);
  }
}

/** One direction's record: how its rules combined, with the tree's verdicts when it has one. */
function directionRecord(p: Policy, direction: 'up' | 'down', verdicts: readonly RuleVerdict[], held: boolean, step: number): DirectionRecord {
  const list = direction === 'up' ? p.scale_up_rules : p.scale_down_rules;
  const tree = combinerFor(p)[direction].tree;
  const match = direction === 'up' ? p.scale_up_match : p.scale_down_match;
  if (tree === null) return { match, when: null, decided_by: null, rules: list.length, held, step };
  const vector = heldVector(verdicts);
  const failed = failedVector(verdicts);
  return { match: null, when: conditionRecord(tree, list, vector, failed), decided_by: held ? decidingBranch(tree, list, vector, failed) : null, rules: list.length, held, step };
}

/** The decision record of an assessment: every rule's check, the directions, and the outcome in words. */
export function explain(input: DecisionInput, a: Assessment): DecisionRecord {
  const p = input.policy;
  const rules: RuleRecord[] = [];
  const triggered: string[] = [];
  explainRules(input, p.scale_up_rules, a.up, 'scale_up', a.chosen, rules, triggered);
  explainRules(input, p.scale_down_rules, a.down, 'scale_down', a.chosen, rules, triggered);
  const tracking = trackingRecords(input, a);
  const directions = {
    scale_up: directionRecord(p, 'up', a.up, a.combined.up, a.upStep),
    scale_down: directionRecord(p, 'down', a.down, a.combined.down, a.downStep),
    chosen: a.chosen,
  };
  const branches: Branches =
    directions.scale_up.decided_by === null && directions.scale_down.decided_by === null
      ? NO_BRANCHES
      : { scale_up: directions.scale_up.decided_by, scale_down: directions.scale_down.decided_by };
  const shouldScale = a.action !== 'none';
  return {
    policy_id: p.id,
    policy_name: p.name,
    evaluated_at: a.evaluatedAt,
    current_replicas: a.current,
    current_replicas_from: a.currentFrom,
    desired_replicas: a.desired,
    action: a.action,
    reason_code: a.reasonCode,
    reason: reasonOf(p, a, rules, triggered, tracking, branches),
    should_scale: shouldScale,
    dry_run: a.dryRunFrom.length > 0,
    dry_run_from: a.dryRunFrom,
    triggered_by: shouldScale ? a.finalDriver ?? 'rule' : null,
    triggered_rules: a.reasonCode === 'disabled' ? [] : triggered,
    rules,
    directions,
    schedule: a.schedule,
    adjustments: a.adjustments,
    cooldown_remaining_seconds: a.cooldownRemaining,
    consecutive_metric_failures: a.failures,
    wanted_replicas: a.wanted,
    blocked: a.blocked,
    target_tracking: tracking,
    proposal: a.proposal,
  };
}

const NO_TRACKING_RECORDS: TrackingRecord[] = Object.freeze([]) as unknown as TrackingRecord[];

/** The records of the target-tracking entries: what each read, its arithmetic and its opinion. */
function trackingRecords(input: DecisionInput, a: Assessment): TrackingRecord[] {
  const entries = input.policy.target_tracking ?? NO_ENTRIES;
  if (entries.length === 0) return NO_TRACKING_RECORDS;
  return entries.map((e, i) => {
    const v = a.tracking[i] as TrackingVerdict;
    const obs = v.outcome === 'metric_error' ? input.observations.get(observationKey(e, input.defaultSource)) : undefined;
    return {
      id: e.id,
      metric: e.metric,
      source: e.source ?? input.defaultSource,
      kind: e.target_per_replica !== null ? 'target_per_replica' : 'target_value',
      target: e.target_per_replica ?? (e.target_value as number),
      tolerance: e.tolerance,
      window_seconds: e.duration_seconds,
      samples: v.samples,
      value: v.value,
      ratio: v.ratio,
      formula: v.formula,
      opinion: v.opinion,
      outcome: v.outcome,
      error: v.outcome === 'metric_error' ? (obs?.error !== undefined ? `${obs.error.kind}: ${obs.error.message}` : obs === undefined ? 'no observation' : 'no sample in the window') : null,
    } satisfies TrackingRecord;
  });
}

/**
 * The decision function: the steps 1-9 of README "How a decision is made" for one policy at one instant, with its record.
 * Pure: the same input gives the same output, with no I/O; the loop, POST .../evaluate, backtests
 * and policy tests all call it (the loop through assess() and explain(), making the record only
 * when it is stored or asked for).
 */
export async function decide(input: DecisionInput): Promise<DecisionResult> {
  const a = await assess(input);
  return { record: explain(input, a), memory: a.memory, recordBlocked: a.recordBlocked };
}
