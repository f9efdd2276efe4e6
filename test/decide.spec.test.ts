/**
 * The decision function as a specification (the README's "How a decision is made", steps 1-10).
 *
 * Each table below is one step; each row is one rule of that step, named by the sentence
 * it pins down. A row gives the policy (overrides of a small default policy), the instant, what the
 * executor reported, the persisted engine memory and, per rule, the series the metric source
 * answered; `expected` lists what the decision must say. Rules are referred to as up0, up1, down0,
 * ... and schedules as s0, s1, ... (the builder gives them those ids). Every row also checks the
 * invariants every decision record keeps (see `checkRecordShape`).
 */
import t from 'tap';
import { decide, type DecisionInput, type DecisionResult } from '../src/engine/decide.js';
import {
  EMPTY_MEMORY,
  type Action,
  type AdjustmentRecord,
  type DecisionRecord,
  type EngineMemory,
  type Observation,
  type ReasonCode,
  type ScheduleRecord,
} from '../src/engine/decision.js';
import { observationKey, ruleWindow } from '../src/engine/rule-window.js';
import type { Policy, PolicyInput, Rule, RuleInput, ScheduleInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { Sample } from '../src/plugins/api.js';

/** A tap subtest (the callback parameter of t.test). */
type Test = Parameters<Parameters<typeof t.test>[0]>[0];

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/** A Monday, noon UTC. Every row's instant is fixed; nothing reads the clock. */
const NOW = '2026-05-04T12:00:00Z';
const INTERVAL = 30;
const DEFAULT_SOURCE = 'prometheus';
const POLICY_ID = '6f1d2c3b-0000-4000-8000-000000000001';

const LAG = 'max(philotes_cdc_lag_seconds{source="orders"})';
const CPU = 'avg(philotes_worker_cpu_utilization{target="orders"})';

/** Scale up by 2 when the lag stayed above 60s for 5 minutes. */
const LAG_HIGH: RuleInput = { metric: LAG, operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 };
/** Scale down by 1 when the CPU stayed under 30% for 10 minutes. */
const CPU_LOW: RuleInput = { metric: CPU, operator: 'lt', threshold: 0.3, duration: '10m', scale_by: -1 };
/** Values that make LAG_HIGH / CPU_LOW hold. */
const LAGGING = 90;
const IDLE = 0.1;

const BASE_POLICY: PolicyInput = {
  name: 'orders-cdc-worker',
  target_type: 'cdc-worker',
  min_replicas: 1,
  max_replicas: 10,
  cooldown_seconds: 300,
  scale_up_rules: [LAG_HIGH],
  scale_down_rules: [CPU_LOW],
};

/** A stored policy: normalizePolicy over the defaults, with readable ids (up0, down0, s0, ...). */
function buildPolicy(overrides: Partial<PolicyInput> = {}): Policy {
  const p = normalizePolicy({ ...BASE_POLICY, ...overrides }, { id: POLICY_ID, source: 'api', now: new Date('2026-01-01T00:00:00Z') });
  p.scale_up_rules.forEach((r, i) => (r.id = `up${i}`));
  p.scale_down_rules.forEach((r, i) => (r.id = `down${i}`));
  p.schedules.forEach((s, i) => (s.id = `s${i}`));
  return p;
}

function rulesOf(p: Policy): Rule[] {
  return [...p.scale_up_rules, ...p.scale_down_rules];
}

/** ISO instant `seconds` before (or, negative, after) `iso`. */
function before(iso: string, seconds: number): string {
  return new Date(Date.parse(iso) - seconds * 1000).toISOString();
}

/**
 * Samples every `step` seconds over `[now - span, now]`, oldest first. `values` is one value for
 * every step or a list (its last entry repeats); `at` overrides the value of single steps; the
 * step indexes in `gaps` have no sample.
 */
function series(opts: { now: string; span: number; step: number; values: number | number[]; at?: Record<number, number>; gaps?: number[] }): Sample[] {
  const end = Math.floor(Date.parse(opts.now) / 1000);
  const n = Math.floor(opts.span / opts.step);
  const out: Sample[] = [];
  for (let k = 0; k <= n; k++) {
    if (opts.gaps?.includes(k)) continue;
    const list = Array.isArray(opts.values) ? opts.values : [opts.values];
    const v = opts.at?.[k] ?? list[Math.min(k, list.length - 1)] ?? NaN;
    out.push({ t: end - opts.span + k * opts.step, v });
  }
  return out;
}

/** How a metric source folds several series into one (the source folds; the engine never does). */
function fold(aggregation: Rule['aggregation'], values: number[]): number {
  switch (aggregation) {
    case 'max':
      return Math.max(...values);
    case 'min':
      return Math.min(...values);
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'avg':
      return values.reduce((a, b) => a + b, 0) / values.length;
  }
}

/**
 * What the metric source answered for one rule. A number: that value at every step of the rule's
 * window. Otherwise: the window's values (`values`, `at`, `gaps`, optionally a different `span` or
 * `step`), several raw series the source folds with the rule's aggregation (`series`), literal
 * `samples`, an `error`, or `missing` (no answer at all).
 */
type SeriesSpec =
  | number
  | {
      values?: number | number[];
      at?: Record<number, number>;
      gaps?: number[];
      span?: number;
      step?: number;
      series?: number[];
      samples?: Sample[];
      error?: { kind: string; message: string };
      missing?: true;
    };

/** A value at which the rule does not hold. */
function neutral(rule: Rule): number {
  return rule.operator === 'gt' || rule.operator === 'gte' ? rule.threshold - 1 : rule.operator === 'ne' ? rule.threshold : rule.threshold + 1;
}

function observation(rule: Rule, spec: SeriesSpec, now: string, interval: number): Observation | undefined {
  const win = ruleWindow(rule, new Date(now), interval);
  const shape = { now, span: win.seconds, step: win.step };
  if (typeof spec === 'number') return { samples: series({ ...shape, values: spec }) };
  if (spec.missing === true) return undefined;
  if (spec.error !== undefined) return { samples: [], error: spec.error };
  if (spec.samples !== undefined) return { samples: spec.samples };
  const values = spec.series !== undefined ? fold(rule.aggregation, spec.series) : (spec.values ?? neutral(rule));
  return { samples: series({ ...shape, span: spec.span ?? shape.span, step: spec.step ?? shape.step, values, at: spec.at, gaps: spec.gaps }) };
}

/** The observations map the manager hands to decide(): one entry per observationKey. */
function observations(p: Policy, specs: Record<string, SeriesSpec>, now: string, interval: number): Map<string, Observation> {
  const map = new Map<string, Observation>();
  for (const rule of rulesOf(p)) {
    const obs = observation(rule, specs[rule.id] ?? neutral(rule), now, interval);
    if (obs !== undefined) map.set(observationKey(rule, DEFAULT_SOURCE), obs);
  }
  return map;
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

interface Expected {
  action?: Action;
  reason_code?: ReasonCode;
  desired_replicas?: number;
  current_replicas?: number;
  current_replicas_from?: DecisionRecord['current_replicas_from'];
  /** Per rule id: its verdict. */
  held?: Record<string, boolean>;
  samples?: Record<string, number>;
  values?: Record<string, number | null>;
  /** Per rule id: a pattern its error must match, or null for no error. */
  errors?: Record<string, RegExp | null>;
  triggered_rules?: string[];
  triggered_by?: DecisionRecord['triggered_by'];
  directions?: { up?: boolean; down?: boolean; chosen?: 'scale_up' | 'scale_down' | null; upStep?: number; downStep?: number };
  cooldown_remaining_seconds?: number;
  adjustments?: Array<AdjustmentRecord['kind']>;
  schedule?: Partial<ScheduleRecord> | null;
  blocked?: boolean;
  recordBlocked?: boolean;
  dry_run?: boolean;
  dry_run_from?: DecisionRecord['dry_run_from'];
  consecutive_metric_failures?: number;
  /** Fields of the returned memory. */
  memory?: Partial<EngineMemory>;
  reason?: RegExp;
}

interface Evaluation {
  /** The rule this evaluation pins down, as a sentence. */
  name: string;
  now?: string;
  executorReplicas?: number | null;
  memory?: Partial<EngineMemory>;
  series?: Record<string, SeriesSpec>;
  dryRun?: DecisionInput['dryRun'];
  /** Price of one replica-hour; default: the policy's cost_per_replica_hour. */
  price?: number | null;
  intervalSeconds?: number;
  expected: Expected;
}

interface Row extends Evaluation {
  policy?: Partial<PolicyInput>;
  /** Later evaluations of the same policy, each starting from the memory the previous one returned. */
  then?: Evaluation[];
}

type Step = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;

const exact = (cron: string, desired: number, duration: string, timezone = 'UTC'): ScheduleInput => ({ cron_expression: cron, timezone, desired_replicas: desired, duration, mode: 'exact' });
const floorWindow = (cron: string, desired: number, duration: string): ScheduleInput => ({ cron_expression: cron, desired_replicas: desired, duration, mode: 'floor' });
const oneShot = (cron: string, desired: number): ScheduleInput => ({ cron_expression: cron, desired_replicas: desired });
const COST = { cost_per_replica_hour: 0.5, max_hourly_cost: 2 } as const; // at most 4 replicas

const TABLES: Record<Step, { title: string; rows: Row[] }> = {
  1: {
    title: 'step 1: current replicas',
    rows: [
      {
        name: 'step 1: current replicas come from the executor when it can tell (stored state is ignored)',
        executorReplicas: 4,
        memory: { current_replicas: 6 },
        expected: { current_replicas: 4, current_replicas_from: 'executor', desired_replicas: 4, action: 'none', reason_code: 'no_rule_held', memory: { current_replicas: 4 } },
      },
      {
        name: 'step 1: an executor answer of 0 is an answer, not "cannot tell"',
        policy: { scale_to_zero: true },
        executorReplicas: 0,
        memory: { current_replicas: 3 },
        expected: { current_replicas: 0, current_replicas_from: 'executor', desired_replicas: 0, action: 'none' },
      },
      {
        name: 'step 1: when the executor cannot tell, current replicas come from the stored state',
        executorReplicas: null,
        memory: { current_replicas: 6 },
        expected: { current_replicas: 6, current_replicas_from: 'state', desired_replicas: 6, action: 'none', reason_code: 'no_rule_held' },
      },
      {
        name: 'step 1: with neither executor nor stored state, current replicas are min_replicas',
        policy: { min_replicas: 2 },
        executorReplicas: null,
        expected: { current_replicas: 2, current_replicas_from: 'min_replicas', desired_replicas: 2, action: 'none', memory: { current_replicas: 2 } },
      },
      {
        name: 'step 1: rules act on the current replicas the stored state gave',
        executorReplicas: null,
        memory: { current_replicas: 5 },
        series: { up0: LAGGING },
        expected: { current_replicas: 5, current_replicas_from: 'state', desired_replicas: 7, action: 'scale_up' },
      },
    ],
  },

  2: {
    title: 'step 2: rule conditions',
    rows: [
      {
        name: 'step 2: a rule holds when every step of [now - duration, now] has a value satisfying it (11 samples for 5m at 30s)',
        series: { up0: { values: LAGGING, at: { 4: 75 } } },
        expected: { held: { up0: true, down0: false }, samples: { up0: 11 }, values: { up0: 75 }, errors: { up0: null }, action: 'scale_up', desired_replicas: 5, triggered_rules: ['up0'] },
      },
      {
        name: 'step 2: a window with a gap does not hold (the condition has not held for the whole duration)',
        series: { up0: { values: LAGGING, gaps: [5] } },
        expected: { held: { up0: false }, samples: { up0: 10 }, errors: { up0: null }, action: 'none', reason_code: 'no_rule_held', desired_replicas: 3, consecutive_metric_failures: 0 },
      },
      {
        name: 'step 2: a window whose first steps are missing does not hold (a restart may delay a decision, never hasten one)',
        series: { up0: { values: LAGGING, gaps: [0, 1, 2] } },
        expected: { held: { up0: false }, samples: { up0: 8 }, action: 'none', reason_code: 'no_rule_held' },
      },
      {
        name: 'step 2: a window whose last step (now) is missing does not hold',
        series: { up0: { values: LAGGING, gaps: [10] } },
        expected: { held: { up0: false }, samples: { up0: 10 }, action: 'none', reason_code: 'no_rule_held' },
      },
      {
        name: 'step 2: a window that is not a whole number of intervals is judged at instants ending at now (45s at 30s: now-45s, now-22.5s, now)',
        policy: { scale_up_rules: [{ ...LAG_HIGH, duration: '45s' }] },
        series: { up0: LAGGING },
        expected: { held: { up0: true }, samples: { up0: 3 }, action: 'scale_up' },
      },
      {
        name: 'step 2: the newest instant of such a window counts (45s at 30s: a low value at now stops it)',
        policy: { scale_up_rules: [{ ...LAG_HIGH, duration: '45s' }] },
        series: { up0: { values: LAGGING, at: { 2: 50 } } },
        expected: { held: { up0: false }, samples: { up0: 3 }, action: 'none', reason_code: 'no_rule_held', reason: /50 > 60 is false at 2026-05-04T12:00:00.000Z/ },
      },
      {
        name: 'step 2: a window where one value violates the condition does not hold; the value reported is the weakest one',
        series: { up0: { values: LAGGING, at: { 6: 50 } } },
        expected: { held: { up0: false }, samples: { up0: 11 }, values: { up0: 50 }, errors: { up0: null }, action: 'none', reason_code: 'no_rule_held', reason: /50 > 60 is false/ },
      },
      {
        name: 'step 2: samples outside the window are not counted (a 10m answer for a 5m rule uses 11 samples)',
        series: { up0: { values: [20, 20, 20, 20, 20, 20, 20, 20, 20, 20, LAGGING], span: 600 } },
        expected: { held: { up0: true }, samples: { up0: 11 }, action: 'scale_up', desired_replicas: 5 },
      },
      {
        name: 'step 2: gt is strict: a window exactly at the threshold does not hold',
        series: { up0: 60 },
        expected: { held: { up0: false }, values: { up0: 60 }, action: 'none', reason_code: 'no_rule_held' },
      },
      {
        name: 'step 2: gte holds at the threshold',
        policy: { scale_up_rules: [{ ...LAG_HIGH, operator: 'gte' }] },
        series: { up0: 60 },
        expected: { held: { up0: true }, action: 'scale_up', desired_replicas: 5 },
      },
      {
        name: 'step 2: duration 0 uses the latest value only (earlier values do not matter)',
        policy: { scale_up_rules: [{ ...LAG_HIGH, duration: '0' }] },
        series: { up0: { values: [10, 10, LAGGING], span: 60, step: 30 } },
        expected: { held: { up0: true }, samples: { up0: 1 }, values: { up0: LAGGING }, action: 'scale_up', desired_replicas: 5 },
      },
      {
        name: 'step 2: duration 0 does not hold when the latest value fails, whatever came before',
        policy: { scale_up_rules: [{ ...LAG_HIGH, duration: '0' }] },
        series: { up0: { values: [LAGGING, LAGGING, 10], span: 60, step: 30 } },
        expected: { held: { up0: false }, samples: { up0: 1 }, values: { up0: 10 }, action: 'none', reason_code: 'no_rule_held' },
      },
      {
        name: 'step 2: AND (the default): one failing up rule means scale-up does not hold',
        policy: { scale_up_rules: [LAG_HIGH, { metric: 'sum(philotes_cdc_queue_depth)', operator: 'gt', threshold: 1000, duration: '5m', scale_by: 3 }] },
        series: { up0: LAGGING, up1: 500 },
        expected: { held: { up0: true, up1: false }, directions: { up: false, chosen: null }, action: 'none', reason_code: 'no_rule_held', triggered_rules: [] },
      },
      {
        name: 'step 2: scale_up_match any: one holding up rule is enough, and the step comes from the rules that held',
        policy: { scale_up_match: 'any', scale_up_rules: [{ ...LAG_HIGH, scale_by: 1 }, { metric: 'sum(philotes_cdc_queue_depth)', operator: 'gt', threshold: 1000, duration: '5m', scale_by: 3 }] },
        series: { up0: LAGGING, up1: 500 },
        expected: { held: { up0: true, up1: false }, directions: { up: true, chosen: 'scale_up', upStep: 1 }, action: 'scale_up', desired_replicas: 4, triggered_rules: ['up0'] },
      },
      {
        name: 'step 2: scale_down_match any: one holding down rule is enough',
        policy: { scale_down_match: 'any', scale_down_rules: [CPU_LOW, { metric: 'max(philotes_cdc_lag_seconds)', operator: 'lt', threshold: 5, duration: '10m', scale_by: -2 }] },
        series: { down0: 0.9, down1: 1 },
        expected: { held: { down0: false, down1: true }, action: 'scale_down', desired_replicas: 1, triggered_rules: ['down1'] },
      },
      {
        name: 'step 2: several series are folded by the source with max (the default): series at 30 and 90 give 90, and the rule holds',
        series: { up0: { series: [30, LAGGING] } },
        expected: { held: { up0: true }, values: { up0: LAGGING }, action: 'scale_up' },
      },
      {
        name: 'step 2: the engine uses the folded value it is given: with aggregation avg, series at 30 and 90 give 60 and the rule does not hold',
        policy: { scale_up_rules: [{ ...LAG_HIGH, aggregation: 'avg' }] },
        series: { up0: { series: [30, LAGGING] } },
        expected: { held: { up0: false }, values: { up0: 60 }, action: 'none', reason_code: 'no_rule_held' },
      },
      {
        name: 'step 2: aggregation is part of observationKey, so a max rule and an avg rule on the same query do not share a fetch',
        policy: { scale_up_match: 'any', scale_up_rules: [LAG_HIGH, { ...LAG_HIGH, aggregation: 'avg' }] },
        series: { up0: { series: [30, LAGGING] }, up1: { series: [30, LAGGING] } },
        expected: { held: { up0: true, up1: false }, values: { up0: LAGGING, up1: 60 }, action: 'scale_up', triggered_rules: ['up0'] },
      },
      {
        name: 'step 2: a rule without source uses the default metric source; one with a source keeps it',
        policy: { scale_up_rules: [LAG_HIGH, { ...LAG_HIGH, source: 'datadog' }] },
        series: { up0: LAGGING, up1: LAGGING },
        expected: { held: { up0: true, up1: true }, action: 'scale_up', desired_replicas: 5, triggered_rules: ['up0', 'up1'] },
      },
    ],
  },

  3: {
    title: 'step 3: direction',
    rows: [
      {
        name: 'step 3: when only the down rules hold, scale down by the down step',
        series: { down0: IDLE },
        expected: { directions: { up: false, down: true, chosen: 'scale_down', downStep: -1 }, action: 'scale_down', desired_replicas: 2, triggered_rules: ['down0'], triggered_by: 'rule' },
      },
      {
        name: 'step 3: when up and down both hold, up wins',
        series: { up0: LAGGING, down0: IDLE },
        expected: { directions: { up: true, down: true, chosen: 'scale_up', upStep: 2 }, action: 'scale_up', desired_replicas: 5, triggered_rules: ['up0'] },
      },
      {
        name: 'step 3: the up step is the largest scale_by of the up rules',
        policy: { scale_up_rules: [{ ...LAG_HIGH, scale_by: 1 }, { ...LAG_HIGH, metric: 'sum(philotes_cdc_queue_depth)', threshold: 1000, scale_by: 3 }] },
        series: { up0: LAGGING, up1: 5000 },
        expected: { directions: { upStep: 3 }, action: 'scale_up', desired_replicas: 6, triggered_rules: ['up0', 'up1'] },
      },
      {
        name: 'step 3: the down step is the down scale_by closest to zero',
        executorReplicas: 6,
        policy: { scale_down_rules: [{ ...CPU_LOW, scale_by: -3 }, { ...CPU_LOW, metric: 'max(philotes_cdc_lag_seconds)', threshold: 5, scale_by: -1 }] },
        series: { down0: IDLE, down1: 1 },
        expected: { directions: { downStep: -1 }, action: 'scale_down', desired_replicas: 5 },
      },
      {
        name: 'step 3: when no direction holds there is no action (no_rule_held)',
        expected: { directions: { up: false, down: false, chosen: null, upStep: 0, downStep: 0 }, action: 'none', reason_code: 'no_rule_held', desired_replicas: 3, triggered_rules: [], triggered_by: null },
      },
      {
        name: 'step 3: a direction without rules never holds (an empty AND is not vacuously true)',
        policy: { scale_down_rules: [] },
        expected: { directions: { down: false }, action: 'none', reason_code: 'no_rule_held' },
      },
    ],
  },

  4: {
    title: 'step 4: schedules',
    rows: [
      {
        name: 'step 4: a one-shot schedule sets the target at its fire time and marks itself fired; 20s later it does not fire again',
        policy: { schedules: [oneShot('0 12 * * *', 6)] },
        series: { up0: LAGGING },
        expected: {
          action: 'scheduled',
          reason_code: 'schedule_fired',
          desired_replicas: 6,
          triggered_by: 'schedule',
          schedule: { id: 's0', kind: 'one_shot', fired_at: '2026-05-04T12:00:00.000Z', until: null },
          memory: { one_shots: { s0: '2026-05-04T12:00:00.000Z' } },
        },
        then: [
          {
            name: 'the second evaluation within the interval, with the one_shots mark, does not fire again (rules act)',
            now: '2026-05-04T12:00:20Z',
            executorReplicas: 6,
            memory: { last_change_at: '2026-05-04T11:00:00Z' },
            series: { up0: LAGGING },
            expected: { action: 'scale_up', desired_replicas: 8, schedule: null, memory: { one_shots: { s0: '2026-05-04T12:00:00.000Z' } } },
          },
          {
            name: 'an evaluation exactly one interval after the fire, with the mark, does not fire again either',
            now: '2026-05-04T12:00:30Z',
            executorReplicas: 8,
            expected: { action: 'none', reason_code: 'no_rule_held', desired_replicas: 8, schedule: null },
          },
        ],
      },
      {
        name: 'step 4: a schedule action starts a cooldown: once the manager persists the executed change, rules 60s later are held',
        policy: { schedules: [oneShot('0 12 * * *', 6)] },
        expected: { action: 'scheduled', desired_replicas: 6 },
        then: [
          {
            name: 'rules holding 60s after the scheduled change are held by cooldown',
            now: '2026-05-04T12:01:00Z',
            executorReplicas: 6,
            memory: { last_change_at: '2026-05-04T12:00:00.000Z' },
            series: { up0: LAGGING },
            expected: { action: 'none', reason_code: 'cooldown', desired_replicas: 6, cooldown_remaining_seconds: 240 },
          },
        ],
      },
      {
        name: 'step 4: a one-shot fires at the first evaluation one full interval after its fire time (the bound is inclusive)',
        policy: { schedules: [oneShot('0 12 * * *', 6)] },
        now: '2026-05-04T12:00:30Z',
        expected: { action: 'scheduled', desired_replicas: 6, schedule: { fired_at: '2026-05-04T12:00:00.000Z' } },
      },
      {
        name: 'step 4: a one-shot does not fire at an evaluation more than one interval after its fire time',
        policy: { schedules: [oneShot('0 12 * * *', 6)] },
        now: '2026-05-04T12:00:31Z',
        expected: { action: 'none', reason_code: 'no_rule_held', desired_replicas: 3, schedule: null, memory: { one_shots: {} } },
      },
      {
        name: 'step 4: a one-shot at the value already running is recorded as schedule_hold and still marked fired',
        policy: { schedules: [oneShot('0 12 * * *', 3)] },
        expected: { action: 'none', reason_code: 'schedule_hold', desired_replicas: 3, memory: { one_shots: { s0: '2026-05-04T12:00:00.000Z' } } },
      },
      {
        name: 'step 4: a disabled schedule is ignored',
        policy: { schedules: [{ ...oneShot('0 12 * * *', 6), enabled: false }] },
        expected: { action: 'none', reason_code: 'no_rule_held', schedule: null },
      },
      {
        name: 'step 4: an exact window holds the target at desired_replicas; rules are suppressed but evaluated and listed (schedule_hold)',
        policy: { schedules: [exact('0 8 * * *', 6, '9h')] },
        executorReplicas: 6,
        series: { up0: LAGGING },
        expected: {
          action: 'none',
          reason_code: 'schedule_hold',
          desired_replicas: 6,
          held: { up0: true, down0: false },
          samples: { up0: 11, down0: 21 },
          directions: { up: true, chosen: 'scale_up' },
          adjustments: ['schedule_hold'],
          schedule: { kind: 'window', mode: 'exact', fired_at: '2026-05-04T08:00:00.000Z', until: '2026-05-04T17:00:00.000Z' },
          blocked: false,
          recordBlocked: false,
          reason: /rules were evaluated but suppressed/,
        },
      },
      {
        name: 'step 4: an exact window moves the target to desired_replicas, against the rules and ignoring cooldown',
        policy: { schedules: [exact('0 8 * * *', 6, '9h')] },
        executorReplicas: 8,
        memory: { last_change_at: before(NOW, 10) },
        series: { up0: LAGGING },
        expected: { action: 'scheduled', reason_code: 'schedule_window', desired_replicas: 6, triggered_by: 'schedule', held: { up0: true }, cooldown_remaining_seconds: 290 },
      },
      {
        name: 'step 4: a window is [fire, fire + duration): at fire + duration it no longer applies',
        policy: { schedules: [exact('0 8 * * *', 6, '4h')] },
        expected: { action: 'none', reason_code: 'no_rule_held', desired_replicas: 3, schedule: null },
      },
      {
        name: 'step 4: in a floor window rules act above the floor',
        policy: { schedules: [floorWindow('0 8 * * *', 4, '9h')] },
        executorReplicas: 6,
        series: { up0: LAGGING },
        expected: { action: 'scale_up', reason_code: 'rules_held', desired_replicas: 8, triggered_by: 'rule', schedule: { mode: 'floor' } },
      },
      {
        name: 'step 4: in a floor window a scale-down stops at the floor',
        policy: { schedules: [floorWindow('0 8 * * *', 4, '9h')], scale_down_rules: [{ ...CPU_LOW, scale_by: -3 }] },
        executorReplicas: 5,
        series: { down0: IDLE },
        expected: { action: 'scale_down', desired_replicas: 4, adjustments: ['schedule_floor'] },
      },
      {
        name: 'step 4: in a floor window at the floor, a scale-down is held (schedule_hold)',
        policy: { schedules: [floorWindow('0 8 * * *', 4, '9h')] },
        executorReplicas: 4,
        series: { down0: IDLE },
        expected: { action: 'none', reason_code: 'schedule_hold', desired_replicas: 4, adjustments: ['schedule_floor'], held: { down0: true } },
      },
      {
        name: 'step 4: in a floor window, current replicas below the floor are raised to it by the schedule, ignoring cooldown',
        policy: { schedules: [floorWindow('0 8 * * *', 4, '9h')] },
        executorReplicas: 2,
        memory: { last_change_at: before(NOW, 10) },
        expected: { action: 'scheduled', reason_code: 'schedule_window', desired_replicas: 4, triggered_by: 'schedule' },
      },
      {
        name: 'step 4: below the floor, rules wanting more than the floor during cooldown still let the schedule raise to the floor',
        policy: { schedules: [floorWindow('0 8 * * *', 4, '9h')], scale_up_rules: [{ ...LAG_HIGH, scale_by: 5 }] },
        executorReplicas: 2,
        memory: { last_change_at: before(NOW, 10) },
        series: { up0: LAGGING },
        expected: { action: 'scheduled', reason_code: 'schedule_window', desired_replicas: 4, triggered_by: 'schedule', adjustments: ['cooldown'] },
      },
      {
        name: 'step 4: a one-shot firing inside an exact window does not move the target: the window holds (docs/decisions.md)',
        policy: { schedules: [exact('0 8 * * *', 5, '9h'), oneShot('0 12 * * *', 8)] },
        executorReplicas: 5,
        expected: { action: 'none', reason_code: 'schedule_hold', desired_replicas: 5, schedule: { id: 's0' }, memory: { one_shots: {} } },
      },
      {
        name: 'step 4: a one-shot firing inside a floor window is raised to the floor (docs/decisions.md)',
        policy: { schedules: [floorWindow('0 8 * * *', 4, '9h'), oneShot('0 12 * * *', 2)] },
        executorReplicas: 3,
        expected: { action: 'scheduled', reason_code: 'schedule_fired', desired_replicas: 4, adjustments: ['schedule_floor'], schedule: { id: 's1' } },
      },
      {
        name: 'step 4: an exact window outranks the metric-error fallback (docs/decisions.md)',
        policy: { schedules: [exact('0 8 * * *', 5, '9h')], on_metric_error: 'fallback', fallback: { after_failures: 1, replicas: 8 } },
        executorReplicas: 5,
        series: { up0: { error: { kind: 'timeout', message: 'slow' } } },
        expected: { action: 'none', reason_code: 'schedule_hold', desired_replicas: 5, memory: { consecutive_failures: 1 } },
      },
      {
        name: 'step 4: among overlapping windows the one fired last wins',
        policy: { schedules: [exact('0 8 * * *', 3, '10h'), exact('0 11 * * *', 6, '4h')] },
        executorReplicas: 2,
        expected: { action: 'scheduled', desired_replicas: 6, schedule: { id: 's1', fired_at: '2026-05-04T11:00:00.000Z' } },
      },
      {
        name: 'step 4: among overlapping windows the one fired last wins whatever the list order',
        policy: { schedules: [exact('0 11 * * *', 6, '4h'), exact('0 8 * * *', 3, '10h')] },
        executorReplicas: 2,
        expected: { action: 'scheduled', desired_replicas: 6, schedule: { id: 's0' } },
      },
      {
        name: 'step 4: a Europe/Budapest "0 1 * * *" 3h window on the spring DST day starts at 00:00Z (01:00 CET)',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-03-29T00:00:00Z',
        executorReplicas: 2,
        expected: { action: 'scheduled', desired_replicas: 5, schedule: { fired_at: '2026-03-29T00:00:00.000Z', until: '2026-03-29T03:00:00.000Z', timezone: 'Europe/Budapest' } },
      },
      {
        name: 'step 4: the spring DST window lasts three real hours: 02:59:59Z (04:59:59 CEST) is inside',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-03-29T02:59:59Z',
        executorReplicas: 2,
        expected: { action: 'scheduled', desired_replicas: 5, schedule: { fired_at: '2026-03-29T00:00:00.000Z', until: '2026-03-29T03:00:00.000Z' } },
      },
      {
        name: 'step 4: the spring DST window ends at 03:00Z (05:00 CEST)',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-03-29T03:00:00Z',
        executorReplicas: 2,
        expected: { action: 'none', desired_replicas: 2, schedule: null },
      },
      {
        name: 'step 4: one second before the spring DST window starts it does not apply',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-03-28T23:59:59Z',
        executorReplicas: 2,
        expected: { action: 'none', desired_replicas: 2, schedule: null },
      },
      {
        name: 'step 4: on the autumn DST day the Budapest window starts at 23:00Z the day before (01:00 CEST) and ends at 02:00Z',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-10-24T23:00:00Z',
        executorReplicas: 2,
        expected: { action: 'scheduled', desired_replicas: 5, schedule: { fired_at: '2026-10-24T23:00:00.000Z', until: '2026-10-25T02:00:00.000Z' } },
      },
      {
        name: 'step 4: the autumn DST window lasts three real hours: 01:59:59Z (02:59:59 CET) is inside',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-10-25T01:59:59Z',
        executorReplicas: 2,
        expected: { action: 'scheduled', desired_replicas: 5, schedule: { fired_at: '2026-10-24T23:00:00.000Z', until: '2026-10-25T02:00:00.000Z' } },
      },
      {
        name: 'step 4: the autumn DST window ends at 02:00Z (03:00 CET)',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-10-25T02:00:00Z',
        executorReplicas: 2,
        expected: { action: 'none', desired_replicas: 2, schedule: null },
      },
      {
        name: 'step 4: one second before the autumn DST window starts it does not apply',
        policy: { schedules: [exact('0 1 * * *', 5, '3h', 'Europe/Budapest')] },
        now: '2026-10-24T22:59:59Z',
        executorReplicas: 2,
        expected: { action: 'none', desired_replicas: 2, schedule: null },
      },
    ],
  },

  5: {
    title: 'step 5: bounds',
    rows: [
      {
        name: 'step 5: a scale-up is clamped to max_replicas',
        executorReplicas: 9,
        series: { up0: LAGGING },
        expected: { action: 'scale_up', reason_code: 'rules_held', desired_replicas: 10, adjustments: ['max_replicas'] },
      },
      {
        name: 'step 5: at max_replicas with the up rules holding there is no action (at_max), recorded as blocked',
        executorReplicas: 10,
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'at_max', desired_replicas: 10, blocked: true, recordBlocked: true, memory: { last_blocked: 'at_max' } },
      },
      {
        name: 'step 5: a scale-down is clamped to min_replicas',
        policy: { min_replicas: 2, scale_down_rules: [{ ...CPU_LOW, scale_by: -3 }] },
        executorReplicas: 4,
        series: { down0: IDLE },
        expected: { action: 'scale_down', desired_replicas: 2, adjustments: ['min_replicas'] },
      },
      {
        name: 'step 5: at min_replicas without scale_to_zero, the down rules holding give no action (at_min)',
        executorReplicas: 1,
        series: { down0: IDLE },
        expected: { action: 'none', reason_code: 'at_min', desired_replicas: 1, blocked: true, recordBlocked: true },
      },
      {
        name: 'step 5: with scale_to_zero, a scale-down from min_replicas goes to 0',
        policy: { scale_to_zero: true },
        executorReplicas: 1,
        series: { down0: IDLE },
        expected: { action: 'scale_down', desired_replicas: 0, adjustments: ['scale_to_zero'] },
      },
      {
        name: 'step 5: with scale_to_zero, a scale-down from above min_replicas stops at min_replicas (zero only from min)',
        policy: { scale_to_zero: true, min_replicas: 2, scale_down_rules: [{ ...CPU_LOW, scale_by: -3 }] },
        executorReplicas: 3,
        series: { down0: IDLE },
        expected: { action: 'scale_down', desired_replicas: 2, adjustments: ['min_replicas'] },
      },
      {
        name: 'step 5: with scale_to_zero, a scale-up from 0 goes to at least min_replicas',
        policy: { scale_to_zero: true, min_replicas: 3, scale_up_rules: [{ ...LAG_HIGH, scale_by: 1 }] },
        executorReplicas: 0,
        series: { up0: LAGGING },
        expected: { action: 'scale_up', desired_replicas: 3, adjustments: ['min_replicas'], triggered_by: 'rule' },
      },
      {
        name: 'step 5: with scale_to_zero, a scale-up from 0 larger than min_replicas keeps its step',
        policy: { scale_to_zero: true, min_replicas: 2, scale_up_rules: [{ ...LAG_HIGH, scale_by: 3 }] },
        executorReplicas: 0,
        series: { up0: LAGGING },
        expected: { action: 'scale_up', desired_replicas: 3, adjustments: [] },
      },
      {
        name: 'step 5: with scale_to_zero, at 0 with no rule holding the target stays at 0',
        policy: { scale_to_zero: true, min_replicas: 2 },
        executorReplicas: 0,
        expected: { action: 'none', reason_code: 'no_rule_held', desired_replicas: 0, adjustments: [] },
      },
      {
        name: 'step 5: with scale_to_zero, at 0 with the down rules holding the target stays at 0 (at_min; nothing wakes it)',
        policy: { scale_to_zero: true, min_replicas: 2 },
        executorReplicas: 0,
        series: { down0: IDLE },
        expected: { action: 'none', reason_code: 'at_min', desired_replicas: 0, held: { down0: true } },
      },
      {
        name: 'step 5: current replicas above max_replicas (the policy changed) are clamped down with no rule holding (out_of_bounds, current behaviour)',
        executorReplicas: 12,
        expected: { action: 'scale_down', reason_code: 'out_of_bounds', desired_replicas: 10, adjustments: ['max_replicas'] },
      },
      {
        name: 'step 5: the clamp to max_replicas is not a rule-driven change: cooldown does not keep replicas above max',
        executorReplicas: 12,
        memory: { last_change_at: before(NOW, 10) },
        series: { up0: LAGGING },
        expected: { action: 'scale_down', reason_code: 'out_of_bounds', desired_replicas: 10 },
      },
    ],
  },

  6: {
    title: 'step 6: cost cap',
    rows: [
      {
        name: 'step 6: a price and max_hourly_cost cap the rules\' target (4 x 0.50 <= 2.00)',
        policy: { ...COST, scale_up_rules: [{ ...LAG_HIGH, scale_by: 3 }] },
        executorReplicas: 3,
        series: { up0: LAGGING },
        expected: { action: 'scale_up', reason_code: 'rules_held', desired_replicas: 4, adjustments: ['cost_cap'] },
      },
      {
        name: 'step 6: when the cap stops a scale-up entirely there is no action (cost_capped), recorded as blocked',
        policy: { ...COST },
        executorReplicas: 4,
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'cost_capped', desired_replicas: 4, adjustments: ['cost_cap'], blocked: true, recordBlocked: true },
      },
      {
        name: 'step 6: the cap outranks a schedule\'s desired_replicas',
        policy: { ...COST, schedules: [exact('0 8 * * *', 6, '9h')] },
        executorReplicas: 2,
        expected: { action: 'scheduled', desired_replicas: 4, adjustments: ['cost_cap'], triggered_by: 'schedule' },
      },
      {
        name: 'step 6: a schedule the cap stops entirely is a schedule_hold with the cost_cap adjustment (current behaviour; not a blocked rule change)',
        policy: { ...COST, schedules: [exact('0 8 * * *', 6, '9h')] },
        executorReplicas: 4,
        expected: { action: 'none', reason_code: 'schedule_hold', desired_replicas: 4, adjustments: ['cost_cap'], blocked: false },
      },
      {
        name: 'step 6: the cap never goes under min_replicas (a price raised after validation still leaves min_replicas)',
        policy: { min_replicas: 2, max_hourly_cost: 2 },
        price: 1.5,
        executorReplicas: 2,
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'cost_capped', desired_replicas: 2 },
      },
      {
        name: 'step 6: the price comes from the caller (policy, else config); without one there is no cap',
        policy: { max_hourly_cost: 2 },
        price: null,
        executorReplicas: 4,
        series: { up0: LAGGING },
        expected: { action: 'scale_up', desired_replicas: 6, adjustments: [] },
      },
    ],
  },

  7: {
    title: 'step 7: cooldown',
    rows: [
      {
        name: 'step 7: a rule-driven change within cooldown_seconds of the last change is not made (cooldown, blocked, first time recorded)',
        memory: { last_change_at: before(NOW, 100) },
        series: { up0: LAGGING },
        expected: {
          action: 'none',
          reason_code: 'cooldown',
          desired_replicas: 3,
          cooldown_remaining_seconds: 200,
          adjustments: ['cooldown'],
          blocked: true,
          recordBlocked: true,
          held: { up0: true },
          triggered_rules: ['up0'],
          memory: { last_blocked: 'cooldown' },
        },
        then: [
          {
            name: 'the same blocked reason 30s later is not recorded again',
            now: before(NOW, -30),
            series: { up0: LAGGING },
            expected: { action: 'none', reason_code: 'cooldown', cooldown_remaining_seconds: 170, blocked: true, recordBlocked: false, memory: { last_blocked: 'cooldown' } },
          },
        ],
      },
      {
        name: 'step 7: the same blocked reason as last time is not recorded again (recordBlocked false)',
        memory: { last_change_at: before(NOW, 100), last_blocked: 'cooldown' },
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'cooldown', blocked: true, recordBlocked: false },
      },
      {
        name: 'step 7: a different blocked reason than last time is recorded',
        executorReplicas: 10,
        memory: { last_blocked: 'cooldown' },
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'at_max', recordBlocked: true, memory: { last_blocked: 'at_max' } },
      },
      {
        name: 'step 7: a decision that is not blocked clears the last blocked reason',
        memory: { last_blocked: 'cooldown' },
        series: { up0: LAGGING },
        expected: { action: 'scale_up', blocked: false, recordBlocked: false, memory: { last_blocked: null } },
      },
      {
        name: 'step 7: once cooldown_seconds have passed since the last change, rules act again',
        memory: { last_change_at: before(NOW, 300) },
        series: { up0: LAGGING },
        expected: { action: 'scale_up', desired_replicas: 5, cooldown_remaining_seconds: 0, adjustments: [] },
      },
      {
        name: 'step 7: cooldown survives a restart: a fresh decide() with the persisted memory (no executor answer) still blocks',
        executorReplicas: null,
        memory: JSON.parse(JSON.stringify({ ...EMPTY_MEMORY, current_replicas: 4, last_change_at: before(NOW, 120), last_blocked: null })) as EngineMemory,
        series: { up0: LAGGING },
        expected: { current_replicas: 4, current_replicas_from: 'state', action: 'none', reason_code: 'cooldown', cooldown_remaining_seconds: 180, recordBlocked: true },
      },
      {
        name: 'step 7: a policy without cooldown_seconds uses the configured default (300s)',
        policy: { cooldown_seconds: null },
        memory: { last_change_at: before(NOW, 299) },
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'cooldown', cooldown_remaining_seconds: 1 },
      },
      {
        name: 'step 7: cooldown applies to scale-downs too',
        memory: { last_change_at: before(NOW, 60) },
        series: { down0: IDLE },
        expected: { action: 'none', reason_code: 'cooldown', desired_replicas: 3, held: { down0: true } },
      },
      {
        name: 'step 7: schedule actions ignore cooldown (a one-shot fires 10s after a change)',
        policy: { schedules: [oneShot('0 12 * * *', 6)] },
        memory: { last_change_at: before(NOW, 10) },
        expected: { action: 'scheduled', desired_replicas: 6, cooldown_remaining_seconds: 290, blocked: false },
      },
      {
        name: 'step 7: cooldown does not matter when the rules want no change',
        memory: { last_change_at: before(NOW, 10) },
        expected: { action: 'none', reason_code: 'no_rule_held', cooldown_remaining_seconds: 290, blocked: false, recordBlocked: false },
      },
    ],
  },

  8: {
    title: 'step 8: metric errors',
    rows: [
      {
        name: 'step 8: with on_metric_error hold, a metric error means the rule does not hold; the error is recorded and failures count up',
        series: { up0: { error: { kind: 'timeout', message: 'prometheus did not answer within 5s' } } },
        memory: { consecutive_failures: 1 },
        expected: {
          action: 'none',
          reason_code: 'metric_error',
          desired_replicas: 3,
          held: { up0: false },
          errors: { up0: /^timeout: prometheus did not answer within 5s$/, down0: null },
          consecutive_metric_failures: 2,
          memory: { consecutive_failures: 2 },
          reason: /prometheus did not answer/,
        },
      },
      {
        name: 'step 8: an empty result is a metric error',
        series: { up0: { samples: [] } },
        expected: { action: 'none', reason_code: 'metric_error', held: { up0: false }, errors: { up0: /^empty/ }, memory: { consecutive_failures: 1 } },
      },
      {
        name: 'step 8: a NaN value is not a metric error: the instant it is at fails the condition',
        series: { up0: { values: LAGGING, at: { 3: NaN } } },
        expected: { action: 'none', reason_code: 'no_rule_held', held: { up0: false }, errors: { up0: null }, values: { up0: LAGGING }, memory: { consecutive_failures: 0 }, reason: /is NaN, which is not a finite number/ },
      },
      {
        name: 'step 8: an infinite value is not a metric error: the instant it is at fails the condition',
        series: { down0: { values: IDLE, at: { 20: Infinity } } },
        expected: { action: 'none', reason_code: 'no_rule_held', held: { down0: false }, errors: { down0: null }, memory: { consecutive_failures: 0 } },
      },
      {
        name: 'step 8: a NaN never counts toward a fallback: with after_failures 1 a NaN changes nothing',
        policy: { on_metric_error: 'fallback', fallback: { after_failures: 1, replicas: 6 } },
        series: { up0: { values: LAGGING, at: { 10: NaN } } },
        expected: { action: 'none', reason_code: 'no_rule_held', desired_replicas: 3, memory: { consecutive_failures: 0 } },
      },
      {
        name: 'step 8: a zero-duration rule whose latest value is NaN does not hold and is not a metric error',
        policy: { scale_up_rules: [{ ...LAG_HIGH, duration: '0' }] },
        series: { up0: { values: [NaN], span: 0, step: 30 } },
        expected: { action: 'none', reason_code: 'no_rule_held', held: { up0: false }, errors: { up0: null }, memory: { consecutive_failures: 0 } },
      },
      {
        name: 'step 8: no answer at all for a rule is a metric error',
        series: { up0: { missing: true } },
        expected: { action: 'none', reason_code: 'metric_error', errors: { up0: /no observation/ } },
      },
      {
        name: 'step 8: with hold, failures never trigger a fallback, however many',
        policy: { fallback: { after_failures: 3, replicas: 6 } },
        series: { up0: { error: { kind: 'http', message: '503' } } },
        memory: { consecutive_failures: 9 },
        expected: { action: 'none', reason_code: 'metric_error', desired_replicas: 3, memory: { consecutive_failures: 10 } },
      },
      {
        name: 'step 8: an error in one direction does not stop the other direction acting (failures still count)',
        series: { up0: { error: { kind: 'timeout', message: 'slow' } }, down0: IDLE },
        expected: { action: 'scale_down', desired_replicas: 2, memory: { consecutive_failures: 1 } },
      },
      {
        name: 'step 8: with fallback, before after_failures consecutive failures nothing changes (metric_error)',
        policy: { on_metric_error: 'fallback', fallback: { after_failures: 3, replicas: 6 } },
        series: { up0: { error: { kind: 'timeout', message: 'slow' } } },
        memory: { consecutive_failures: 1 },
        expected: { action: 'none', reason_code: 'metric_error', desired_replicas: 3, memory: { consecutive_failures: 2 } },
      },
      {
        name: 'step 8: with fallback, at exactly after_failures consecutive failures the target is set to fallback.replicas, ignoring cooldown',
        policy: { on_metric_error: 'fallback', fallback: { after_failures: 3, replicas: 6 } },
        series: { up0: { error: { kind: 'timeout', message: 'slow' } } },
        memory: { consecutive_failures: 2, last_change_at: before(NOW, 10) },
        expected: { action: 'fallback', reason_code: 'fallback', desired_replicas: 6, triggered_by: 'fallback', consecutive_metric_failures: 3, memory: { consecutive_failures: 3 } },
      },
      {
        name: 'step 8: with fallback already applied and the metrics still failing, nothing changes (metric_error)',
        policy: { on_metric_error: 'fallback', fallback: { after_failures: 3, replicas: 6 } },
        executorReplicas: 6,
        series: { up0: { error: { kind: 'timeout', message: 'slow' } } },
        memory: { consecutive_failures: 5 },
        expected: { action: 'none', reason_code: 'metric_error', desired_replicas: 6, memory: { consecutive_failures: 6 } },
      },
      {
        name: 'step 8: recovery: a good observation resets the failures and rules act again',
        policy: { on_metric_error: 'fallback', fallback: { after_failures: 3, replicas: 6 } },
        executorReplicas: 6,
        series: { up0: LAGGING },
        memory: { consecutive_failures: 5 },
        expected: { action: 'scale_up', reason_code: 'rules_held', desired_replicas: 8, consecutive_metric_failures: 0, memory: { consecutive_failures: 0 } },
      },
      {
        name: 'step 8: recovery with no rule holding: failures reset, no_rule_held',
        policy: { on_metric_error: 'fallback', fallback: { after_failures: 3, replicas: 6 } },
        executorReplicas: 6,
        memory: { consecutive_failures: 5 },
        expected: { action: 'none', reason_code: 'no_rule_held', desired_replicas: 6, memory: { consecutive_failures: 0 } },
      },
    ],
  },

  9: {
    title: 'step 9: outcome and decision record',
    rows: [
      {
        name: 'step 9: the decision record explains each rule: query, source, operator, threshold, window, samples, value used, verdict, error',
        series: { up0: LAGGING, down0: { values: 0.5, at: { 7: 0.2 } } },
        expected: {
          action: 'scale_up',
          reason_code: 'rules_held',
          desired_replicas: 5,
          held: { up0: true, down0: false },
          samples: { up0: 11, down0: 21 },
          values: { up0: LAGGING, down0: 0.5 },
          errors: { up0: null, down0: null },
          reason: /^Scaled up from 3 to 5: .*philotes_cdc_lag_seconds.* > 60 for 5m\.$/,
        },
      },
      {
        name: 'step 9: a disabled policy decides nothing (disabled) and keeps its failure count',
        policy: { enabled: false },
        series: { up0: { error: { kind: 'timeout', message: 'slow' } } },
        memory: { consecutive_failures: 2 },
        expected: { action: 'none', reason_code: 'disabled', desired_replicas: 3, blocked: false, recordBlocked: false, memory: { consecutive_failures: 2 } },
      },
      {
        name: 'step 9: a disabled policy ignores its schedules and rules',
        policy: { enabled: false, schedules: [oneShot('0 12 * * *', 6)] },
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'disabled', desired_replicas: 3, schedule: null },
      },
      {
        name: 'step 9: a policy with no rules and no schedule yields no_rule_held',
        policy: { scale_up_rules: [], scale_down_rules: [] },
        expected: { action: 'none', reason_code: 'no_rule_held', desired_replicas: 3, reason: /no rules/ },
      },
    ],
  },

  10: {
    title: 'step 10: execution (dry-run)',
    rows: [
      {
        name: 'step 10: without any dry-run setting the decision is executed (dry_run false)',
        series: { up0: LAGGING },
        expected: { action: 'scale_up', dry_run: false, dry_run_from: [] },
      },
      {
        name: 'step 10: the policy\'s dry_run makes the decision dry-run (decided as usual, not executed)',
        policy: { dry_run: true },
        series: { up0: LAGGING },
        expected: { action: 'scale_up', desired_replicas: 5, dry_run: true, dry_run_from: ['policy'] },
      },
      {
        name: 'step 10: the request can ask for dry-run',
        dryRun: { request: true },
        series: { up0: LAGGING },
        expected: { action: 'scale_up', dry_run: true, dry_run_from: ['request'] },
      },
      {
        name: 'step 10: the global config can ask for dry-run',
        dryRun: { global: true },
        series: { up0: LAGGING },
        expected: { action: 'scale_up', dry_run: true, dry_run_from: ['config'] },
      },
      {
        name: 'step 10: a request saying dry_run false does not override the policy\'s dry_run; every source is listed',
        policy: { dry_run: true },
        dryRun: { request: false, global: true },
        series: { up0: LAGGING },
        expected: { action: 'scale_up', dry_run: true, dry_run_from: ['policy', 'config'] },
      },
      {
        name: 'step 10: dry-run does not change the cooldown verdict (the engine reads only the persisted last change)',
        dryRun: { request: true },
        memory: { last_change_at: before(NOW, 100) },
        series: { up0: LAGGING },
        expected: { action: 'none', reason_code: 'cooldown', dry_run: true },
      },
    ],
  },
};

