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
} from './decision.js';
import { combinerFor } from './rule-combiner.js';
import { OPERATOR_SYMBOL, checkRule, isoMs, observationKey, ruleWindow } from './rule-window.js';
import { lastFire } from './schedule-clock.js';

/** Everything one evaluation depends on; nothing else is read (DESIGN.md "One evaluation"). */
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

function activeSchedules(policy: Policy, now: Date, intervalSeconds: number, memory: EngineMemory) {
  let window: ActiveSchedule | undefined;
  let oneShot: ActiveSchedule | undefined;
  policy.schedules.forEach((schedule, index) => {
    if (!schedule.enabled) return;
    const fired = lastFire(schedule, now);
    if (fired === null) return;
    const age = now.getTime() - fired.getTime();
    if (schedule.duration_seconds > 0) {
      // Among overlapping windows the one fired last wins; on a tie, the later in the list.
      if (age < schedule.duration_seconds * 1000 && (window === undefined || fired >= window.fired)) window = { schedule, index, fired };
    } else if (age <= intervalSeconds * 1000 && memory.one_shots[schedule.id] !== fired.toISOString()) {
      if (oneShot === undefined || fired >= oneShot.fired) oneShot = { schedule, index, fired };
    }
  });
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
 * The decision function: DESIGN.md steps 1-9 for one policy at one instant. Pure: the same input
 * gives the same output, with no I/O; the loop, POST .../evaluate, backtests and policy tests all
 * call it. (It is async only because json-rules-engine is.)
 */
export async function decide(input: DecisionInput): Promise<DecisionResult> {
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

  // Step 2: each rule, then each direction through the rules engine.
  const check = (rule: Rule, direction: RuleRecord['direction']): RuleRecord => {
    const source = rule.source ?? input.defaultSource;
    return checkRule(rule, direction, source, input.observations.get(observationKey(rule, input.defaultSource)), ruleWindow(rule, now, intervalSeconds));
  };
  const upRecords = p.scale_up_rules.map((r) => check(r, 'scale_up'));
  const downRecords = p.scale_down_rules.map((r) => check(r, 'scale_down'));
  const rules = [...upRecords, ...downRecords];
  const anyError = rules.some((r) => r.error !== null);
  const failures = anyError ? memory.consecutive_failures + 1 : 0;
  const combiner = combinerFor(p);
  const upHeld = upRecords.map((r) => r.held);
  const downHeld = downRecords.map((r) => r.held);
  const combined = combiner.peek(upHeld, downHeld) ?? (await combiner.combine(upHeld, downHeld));

  // Step 3: direction and step. With `any`, the step comes from the rules that held.
  const heldUp = p.scale_up_rules.filter((_, i) => upRecords[i]?.held === true);
  const heldDown = p.scale_down_rules.filter((_, i) => downRecords[i]?.held === true);
  const upStep = combined.up ? Math.max(...heldUp.map((r) => r.scale_by)) : 0;
  const downStep = combined.down ? Math.max(...heldDown.map((r) => r.scale_by)) : 0;
  const chosen: 'scale_up' | 'scale_down' | null = combined.up ? 'scale_up' : combined.down ? 'scale_down' : null;
  const triggeredRules = chosen === 'scale_up' ? heldUp.map((r) => r.id) : chosen === 'scale_down' ? heldDown.map((r) => r.id) : [];
  const ruleTarget = chosen === 'scale_up' ? current + upStep : chosen === 'scale_down' ? current + downStep : current;
  const directions = {
    scale_up: { match: p.scale_up_match, rules: upRecords.length, held: combined.up, step: upStep } satisfies DirectionRecord,
    scale_down: { match: p.scale_down_match, rules: downRecords.length, held: combined.down, step: downStep } satisfies DirectionRecord,
    chosen,
  };

  const nextMemory: EngineMemory = {
    ...memory,
    current_replicas: current,
    consecutive_failures: failures,
    one_shots: p.schedules.length === 0 ? EMPTY_ONE_SHOTS : Object.fromEntries(Object.entries(memory.one_shots).filter(([id]) => p.schedules.some((s) => s.id === id))),
  };

  /**
   * Builds the record with every field in one literal and one order: spreading a shared base
   * into each record was the single most expensive line of an evaluation (a slow-path copy),
   * and a fixed shape keeps records cheap for the engine that reads them.
   */
  const makeRecord = (rest: Omit<DecisionRecord, 'policy_id' | 'policy_name' | 'evaluated_at' | 'current_replicas' | 'current_replicas_from' | 'dry_run' | 'dry_run_from' | 'rules' | 'directions' | 'consecutive_metric_failures'>): DecisionRecord => ({
    policy_id: p.id,
    policy_name: p.name,
    evaluated_at: evaluatedAt,
    current_replicas: current,
    current_replicas_from: currentFrom,
    desired_replicas: rest.desired_replicas,
    action: rest.action,
    reason_code: rest.reason_code,
    reason: rest.reason,
    should_scale: rest.should_scale,
    dry_run: dryRunFrom.length > 0,
    dry_run_from: dryRunFrom,
    triggered_by: rest.triggered_by,
    triggered_rules: rest.triggered_rules,
    rules,
    directions,
    schedule: rest.schedule,
    adjustments: rest.adjustments,
    cooldown_remaining_seconds: rest.cooldown_remaining_seconds,
    consecutive_metric_failures: failures,
    wanted_replicas: rest.wanted_replicas,
    blocked: rest.blocked,
  });

  if (!p.enabled) {
    return {
      record: makeRecord({
        desired_replicas: current,
        action: 'none',
        reason_code: 'disabled',
        reason: `Policy ${p.name} is disabled: nothing is changed.`,
        should_scale: false,
        triggered_by: null,
        triggered_rules: [],
        schedule: null,
        adjustments: [],
        cooldown_remaining_seconds: 0,
        wanted_replicas: current,
        blocked: false,
      }),
      memory: { ...nextMemory, consecutive_failures: memory.consecutive_failures, last_blocked: null },
      recordBlocked: false,
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
    if (d === 'rule' && chosen === 'scale_down' && p.scale_to_zero && current > 0 && current <= p.min_replicas && floorAllowsZero) {
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

  // Step 9: the outcome.
  let action: Action = 'none';
  let reasonCode: ReasonCode;
  let reason: string;
  const held = rules.filter((r) => triggeredRules.includes(r.id)).map(describeRule);
  const heldText = held.length > 0 ? held.join(' and ') : '';
  if (final !== current) {
    const up = final > current;
    const verb = `from ${current} to ${final}`;
    if (finalDriver === 'schedule' && schedule !== null) {
      action = 'scheduled';
      reasonCode = schedule.kind === 'window' ? 'schedule_window' : 'schedule_fired';
      reason = `Scheduled ${verb}: "${schedule.cron_expression}" (${schedule.timezone}) fired at ${schedule.fired_at}${schedule.until !== null ? `, ${schedule.mode} window until ${schedule.until}` : ''}.`;
    } else if (finalDriver === 'fallback') {
      action = 'fallback';
      reasonCode = 'fallback';
      reason = `Fallback ${verb}: metrics failed in ${failures} consecutive evaluations (after_failures ${p.fallback?.after_failures}).`;
    } else if (finalDriver === 'rule' && (up ? chosen === 'scale_up' : chosen === 'scale_down')) {
      action = up ? 'scale_up' : 'scale_down';
      reasonCode = 'rules_held';
      reason = `Scaled ${up ? 'up' : 'down'} ${verb}: ${heldText}.`;
    } else {
      action = up ? 'scale_up' : 'scale_down';
      reasonCode = 'out_of_bounds';
      reason = `Scaled ${up ? 'up' : 'down'} ${verb} to respect ${adjustments.map((a) => a.kind).join(', ') || 'the bounds'}.`;
    }
    if (adjustments.length > 0 && reasonCode !== 'out_of_bounds') {
      reason = `${reason.slice(0, -1)} (${adjustments.map((a) => a.detail).join('; ')}).`;
    }
  } else if (cooled) {
    reasonCode = 'cooldown';
    reason = `Rules wanted ${settled.target} (${heldText}) but cooldown holds ${current}: ${adjustments.find((a) => a.kind === 'cooldown')?.detail ?? ''}.`;
  } else if (driver === 'schedule' || scheduleHold) {
    reasonCode = 'schedule_hold';
    reason =
      schedule !== null
        ? `The schedule "${schedule.cron_expression}" holds ${current} replicas${schedule.until !== null ? ` until ${schedule.until}` : ''}${chosen !== null ? '; rules were evaluated but suppressed' : ''}.`
        : `The schedule holds ${current} replicas.`;
  } else if (driver === 'rule' && chosen === 'scale_up') {
    const capped = adjustments.some((a) => a.kind === 'cost_cap') && current < p.max_replicas;
    reasonCode = capped ? 'cost_capped' : 'at_max';
    reason = capped
      ? `Scale-up rules held (${heldText}) but the cost cap allows no more than ${current}: ${adjustments.find((a) => a.kind === 'cost_cap')?.detail ?? ''}.`
      : `Scale-up rules held (${heldText}) but ${current} is already max_replicas ${p.max_replicas}.`;
  } else if (driver === 'rule' && chosen === 'scale_down') {
    reasonCode = 'at_min';
    reason =
      current === 0
        ? `Scale-down rules held (${heldText}) but the target is already scaled to zero.`
        : `Scale-down rules held (${heldText}) but ${current} is already min_replicas ${p.min_replicas}${p.scale_to_zero ? '' : ' (scale_to_zero is off)'}.`;
  } else if (anyError || driver === 'fallback') {
    reasonCode = 'metric_error';
    const errs = rules.filter((r) => r.error !== null);
    reason = `No change: ${errs.length} rule${errs.length === 1 ? '' : 's'} had no usable metric (${errs.map((r) => `${r.metric}: ${r.error}`).join('; ')})${driver === 'fallback' ? `; holding fallback ${current}` : ''}.`;
  } else {
    reasonCode = 'no_rule_held';
    const first = rules.find((r) => !r.held);
    reason =
      rules.length === 0
        ? 'No change: the policy has no rules and no schedule applies.'
        : `No change: no direction's rules held${first !== undefined && first.detail !== null ? ` (${first.metric}: ${first.detail})` : ''}.`;
  }

  const blocked = action === 'none' && driver === 'rule' && ['cooldown', 'at_max', 'at_min', 'cost_capped'].includes(reasonCode);
  nextMemory.last_blocked = blocked ? reasonCode : null;
  const record = makeRecord({
    desired_replicas: final,
    action,
    reason_code: reasonCode,
    reason,
    should_scale: action !== 'none',
    triggered_by: action === 'none' ? null : finalDriver ?? 'rule',
    triggered_rules: triggeredRules,
    schedule,
    adjustments,
    cooldown_remaining_seconds: cooldownRemaining,
    wanted_replicas: wanted,
    blocked,
  });
  return { record, memory: nextMemory, recordBlocked: blocked && memory.last_blocked !== reasonCode };
}
