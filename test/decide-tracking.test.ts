/**
 * Target tracking and scaling behaviour in the decision function: how opinions combine with step
 * rules, schedules, bounds and cooldown; what the record and the reason say; and stabilization and
 * rate limits carried across evaluations in the engine memory (as the loop persists it and
 * backtests replay it).
 */
import t from 'tap';
import { decide } from '../src/engine/decide.js';
import { EMPTY_MEMORY, type DecisionRecord, type EngineMemory, type Observation } from '../src/engine/decision.js';
import { applyExecution } from '../src/engine/execution.js';
import { observationKey } from '../src/engine/rule-window.js';
import type { Policy, PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';

const NOW = Date.parse('2026-05-04T12:00:00Z');
const INTERVAL = 30;
const LAG = 'max(philotes_cdc_lag_seconds)';
const EVENTS = 'sum(rate(philotes_buffer_events_processed_total[5m]))';
const CPU = 'avg(philotes_worker_cpu_ratio)';

function policy(over: Partial<PolicyInput>): Policy {
  const p = normalizePolicy(
    { name: 'p', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 20, cooldown_seconds: 0, ...over },
    { id: '6f1d2c3b-0000-4000-8000-000000000001', source: 'api', now: new Date('2026-01-01T00:00:00Z') },
  );
  p.target_tracking.forEach((e, i) => (e.id = `tt${i}`));
  p.scale_up_rules.forEach((r, i) => (r.id = `up${i}`));
  p.scale_down_rules.forEach((r, i) => (r.id = `down${i}`));
  return p;
}

/** Observations answering each query with one value at `at` (queries of zero-duration entries and rules). */
function observe(p: Policy, values: Record<string, number | 'error'>, at: number): Map<string, Observation> {
  const out = new Map<string, Observation>();
  for (const item of [...p.scale_up_rules, ...p.scale_down_rules, ...p.target_tracking]) {
    const v = values[item.metric];
    if (v === undefined) continue;
    out.set(observationKey(item, 'prometheus'), v === 'error' ? { samples: [], error: { kind: 'unreachable', message: 'down' } } : { samples: [{ t: at / 1000, v }] });
  }
  return out;
}

async function once(p: Policy, current: number, values: Record<string, number | 'error'>, memory: EngineMemory = EMPTY_MEMORY, at = NOW): Promise<{ record: DecisionRecord; memory: EngineMemory }> {
  return decide({
    policy: p,
    now: new Date(at),
    intervalSeconds: INTERVAL,
    defaultCooldown: 0,
    defaultSource: 'prometheus',
    price: null,
    executorReplicas: current,
    memory,
    observations: observe(p, values, at),
  });
}

const perReplica = { metric: EVENTS, target_per_replica: 1000 };
const utilisation = { metric: CPU, target_value: 0.7 };

// HPA: "If multiple metrics are specified in a HorizontalPodAutoscaler, this calculation is done
// for each metric, and then the largest of the desired replica counts is chosen"
// (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details). Rows
// 'two entries' reproduce it: 4 replicas, 5500 events/s against 1000 per replica wants 6, CPU
// 0.8 against 0.7 wants ceil(4 x 0.8 / 0.7) = 5, so 6.
t.test('the highest opinion wins, among entries and step rules', async (t) => {
  const rows: Array<[string, Partial<PolicyInput>, number, Record<string, number>, number, string, string]> = [
    // name, policy, current, values, desired, action, reason_code
    ['one entry, up', { target_tracking: [perReplica] }, 2, { [EVENTS]: 5500 }, 6, 'scale_up', 'rules_held'],
    ['one entry, down (no stabilization set: default 5m, nothing older)', { target_tracking: [perReplica], behavior: { scale_down_stabilization: '0s' } }, 8, { [EVENTS]: 2500 }, 3, 'scale_down', 'rules_held'],
    ['two entries: the higher of 6 and 5', { target_tracking: [perReplica, utilisation] }, 4, { [EVENTS]: 5500, [CPU]: 0.8 }, 6, 'scale_up', 'rules_held'],
    ['two entries: ceil(4.5) = 5 against ceil(4 x 1.05 / 0.7) = 6', { target_tracking: [perReplica, utilisation] }, 4, { [EVENTS]: 4500, [CPU]: 1.05 }, 6, 'scale_up', 'rules_held'],
    ['an up beats every down: entry up 6 against a down rule', { target_tracking: [perReplica], scale_down_rules: [{ metric: LAG, operator: 'lt', threshold: 5, scale_by: -2 }] }, 4, { [EVENTS]: 5500, [LAG]: 1 }, 6, 'scale_up', 'rules_held'],
    ['a step rule up beats an entry down', { target_tracking: [perReplica], behavior: { scale_down_stabilization: '0s' }, scale_up_rules: [{ metric: LAG, operator: 'gt', threshold: 60, scale_by: 1 }] }, 4, { [EVENTS]: 1000, [LAG]: 90 }, 5, 'scale_up', 'rules_held'],
    ['among downs the smaller decrease', { target_tracking: [perReplica], behavior: { scale_down_stabilization: '0s' }, scale_down_rules: [{ metric: LAG, operator: 'lt', threshold: 5, scale_by: -1 }] }, 6, { [EVENTS]: 2000, [LAG]: 1 }, 5, 'scale_down', 'rules_held'],
    ['within tolerance: no opinion, no change', { target_tracking: [perReplica] }, 5, { [EVENTS]: 5300 }, 5, 'none', 'no_rule_held'],
    ['an opinion equal to the current count changes nothing', { target_tracking: [utilisation], behavior: { scale_down_stabilization: '0s' } }, 4, { [CPU]: 0.62 }, 4, 'none', 'no_rule_held'],
    ['bounds clamp the proposal', { target_tracking: [perReplica], max_replicas: 8 }, 4, { [EVENTS]: 12_000 }, 8, 'scale_up', 'rules_held'],
    ['at max: at_max', { target_tracking: [perReplica], max_replicas: 8 }, 8, { [EVENTS]: 12_000 }, 8, 'none', 'at_max'],
  ];
  for (const [name, over, current, values, desired, action, reason] of rows) {
    const { record } = await once(policy(over), current, values);
    t.same([record.desired_replicas, record.action, record.reason_code], [desired, action, reason], name);
  }
});

t.test('the record lists each entry; the reason names the entry that decided', async (t) => {
  const p = policy({ target_tracking: [perReplica, utilisation] });
  const { record } = await once(p, 4, { [EVENTS]: 5500, [CPU]: 0.75 });
  t.equal(record.proposal, 6);
  t.same(
    record.target_tracking.map((e) => [e.id, e.kind, e.target, e.value, e.opinion, e.outcome, e.formula]),
    [
      ['tt0', 'target_per_replica', 1000, 5500, 6, 'opinion', 'ceil(5500 / 1000) = 6'],
      ['tt1', 'target_value', 0.7, 0.75, null, 'within_tolerance', 'ceil(4 x 0.75 / 0.7) = 5'],
    ],
  );
  t.match(record.reason, /^Scaled up from 4 to 6: target tracking sum\(rate\(philotes_buffer_events_processed_total\[5m\]\)\) at 5500 against target_per_replica 1000 wants 6 \(ceil\(5500 \/ 1000\) = 6\)\.$/);
});

t.test('metric errors: no opinion from a failed entry, counted as a metric failure', async (t) => {
  const p = policy({ target_tracking: [perReplica, utilisation] });
  const both = await once(p, 4, { [EVENTS]: 'error', [CPU]: 'error' });
  t.same([both.record.action, both.record.reason_code, both.record.consecutive_metric_failures], ['none', 'metric_error', 1]);
  t.match(both.record.reason, /^No change: 2 target-tracking entries had no usable metric \(.*unreachable: down/);
  const one = await once(p, 4, { [EVENTS]: 'error', [CPU]: 1.4 });
  t.same([one.record.desired_replicas, one.record.action], [8, 'scale_up'], 'the entry that answered still decides');
  t.equal(one.record.consecutive_metric_failures, 1, 'and the failure is counted (for the fallback)');
  const fb = policy({ target_tracking: [perReplica], on_metric_error: 'fallback', fallback: { after_failures: 2, replicas: 7 } });
  const first = await once(fb, 3, { [EVENTS]: 'error' });
  const second = await once(fb, 3, { [EVENTS]: 'error' }, first.memory, NOW + 30_000);
  t.same([second.record.action, second.record.desired_replicas], ['fallback', 7], 'the fallback applies after its failures');
});

t.test('schedules outrank target tracking; a floor window keeps tracking above it', async (t) => {
  const exact = policy({ target_tracking: [perReplica], schedules: [{ cron_expression: '0 12 * * *', desired_replicas: 3, duration: '1h', mode: 'exact' }] });
  const held = await once(exact, 3, { [EVENTS]: 9000 });
  t.same([held.record.action, held.record.reason_code, held.record.desired_replicas], ['none', 'schedule_hold', 3], 'an exact window holds its count');
  const floor = policy({ target_tracking: [perReplica], behavior: { scale_down_stabilization: '0s' }, schedules: [{ cron_expression: '0 12 * * *', desired_replicas: 5, duration: '1h', mode: 'floor' }] });
  const up = await once(floor, 5, { [EVENTS]: 9000 });
  t.same([up.record.action, up.record.desired_replicas], ['scale_up', 9], 'above the floor, tracking acts');
  const down = await once(floor, 6, { [EVENTS]: 1000 });
  t.same([down.record.desired_replicas, down.record.reason_code], [5, 'rules_held'], 'a scale-down wanting 1 stops at the floor of 5');
  t.same(down.record.adjustments.map((a) => [a.kind, a.from, a.to]), [['schedule_floor', 1, 5]]);
});

t.test('stabilization: a dip does not shed capacity until the window has passed', async (t) => {
  const p = policy({ target_tracking: [perReplica] }); // default scale-down stabilization: 5m
  t.equal(p.behavior.scale_down_stabilization_seconds, 300);
  let memory: EngineMemory = EMPTY_MEMORY;
  let current = 2;
  const seen: Array<[number, number, string]> = [];
  // 0-60s: 9000 events/s (wants 9); then a dip to 3000 (wants 3).
  for (let s = 0; s <= 420; s += 30) {
    const at = NOW + s * 1000;
    const { record, memory: next } = await once(p, current, { [EVENTS]: s <= 60 ? 9000 : 3000 }, memory, at);
    memory = applyExecution(next, record, new Date(at), { succeeded: true });
    if (record.should_scale) current = record.desired_replicas;
    seen.push([s, current, record.reason_code]);
  }
  t.same(seen.slice(0, 4), [
    [0, 9, 'rules_held'],
    [30, 9, 'no_rule_held'],
    [60, 9, 'no_rule_held'],
    [90, 9, 'stabilized'],
  ]);
  // 9 was last proposed at 60 s: it counts while 60 > now - 300, until now = 360 s.
  t.same(seen.find(([s]) => s === 330), [330, 9, 'stabilized']);
  t.same(seen.find(([s]) => s === 360), [360, 3, 'rules_held']);
  t.ok((memory.proposals?.length ?? 0) <= 2, `the memory keeps spans, not every evaluation (${JSON.stringify(memory.proposals)})`);
});

t.test('a proposal repeated leaves the memory as it was (the loop writes nothing)', async (t) => {
  const p = policy({ target_tracking: [perReplica] });
  const a = await once(p, 5, { [EVENTS]: 5200 }, EMPTY_MEMORY, NOW);
  const b = await once(p, 5, { [EVENTS]: 5250 }, a.memory, NOW + 30_000);
  t.equal(b.memory.proposals, a.memory.proposals, 'the same array: no change to store');
});

t.test('rate limits cut rule and tracking changes, and count executed changes within the period', async (t) => {
  const p = policy({ target_tracking: [perReplica], behavior: { scale_up_limit: { replicas: 2, percent: 50, period: '1m' } } });
  const first = await once(p, 2, { [EVENTS]: 10_000 });
  t.same([first.record.desired_replicas, first.record.reason_code, first.record.proposal], [4, 'rate_limited', 10], '2 + max(2, 50% of 2) = 4');
  t.match(first.record.reason, /wants 10 .*the rate limit allows 4/);
  const adj = first.record.adjustments.find((a) => a.kind === 'rate_limit');
  t.match(adj?.detail, /scale_up_limit allows at most 4 within 1m \(the larger of 2 replicas and 50%\)/);
  const m1 = applyExecution(first.memory, first.record, new Date(NOW), { succeeded: true });
  t.same(m1.changes, [[NOW, 2]]);
  const second = await once(p, 4, { [EVENTS]: 10_000 }, m1, NOW + 30_000);
  t.equal(second.record.desired_replicas, 4, 'within the minute the period started at 2: still at most 4');
  t.equal(second.record.reason_code, 'rate_limited');
  const third = await once(p, 4, { [EVENTS]: 10_000 }, second.memory, NOW + 60_000);
  t.equal(third.record.desired_replicas, 6, 'a minute later the period starts at 4: 4 + max(2, 2) = 6');
  const schedule = policy({ target_tracking: [perReplica], behavior: { scale_up_limit: { replicas: 1, period: '1m' } }, schedules: [{ cron_expression: '0 12 * * *', desired_replicas: 9 }] });
  const fired = await once(schedule, 2, { [EVENTS]: 1000 });
  t.same([fired.record.action, fired.record.desired_replicas], ['scheduled', 9], 'schedules are not rate limited');
  const rules = policy({ scale_up_rules: [{ metric: LAG, operator: 'gt', threshold: 60, scale_by: 5 }], behavior: { scale_up_limit: { replicas: 1, period: '1m' } } });
  const step = await once(rules, 2, { [LAG]: 90 });
  t.same([step.record.desired_replicas, step.record.reason_code], [3, 'rate_limited'], 'step rules are limited too');
});

t.test('scale to zero with target tracking: only an opinion of 0 puts the target to sleep', async (t) => {
  const p = policy({ target_tracking: [perReplica], min_replicas: 2, scale_to_zero: true, behavior: { scale_down_stabilization: '0s' } });
  const one = await once(p, 2, { [EVENTS]: 500 });
  t.same([one.record.desired_replicas, one.record.action, one.record.reason_code], [2, 'none', 'at_min'], 'an opinion of 1 at min_replicas 2 stays at 2 (it would wake again at once)');
  const zero = await once(p, 2, { [EVENTS]: 0 });
  t.same([zero.record.desired_replicas, zero.record.action], [0, 'scale_down'], 'an opinion of 0 goes to 0');
  t.same(zero.record.adjustments.map((a) => a.kind), ['scale_to_zero']);
  const asleep = await once(p, 0, { [EVENTS]: 0 });
  t.same([asleep.record.desired_replicas, asleep.record.action], [0, 'none'], 'asleep with no load: stays asleep');
  const wake = await once(p, 0, { [EVENTS]: 500 });
  t.same([wake.record.desired_replicas, wake.record.action], [2, 'scale_up'], 'load wakes it to min_replicas');
  // Step rules keep their meaning: a scale-down at min_replicas goes to 0.
  const steps = policy({ min_replicas: 2, scale_to_zero: true, scale_down_rules: [{ metric: LAG, operator: 'lt', threshold: 5, scale_by: -1 }] });
  const stepDown = await once(steps, 2, { [LAG]: 1 });
  t.same([stepDown.record.desired_replicas, stepDown.record.action], [0, 'scale_down'], 'a step rule at min_replicas still goes to 0');
});

t.test('rate limits never keep a target asleep, below min_replicas or above max_replicas', async (t) => {
  const percent = policy({ target_tracking: [perReplica], min_replicas: 3, scale_to_zero: true, behavior: { scale_up_limit: { percent: 100, period: '1m' } } });
  const woke = await once(percent, 0, { [EVENTS]: 2500 });
  t.same([woke.record.desired_replicas, woke.record.action], [3, 'scale_up'], 'waking from 0 to min_replicas is not limited (100% of 0 would be 0)');
  const big = await once(percent, 0, { [EVENTS]: 9000 });
  t.same([big.record.desired_replicas, big.record.reason_code], [3, 'rate_limited'], 'waking to min_replicas is free; beyond it the limit (100% of 0) applies');
  const zeroMin = policy({ target_tracking: [perReplica], min_replicas: 0, behavior: { scale_up_limit: { percent: 100, period: '1m' } } });
  const fromZero = await once(zeroMin, 0, { [EVENTS]: 4000 });
  t.same([fromZero.record.desired_replicas, fromZero.record.reason_code], [1, 'rate_limited'], 'min_replicas 0: waking from 0 goes to at least 1, then the limit applies');
  const replicas = policy({ target_tracking: [perReplica], min_replicas: 3, scale_to_zero: true, behavior: { scale_up_limit: { replicas: 1, period: '1m' } } });
  const wokeSmall = await once(replicas, 0, { [EVENTS]: 2500 });
  t.equal(wokeSmall.record.desired_replicas, 3, 'a limit of 1 replica does not stop waking at min_replicas 3');
  const below = await once(replicas, 1, { [EVENTS]: 2000 });
  t.same([below.record.desired_replicas, below.record.action], [3, 'scale_up'], 'below min_replicas (min raised): up to min_replicas unlimited');
  const above = policy({ target_tracking: [perReplica], max_replicas: 10, behavior: { scale_down_stabilization: '0s', scale_down_limit: { replicas: 1, period: '1m' } } });
  const over = await once(above, 12, { [EVENTS]: 11_000 });
  t.same([over.record.desired_replicas, over.record.action], [10, 'scale_down'], 'above max_replicas (max lowered): down to max_replicas unlimited, 11 would be out of bounds');
  const far = await once(above, 12, { [EVENTS]: 4000 });
  t.equal(far.record.desired_replicas, 10, 'a drop beyond max_replicas: to max_replicas, the rest waits for the limit');
  const sleepy = policy({ min_replicas: 2, scale_to_zero: true, scale_down_rules: [{ metric: LAG, operator: 'lt', threshold: 5, scale_by: -1 }], behavior: { scale_down_limit: { replicas: 1, period: '1m' } } });
  const toZero = await once(sleepy, 2, { [LAG]: 1 });
  t.equal(toZero.record.desired_replicas, 0, 'going to 0 with scale_to_zero is not cut to 1 (out of bounds)');
  const costly = policy({ target_tracking: [perReplica], max_hourly_cost: 10, behavior: { scale_down_stabilization: '0s', scale_down_limit: { replicas: 1, period: '1m' } } });
  const capped = await decide({
    policy: costly,
    now: new Date(NOW),
    intervalSeconds: INTERVAL,
    defaultCooldown: 0,
    defaultSource: 'prometheus',
    price: 2,
    executorReplicas: 8,
    memory: EMPTY_MEMORY,
    observations: observe(costly, { [EVENTS]: 9000 }, NOW),
  });
  t.equal(capped.record.desired_replicas, 5, 'the cost cap (10 / 2 = 5) is a bound: not limited');
});

t.test('the first evaluation is stabilized too: the current count counts as proposed now', async (t) => {
  const p = policy({ target_tracking: [perReplica] }); // scale-down stabilization 5m
  const first = await once(p, 8, { [EVENTS]: 2500 });
  t.same([first.record.desired_replicas, first.record.reason_code, first.record.proposal], [8, 'stabilized', 3]);
  let memory = first.memory;
  let last = first;
  for (let s = 30; s <= 270; s += 30) {
    last = await once(p, 8, { [EVENTS]: 2500 }, memory, NOW + s * 1000);
    memory = last.memory;
  }
  t.same([last.record.desired_replicas, last.record.reason_code], [8, 'stabilized'], 'held through 4m30s');
  const after = await once(p, 8, { [EVENTS]: 2500 }, memory, NOW + 300_000);
  t.same([after.record.desired_replicas, after.record.action], [3, 'scale_down'], 'after the 5m window: down to the proposal');
});

t.test('a stabilized step proposal: the reason names the rules that proposed it', async (t) => {
  const p = policy({ scale_down_rules: [{ metric: LAG, operator: 'lt', threshold: 5, scale_by: -1 }], behavior: { scale_down_stabilization: '5m' } });
  const { record } = await once(p, 5, { [LAG]: 1 });
  t.same([record.desired_replicas, record.reason_code, record.proposal], [5, 'stabilized', 4]);
  t.match(record.reason, /^No change: max\(philotes_cdc_lag_seconds\) < 5.*, but stabilization holds 5/);
  t.notMatch(record.reason, /: ,/, 'no empty proposer');
});

t.test('no scale-down while a metric fails (as HPA); a scale-up still goes ahead', async (t) => {
  const p = policy({ target_tracking: [perReplica, utilisation], behavior: { scale_down_stabilization: '0s' } });
  const down = await once(p, 8, { [EVENTS]: 2000, [CPU]: 'error' });
  t.same([down.record.desired_replicas, down.record.action, down.record.reason_code, down.record.proposal], [8, 'none', 'metric_error', 2]);
  t.match(down.record.reason, /the proposed scale-down to 2 waits until every metric answers/);
  const up = await once(p, 4, { [EVENTS]: 9000, [CPU]: 'error' });
  t.same([up.record.desired_replicas, up.record.action], [9, 'scale_up']);
  const stab = policy({ target_tracking: [perReplica, utilisation] });
  const held = await once(stab, 8, { [EVENTS]: 2000, [CPU]: 'error' });
  t.same(held.memory.proposals, undefined, 'a withheld scale-down is not remembered as a proposal');
});