// ---------------------------------------------------------------------------------------------
// Running a row
// ---------------------------------------------------------------------------------------------

async function evaluate(p: Policy, e: Evaluation, memory: EngineMemory): Promise<DecisionResult> {
  const now = e.now ?? NOW;
  const interval = e.intervalSeconds ?? INTERVAL;
  return decide({
    policy: p,
    now: new Date(now),
    intervalSeconds: interval,
    defaultCooldown: 300,
    defaultSource: DEFAULT_SOURCE,
    price: e.price !== undefined ? e.price : p.cost_per_replica_hour,
    executorReplicas: e.executorReplicas !== undefined ? e.executorReplicas : 3,
    memory,
    observations: observations(p, e.series ?? {}, now, interval),
    dryRun: e.dryRun,
  });
}

/** The decision record: the fields every record carries, whatever the outcome. */
function checkRecordShape(t: Test, p: Policy, e: Evaluation, r: DecisionRecord): void {
  t.equal(r.policy_id, p.id, 'policy_id');
  t.equal(r.evaluated_at, new Date(e.now ?? NOW).toISOString(), 'evaluated_at is the evaluation instant');
  t.type(r.current_replicas, 'number', 'current_replicas');
  t.type(r.desired_replicas, 'number', 'desired_replicas');
  t.ok(['scale_up', 'scale_down', 'scheduled', 'fallback', 'none'].includes(r.action), 'action is one of step 9');
  t.type(r.reason_code, 'string', 'reason_code');
  t.match(r.reason, /^[A-Z].*\.$/, 'reason is one sentence');
  t.equal(r.should_scale, r.action !== 'none', 'should_scale iff there is an action');
  t.type(r.dry_run, 'boolean', 'dry_run');
  t.ok(Array.isArray(r.triggered_rules), 'triggered_rules');
  if (r.action === 'none') {
    t.equal(r.desired_replicas, r.current_replicas, 'no action keeps the current replicas');
    t.ok(['no_rule_held', 'at_max', 'at_min', 'cooldown', 'cost_capped', 'schedule_hold', 'metric_error', 'disabled'].includes(r.reason_code), 'no action has a step 9 reason code');
  } else {
    t.not(r.desired_replicas, r.current_replicas, 'an action changes the replicas');
  }
  if (r.action === 'scale_up') t.ok(r.desired_replicas > r.current_replicas, 'scale_up goes up');
  if (r.action === 'scale_down') t.ok(r.desired_replicas < r.current_replicas, 'scale_down goes down');
  t.equal(r.rules.length, rulesOf(p).length, 'every rule is explained');
  for (const [i, rule] of rulesOf(p).entries()) {
    const rr = r.rules[i];
    t.ok(rr, `rule ${rule.id} is in the record`);
    if (rr === undefined) continue;
    t.equal(rr.id, rule.id);
    t.equal(rr.metric, rule.metric, `${rule.id}.metric`);
    t.equal(rr.source, rule.source ?? DEFAULT_SOURCE, `${rule.id}.source`);
    t.equal(rr.operator, rule.operator, `${rule.id}.operator`);
    t.equal(rr.threshold, rule.threshold, `${rule.id}.threshold`);
    t.equal(rr.window_seconds, rule.duration_seconds, `${rule.id}.window_seconds`);
    t.type(rr.samples, 'number', `${rule.id}.samples`);
    t.ok(rr.value === null || typeof rr.value === 'number', `${rule.id}.value`);
    t.type(rr.held, 'boolean', `${rule.id}.held`);
    t.ok(rr.error === null || (typeof rr.error === 'string' && rr.error.length > 0), `${rule.id}.error`);
    if (rr.error !== null) t.equal(rr.held, false, `${rule.id}: an error never holds`);
  }
}

function checkExpected(t: Test, res: DecisionResult, x: Expected): void {
  const r = res.record;
  const byId = new Map(r.rules.map((rr) => [rr.id, rr]));
  const scalar = ['action', 'reason_code', 'desired_replicas', 'current_replicas', 'current_replicas_from', 'triggered_by', 'cooldown_remaining_seconds', 'blocked', 'dry_run', 'consecutive_metric_failures'] as const;
  for (const k of scalar) if (x[k] !== undefined) t.equal(r[k], x[k], k);
  if (x.triggered_rules !== undefined) t.same(r.triggered_rules, x.triggered_rules, 'triggered_rules');
  if (x.dry_run_from !== undefined) t.same(r.dry_run_from, x.dry_run_from, 'dry_run_from');
  if (x.adjustments !== undefined) t.same(r.adjustments.map((a) => a.kind), x.adjustments, 'adjustments');
  if (x.recordBlocked !== undefined) t.equal(res.recordBlocked, x.recordBlocked, 'recordBlocked');
  if (x.reason !== undefined) t.match(r.reason, x.reason, 'reason');
  for (const [id, v] of Object.entries(x.held ?? {})) t.equal(byId.get(id)?.held, v, `${id}.held`);
  for (const [id, v] of Object.entries(x.samples ?? {})) t.equal(byId.get(id)?.samples, v, `${id}.samples`);
  for (const [id, v] of Object.entries(x.values ?? {})) t.equal(byId.get(id)?.value, v, `${id}.value`);
  for (const [id, v] of Object.entries(x.errors ?? {})) {
    if (v === null) t.equal(byId.get(id)?.error, null, `${id}.error is null`);
    else t.match(byId.get(id)?.error ?? '', v, `${id}.error`);
  }
  if (x.directions !== undefined) {
    const d = x.directions;
    if (d.up !== undefined) t.equal(r.directions.scale_up.held, d.up, 'scale-up held');
    if (d.down !== undefined) t.equal(r.directions.scale_down.held, d.down, 'scale-down held');
    if (d.chosen !== undefined) t.equal(r.directions.chosen, d.chosen, 'chosen direction');
    if (d.upStep !== undefined) t.equal(r.directions.scale_up.step, d.upStep, 'up step');
    if (d.downStep !== undefined) t.equal(r.directions.scale_down.step, d.downStep, 'down step');
  }
  if (x.schedule === null) t.equal(r.schedule, null, 'no schedule applies');
  else if (x.schedule !== undefined) t.match(r.schedule, x.schedule, 'schedule');
  for (const [k, v] of Object.entries(x.memory ?? {})) t.same(res.memory[k as keyof EngineMemory], v, `memory.${k}`);
}

async function runRow(t: Test, row: Row): Promise<void> {
  const p = buildPolicy(row.policy);
  let memory: EngineMemory = { ...EMPTY_MEMORY, ...row.memory };
  const evaluations: Evaluation[] = [row, ...(row.then ?? [])];
  for (const [i, e] of evaluations.entries()) {
    if (i > 0) memory = { ...memory, ...e.memory };
    const res = await evaluate(p, e, memory);
    if (i === 0) {
      checkRecordShape(t, p, e, res.record);
      checkExpected(t, res, e.expected);
    } else {
      await t.test(e.name, async (t) => {
        checkRecordShape(t, p, e, res.record);
        checkExpected(t, res, e.expected);
      });
    }
    memory = res.memory;
  }
}

for (const step of Object.keys(TABLES).map(Number) as Step[]) {
  const table = TABLES[step];
  t.test(table.title, async (t) => {
    for (const row of table.rows) await t.test(row.name, (t) => runRow(t, row));
  });
}

// ---------------------------------------------------------------------------------------------
// Properties the tables rely on
// ---------------------------------------------------------------------------------------------

t.test('step 2: observationKey separates what must not share a fetch and joins what may', async (t) => {
  const p = buildPolicy({ scale_up_rules: [LAG_HIGH, { ...LAG_HIGH, aggregation: 'avg' }, { ...LAG_HIGH, scale_by: 5 }, { ...LAG_HIGH, duration: '10m' }, { ...LAG_HIGH, source: 'prometheus' }] });
  const [max, avg, sameQuery, longer, explicit] = p.scale_up_rules.map((r) => observationKey(r, DEFAULT_SOURCE));
  t.not(max, avg, 'max and avg of one query are different fetches');
  t.equal(max, sameQuery, 'rules differing only in scale_by share a fetch');
  t.not(max, longer, 'a different window is a different fetch');
  t.equal(max, explicit, 'an explicit default source is the default source');
});

t.test('decide() is pure: the same input gives the same output and the input memory is not changed', async (t) => {
  const p = buildPolicy({ schedules: [oneShot('0 12 * * *', 6)] });
  const memory: EngineMemory = { ...EMPTY_MEMORY, one_shots: {} };
  const frozen = JSON.stringify(memory);
  const input: DecisionInput = {
    policy: p,
    now: new Date(NOW),
    intervalSeconds: INTERVAL,
    defaultCooldown: 300,
    defaultSource: DEFAULT_SOURCE,
    price: null,
    executorReplicas: 3,
    memory,
    observations: observations(p, { up0: LAGGING }, NOW, INTERVAL),
  };
  const a = await decide(input);
  const b = await decide(input);
  t.same(a, b);
  t.equal(JSON.stringify(memory), frozen);
});

t.test('every step 1-9 has at least one case', async (t) => {
  for (const step of [1, 2, 3, 4, 5, 6, 7, 8, 9] as const) {
    const rows = TABLES[step].rows;
    const n = rows.reduce((sum, r) => sum + 1 + (r.then?.length ?? 0), 0);
    t.ok(n >= 1, `step ${step} has ${n} cases`);
    for (const r of rows) t.match(r.name, new RegExp(`^step ${step}: `), `"${r.name}" is named after step ${step}`);
  }
  t.ok(TABLES[10].rows.length >= 1, 'step 10 (dry-run) has cases');
});
