/**
 * The cycle plan (src/engine/cycle-plan.ts): the distinct requests of a set of held policies, who
 * waits for each, the distinct conditions each is read with, the executors' batch question, and
 * the quiet-repeat path, which decides a policy's outcome by repeating its last one without an
 * assessment. The last test drives plans through random cycles of random policies and checks
 * every repeated outcome against decide() from scratch on the same state and observations.
 */
import fc from 'fast-check';
import t from 'tap';
import { CyclePlan, MAX_ANSWER, NO_ANSWER, Slot, targetOf } from '../src/engine/cycle-plan.js';
import { assess, decide } from '../src/engine/decide.js';
import type { Observation } from '../src/engine/decision.js';
import { steadyNow, type EvaluationContext } from '../src/engine/evaluate.js';
import { KnownState, fingerprintOf, isQuiet, memoryFromState } from '../src/engine/known-state.js';
import { MetricFetcher } from '../src/engine/metric-fetch.js';
import { observationKey } from '../src/engine/rule-window.js';
import type { Executor } from '../src/plugins/api.js';
import { IsolatedExecutor, IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { Policy, PolicyInput } from '../src/policy/policy-model.js';
import type { ConditionNode } from '../src/policy/condition-tree.js';
import { Mutex } from '../src/util/async.js';
import { DEFAULT_SOURCE, INTERVAL, capturingLogger, constantSource, fresh, inputOf, memoryExecutor, observationOf, observationsFor, policyOf, rule, silent, stateAfter, type Value } from './helpers/engine-parts.js';

const AT = new Date('2026-02-01T10:00:00Z');

const slotsOf = (policies: readonly Policy[]): Slot[] => policies.map((p) => new Slot(p, new Mutex(), 0));

t.test('targetOf: what an executor is told about a policy\'s target', async (t) => {
  const plain = policyOf({ name: 'plain', target_id: 'ABC' });
  t.same(targetOf(plain), { policyId: plain.id, policyName: 'plain', targetType: 'cdc-worker', targetId: 'abc', targetRef: null });
  const ref = policyOf({ name: 'ref', target_ref: { kind: 'Deployment', name: 'worker', namespace: 'cdc' } });
  t.same(targetOf(ref).targetRef, { kind: 'Deployment', name: 'worker', namespace: 'cdc', apiVersion: null });
  const full = policyOf({ name: 'full', target_ref: { kind: 'StatefulSet', name: 'w', api_version: 'apps/v1' } });
  t.same(targetOf(full).targetRef, { kind: 'StatefulSet', name: 'w', namespace: null, apiVersion: 'apps/v1' });
});

t.test('one fetch per distinct query, the policies waiting for it and its distinct conditions', async (t) => {
  const a = policyOf({ name: 'a', scale_up_rules: [rule('lag', 'gt', 60, 1)], scale_down_rules: [rule('lag', 'lt', 5, -1)] });
  // The same query and condition as a's up rule (its source written out), and a zero-duration rule.
  const b = policyOf({ name: 'b', scale_up_rules: [{ ...rule('lag', 'gt', 60, 2), source: DEFAULT_SOURCE }, rule('cpu', 'gt', 80, 1, '0s')] });
  // Another window and another source: other requests.
  const c = policyOf({ name: 'c', scale_up_rules: [rule('lag', 'gt', 60, 1, '5m'), { ...rule('lag', 'gt', 60, 1), source: 'other' }] });
  // Target tracking reads lag too, with a condition of its own kind (none the plan can check).
  const d = policyOf({ name: 'd', target_tracking: [{ metric: 'lag', duration: '1m', target_value: 30 }], scale_up_rules: [rule('lag', 'gte', 60, 1)] });
  const e = policyOf({ name: 'e' });
  const plan = new CyclePlan(slotsOf([a, b, c, d, e]), DEFAULT_SOURCE, () => undefined, undefined);
  const keyOf = (p: Policy, i: number) => observationKey(p.scale_up_rules[i] as Policy['scale_up_rules'][number], DEFAULT_SOURCE);
  const lag1m = plan.keys.indexOf(keyOf(a, 0));
  const cpu = plan.keys.indexOf(keyOf(b, 1));
  const lag5m = plan.keys.indexOf(keyOf(c, 0));
  const other = plan.keys.indexOf(keyOf(c, 1));
  t.equal(plan.keys.length, 4, 'lag over 1m, cpu now, lag over 5m, lag from the other source');
  t.equal(plan.fetches.length, plan.keys.length);
  t.ok([lag1m, cpu, lag5m, other].every((k) => k >= 0), 'each distinct query has its key');
  t.equal(plan.fetches[other]?.source, 'other');
  t.equal(plan.fetches[lag1m]?.source, DEFAULT_SOURCE, 'a rule without a source asks the default one');
  t.same(plan.waiting[lag1m], [0, 1, 3], 'a, b and d wait for lag over 1m, each once');
  t.same(plan.waiting[cpu], [1]);
  t.same(plan.waiting[lag5m], [2]);
  t.same(plan.waiting[other], [2]);
  t.same([...plan.needs], [1, 2, 2, 1, 0], 'distinct observations each policy needs');
  t.same(
    plan.conditions[lag1m]?.map((x) => `${x.operator} ${x.threshold}`),
    ['gt 60', 'lt 5', 'gte 60'],
    'lag over 1m is read with three distinct conditions (a\'s and b\'s gt 60 is one)',
  );
  const conditionsOf = (i: number) => [...plan.conditionOf.subarray(plan.conditionsFrom[i], plan.conditionsTo[i])];
  t.same(conditionsOf(0), [plan.firstCondition[lag1m] as number, (plan.firstCondition[lag1m] as number) + 1], 'a: both conditions on lag');
  t.equal(conditionsOf(1)[0], conditionsOf(0)[0], 'b shares a\'s condition');
  t.equal(conditionsOf(3).length, 1, 'd: its rule only, not its target-tracking entry');
  t.same(conditionsOf(4), [], 'e: nothing to check');
  t.equal(plan.quiet.length, 3 + 1 + 1 + 1, 'one quiet flag per distinct condition');
  t.same([...plan.answered], [NO_ANSWER, NO_ANSWER, NO_ANSWER, NO_ANSWER, NO_ANSWER], 'no executor answered yet');
});

t.test('fits and has: a plan is for exactly its slots, in order, holding its policy versions', async (t) => {
  const p = [policyOf({ name: 'x' }), policyOf({ name: 'y' })];
  const slots = slotsOf(p);
  const plan = new CyclePlan(slots, DEFAULT_SOURCE, () => undefined, undefined);
  t.ok(plan.fits(slots, DEFAULT_SOURCE));
  t.ok(plan.fits([...slots], DEFAULT_SOURCE), 'another array of the same slots');
  t.notOk(plan.fits([...slots].reverse(), DEFAULT_SOURCE), 'another order');
  t.notOk(plan.fits(slots.slice(0, 1), DEFAULT_SOURCE), 'fewer slots');
  t.notOk(plan.fits(slots, 'other'), 'another default source');
  t.notOk(plan.fits([slots[0] as Slot, new Slot(p[1] as Policy, new Mutex(), 0)], DEFAULT_SOURCE), 'another slot with the same policy');
  t.ok(plan.has(slots[1] as Slot));
  t.notOk(plan.has(new Slot(p[0] as Policy, new Mutex(), 0)), 'a slot it was not made for');
  (slots[1] as Slot).policy = { ...(p[1] as Policy), max_replicas: 5 };
  t.notOk(plan.fits(slots, DEFAULT_SOURCE), 'a slot now holding a new version of its policy');
  const next = new CyclePlan(slots, DEFAULT_SOURCE, () => undefined, plan);
  t.ok(next.fits(slots, DEFAULT_SOURCE));
  t.ok(next.has(slots[1] as Slot));
});

t.test('askReplicas: one call per executor that answers many, each answer in its policy\'s place', async (t) => {
  const policies = ['a', 'b', 'c', 'd', 'e', 'f'].map((name) => policyOf({ name }));
  const batch = memoryExecutor();
  const other = memoryExecutor();
  const single = memoryExecutor({ many: false });
  const broken = memoryExecutor({ failMany: true });
  const executors = { batch: new IsolatedExecutor('batch', batch, 1000), other: new IsolatedExecutor('other', other, 1000), single: new IsolatedExecutor('single', single, 1000), broken: new IsolatedExecutor('broken', broken, 1000) };
  // a, c: batch; b: other; d: one at a time; e: broken; f: none loaded.
  const of: Record<string, IsolatedExecutor | undefined> = { a: executors.batch, b: executors.other, c: executors.batch, d: executors.single, e: executors.broken, f: undefined };
  const slots = slotsOf(policies);
  const plan = new CyclePlan(slots, DEFAULT_SOURCE, (p) => of[p.name], undefined);
  t.same([...plan.byExecutor.keys()].map((e) => e.name), ['batch', 'other', 'broken'], 'only executors that answer many are asked in one call');
  t.same(plan.byExecutor.get(executors.batch)?.indices, [0, 2]);
  t.ok(plan.byExecutor.get(executors.batch)?.targets.every((x) => Object.isFrozen(x)), 'the targets handed to plugins are frozen');
  t.same(plan.byExecutor.get(executors.batch)?.targets.map((x) => x.policyName), ['a', 'c']);

  batch.replicas.set('a', 3);
  other.replicas.set('b', 0);
  // c: the batch executor cannot tell (no count for it).
  const { logger, lines } = capturingLogger();
  await plan.askReplicas(logger);
  t.equal(batch.manyCalls.length, 1, 'one call for both of its policies');
  t.equal(other.manyCalls.length, 1);
  t.same(slots.map((s) => plan.answerOf(s)), [3, 0, null, undefined, undefined, undefined], 'a 3, b 0, c cannot tell; d, e and f ask one by one');
  t.equal(plan.answered[3], NO_ANSWER);
  t.equal(lines.length, 1, 'the failed call is logged once');
  t.match(lines[0], { level: 40, executor: 'broken', targets: 1, err: /the cluster API is down/ });
  t.equal(plan.answerOf(new Slot(policies[0] as Policy, new Mutex(), 0)), undefined, 'a slot of no plan has no answer');

  // The next cycle's answers replace the last ones, and counts an Int32Array cannot hold are asked again one by one.
  batch.replicas.set('a', MAX_ANSWER + 1);
  batch.replicas.set('c', MAX_ANSWER);
  other.replicas.delete('b');
  await plan.askReplicas(silent);
  t.same(slots.slice(0, 3).map((s) => plan.answerOf(s)), [undefined, null, MAX_ANSWER]);
});

t.test('observe, repeats and setQuiet: a quiet slot repeats only while nothing it reads holds and its replicas stay', async (t) => {
  const p = policyOf({ name: 'q', scale_up_rules: [rule('lag', 'gt', 60, 1), rule('cpu', 'gt', 80, 1, '0s')], scale_down_rules: [rule('lag', 'lt', 5, -1)] });
  const neighbour = policyOf({ name: 'n', scale_up_rules: [rule('lag', 'gt', 30, 1)] });
  const ex = memoryExecutor();
  const executor = new IsolatedExecutor('keda', ex, 1000);
  const slots = slotsOf([neighbour, p]);
  const slot = slots[1] as Slot;
  const plan = new CyclePlan(slots, DEFAULT_SOURCE, () => executor, undefined);
  ex.replicas.set('q', 2);
  ex.replicas.set('n', 2);
  const observe = (values: Record<string, Value>, now: Date) => {
    const obs = observationsFor([neighbour, p], now, values);
    plan.fetches.forEach((f, k) => plan.observe(k, obs.get(plan.keys[k] as string) as Observation, now, INTERVAL));
  };
  await plan.askReplicas(silent);
  observe({ lag: 30, cpu: 10 }, AT);
  t.notOk(plan.repeats(1, 1), 'not repeatable before it was found quiet');

  const known = new KnownState({ policy_id: p.id, current_replicas: 2, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: {}, updated_at: AT.toISOString(), version: 1 }, 'fp', 0, false);
  slot.known = known;
  plan.setQuiet(slot, true, known, 2);
  t.equal(slot.quietPolicy, p);
  t.equal(slot.quietKnown, known);
  t.equal(slot.quietReplicas, 2);
  t.ok(plan.repeats(1, 7), 'quiet, same replicas, nothing holds: repeated');
  t.equal(plan.repeatedIn[1], 7, 'marked repeated in that cycle');
  t.notOk(plan.repeats(0, 7), 'its neighbour (never found quiet) is not');
  t.equal(plan.repeatedIn[0], 0);

  observe({ lag: 30, cpu: 90 }, AT);
  t.notOk(plan.repeats(1, 8), 'its zero-duration cpu rule holds: assessed');
  t.equal(plan.repeatedIn[1], 7, 'a refused repeat leaves the mark as it was');
  observe({ lag: 2, cpu: 10 }, AT);
  t.notOk(plan.repeats(1, 8), 'its scale-down rule holds');
  observe({ lag: 'fail', cpu: 10 }, AT);
  t.notOk(plan.repeats(1, 8), 'a failed query is never quiet');
  observe({ lag: 45, cpu: 10 }, AT);
  t.ok(plan.repeats(1, 8), 'lag 45 holds its neighbour\'s gt 30, none of its own conditions');

  ex.replicas.set('q', 3);
  await plan.askReplicas(silent);
  t.notOk(plan.repeats(1, 9), 'the executor reports other replicas');
  ex.replicas.set('q', 2);
  await plan.askReplicas(silent);
  t.ok(plan.repeats(1, 9), 'and again the ones it had');

  plan.setQuiet(slot, false, undefined, null);
  t.equal(slot.quietPolicy, undefined, 'assessed and not quiet');
  t.equal(plan.repeatedIn[1], 0, 'its latest outcome is no repeat');
  t.notOk(plan.repeats(1, 10));

  // Quiet with replicas nobody could tell: repeated while the executor still cannot tell.
  ex.replicas.delete('q');
  plan.setQuiet(slot, true, known, null);
  t.equal(plan.repeatReplicas[1], -1);
  await plan.askReplicas(silent);
  t.ok(plan.repeats(1, 11), 'null then, null now');
  // An executor that stops answering in one call: asked one by one, so never repeated.
  const none = new CyclePlan(slots, DEFAULT_SOURCE, () => new IsolatedExecutor('single', memoryExecutor({ many: false }), 1000), plan);
  t.equal(none.repeatable[1], 1, 'still quiet in the new plan');
  t.notOk(none.repeats(1, 12), 'but no batch answer to compare with');
});

t.test('a new plan carries each slot\'s quiet state and repeat mark over, by slot, whatever its new index', async (t) => {
  const policies = ['a', 'b', 'c'].map((name) => policyOf({ name, scale_up_rules: [rule(`m_${name}`, 'gt', 60, 1)] }));
  const slots = slotsOf(policies);
  const ex = memoryExecutor();
  const executor = new IsolatedExecutor('keda', ex, 1000);
  const plan = new CyclePlan(slots, DEFAULT_SOURCE, () => executor, undefined);
  for (const s of slots) {
    ex.replicas.set(s.policy.name, 4);
    const known = new KnownState({ policy_id: s.policy.id, current_replicas: 4, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: {}, updated_at: AT.toISOString(), version: 1 }, 'fp', 0, false);
    s.known = known;
    plan.setQuiet(s, true, known, 4);
  }
  await plan.askReplicas(silent);
  const obs = observationsFor(policies, AT, { m_a: 1, m_b: 1, m_c: 1 });
  plan.fetches.forEach((_, k) => plan.observe(k, obs.get(plan.keys[k] as string) as Observation, AT, INTERVAL));
  t.same([0, 1, 2].map((i) => plan.repeats(i, 5)), [true, true, true]);

  // b is edited (a new version, moved to the end as a new listing holds it), c's state is replaced.
  const [a, b, c] = slots as [Slot, Slot, Slot];
  b.policy = { ...b.policy, max_replicas: 6 };
  c.known = new KnownState({ ...(c.known as KnownState).state, version: 2 }, 'fp2', 0, false);
  const held = [a, c, b];
  t.notOk(plan.fits(held, DEFAULT_SOURCE));
  const next = new CyclePlan(held, DEFAULT_SOURCE, () => executor, plan);
  t.same([a.index, c.index, b.index], [0, 1, 2], 'slots indexed in the new plan');
  t.same([...next.repeatedIn], [5, 5, 5], 'the marks of cycle 5 follow their slots');
  t.same([...next.repeatable], [1, 0, 0], 'a still quiet; c\'s known state and b\'s policy are not the ones found quiet');
  t.same([...next.repeatReplicas], [4, 0, 0]);
  await next.askReplicas(silent);
  next.fetches.forEach((f, k) => next.observe(k, observationOf(f.rule, AT, 1), AT, INTERVAL));
  t.same([0, 1, 2].map((i) => next.repeats(i, 6)), [true, false, false]);
  t.same([...next.repeatedIn], [6, 5, 5]);

  // A slot that was in no plan starts unmarked.
  const d = new Slot(policyOf({ name: 'd' }), new Mutex(), 0);
  const third = new CyclePlan([d, a], DEFAULT_SOURCE, () => executor, next);
  t.same([...third.repeatedIn], [0, 6]);
  // setQuiet on a slot of another plan changes the slot only.
  third.setQuiet(b, true, b.known, 4);
  t.equal(b.quietPolicy, b.policy);
  t.same([...third.repeatable], [0, 1], 'nothing of the plan changed');
});

// ---------------------------------------------------------------------------------------------
// The repeat path against decide() from scratch.

const METRICS = ['lag', 'cpu', 'queue'] as const;
/** Mostly a middling value that few conditions hold on; now and then one at or across a threshold, or a failure. */
const valueArb = fc.oneof({ arbitrary: fc.constant<Value>(30), weight: 6 }, { arbitrary: fc.constantFrom<Value>(1, 5, 31, 60, 90, 'fail'), weight: 4 });
const sometimes = <T>(arb: fc.Arbitrary<T>, weight: number): fc.Arbitrary<T | null> => fc.oneof({ arbitrary: fc.constant(null), weight }, { arbitrary: arb, weight: 1 });

type Operator = 'gt' | 'gte' | 'lt' | 'lte' | 'eq' | 'ne';
/** Mostly the usual conditions (that do not hold at 30), sometimes any operator and threshold. */
const conditionArb = (up: boolean) =>
  fc.oneof(
    { arbitrary: fc.constantFrom<[Operator, number]>(...(up ? ([['gt', 60], ['gte', 60], ['gt', 30]] as Array<[Operator, number]>) : ([['lt', 5], ['lte', 5], ['lt', 30]] as Array<[Operator, number]>))), weight: 3 },
    { arbitrary: fc.tuple(fc.constantFrom<Operator>('gt', 'gte', 'lt', 'lte', 'eq', 'ne'), fc.constantFrom(5, 30, 60)), weight: 1 },
  );
const ruleArb = (up: boolean) =>
  fc.record({
    metric: fc.constantFrom(...METRICS),
    condition: conditionArb(up),
    // Mostly the same few queries, so that policies share requests and read them with other conditions.
    duration_seconds: fc.constantFrom(60, 60, 60, 0, 120),
    source: fc.constantFrom(null, null, DEFAULT_SOURCE, DEFAULT_SOURCE, 'other'),
    aggregation: fc.constantFrom('max' as const, 'max' as const, 'max' as const, 'avg' as const),
    scale_by: up ? fc.integer({ min: 1, max: 3 }) : fc.integer({ min: -3, max: -1 }),
  }).map(({ condition: [operator, threshold], ...r }) => ({ ...r, operator, threshold }));

/** Condition tree shapes over a direction's rule names, each using every name (some through a not, whose tree can hold while no rule does). */
const TREE_SHAPES: Array<(names: string[]) => ConditionNode> = [
  (n) => ({ all: n }) as ConditionNode,
  (n) => ({ any: n.map((x, i) => (i % 2 === 1 ? { not: x } : x)) }) as ConditionNode,
  (n) => ({ not: { any: n } }) as ConditionNode,
  (n) => ({ any: [{ all: n }, { not: n[0] as string }] }) as unknown as ConditionNode,
];

/** The direction's rules named, combined by the tree shape `shape` (null: as they are). */
function withTree(p: { scale_up_rules: Array<Record<string, unknown>>; scale_down_rules: Array<Record<string, unknown>> }, direction: 'up' | 'down', shape: number | null): Partial<PolicyInput> {
  const rules = direction === 'up' ? p.scale_up_rules : p.scale_down_rules;
  if (shape === null || rules.length === 0) return {};
  const names = rules.map((_, i) => `${direction}_${i}`);
  const named = rules.map((r, i) => ({ ...r, name: names[i] }));
  const tree = (TREE_SHAPES[shape] as (n: string[]) => ConditionNode)(names);
  return direction === 'up'
    ? ({ scale_up_rules: named, scale_up_when: tree, scale_up_match: null } as Partial<PolicyInput>)
    : ({ scale_down_rules: named, scale_down_when: tree, scale_down_match: null } as Partial<PolicyInput>);
}

/** Policies over a few shared queries, with every feature the outcome can depend on now and then. */
const policyInputArb = fc
  .record({ min: fc.integer({ min: 0, max: 2 }), span: fc.integer({ min: 1, max: 6 }) })
  .chain(({ min, span }) => {
    const max = min + span;
    return fc.record({
      min_replicas: fc.constant(min),
      max_replicas: fc.constant(max),
      scale_to_zero: fc.boolean(),
      cooldown_seconds: fc.constantFrom(0, 60, 600, null),
      dry_run: fc.constantFrom(false, false, false, true),
      scale_up_match: fc.constantFrom('all' as const, 'any' as const),
      scale_down_match: fc.constantFrom('all' as const, 'any' as const),
      scale_up_rules: fc.array(ruleArb(true), { maxLength: 3 }),
      scale_down_rules: fc.array(ruleArb(false), { maxLength: 3 }),
      cost: sometimes(fc.integer({ min: 0, max: 3 }).map((extra) => ({ cost_per_replica_hour: 1, max_hourly_cost: min + extra })), 4),
      schedules: sometimes(fc.record({ cron_expression: fc.constantFrom('*/10 * * * *', '0 * * * *'), desired_replicas: fc.integer({ min, max }), duration: fc.constantFrom('0s', '4m'), mode: fc.constantFrom('exact' as const, 'floor' as const) }), 5),
      target_tracking: sometimes(fc.record({ metric: fc.constantFrom(...METRICS), target_value: fc.constantFrom(10, 30) }), 5),
      behavior: sometimes(fc.constantFrom({ scale_down_stabilization: '2m' }, { scale_up_stabilization: '1m' }, { scale_up_limit: { replicas: 1, period: '2m' } }, { scale_down_limit: { percent: 50, period: '3m' } }), 3),
      fallback: sometimes(fc.integer({ min, max }).map((replicas) => ({ on_metric_error: 'fallback' as const, fallback: { after_failures: 2, replicas } })), 5),
      batch: fc.constantFrom(true, true, true, false),
      upTree: sometimes(fc.nat(TREE_SHAPES.length - 1), 4),
      downTree: sometimes(fc.nat(TREE_SHAPES.length - 1), 4),
    });
  })
  .map(({ cost, schedules, target_tracking, behavior, fallback, batch, upTree, downTree, ...p }) => ({
    batch,
    input: {
      ...p,
      ...withTree(p, 'up', upTree),
      ...withTree(p, 'down', downTree),
      ...(cost ?? {}),
      ...(schedules !== null ? { schedules: [schedules] } : {}),
      ...(target_tracking !== null ? { target_tracking: [target_tracking] } : {}),
      ...(behavior !== null ? { behavior } : {}),
      ...(fallback ?? {}),
    } as Partial<PolicyInput>,
  }));

const valuesArb = fc.record({ lag: valueArb, cpu: valueArb, queue: valueArb });
const stepArb = fc.record({
  advance: fc.constantFrom(30, 30, 30, 60, 90, 600),
  values: sometimes(valuesArb, 4),
  other: sometimes(valuesArb, 4),
  /** Replicas set behind the engine's back: [policy index, count]. */
  external: sometimes(fc.tuple(fc.nat(5), fc.integer({ min: 0, max: 8 })), 4),
  /** A new version of a policy (another max_replicas), listed after the others as a new listing holds it. */
  edit: sometimes(fc.tuple(fc.nat(5), fc.integer({ min: 0, max: 4 })), 6),
  /** A state write refused: the loop forgets the state and reads it again. */
  forget: sometimes(fc.nat(5), 8),
  /** The held policies listed in another order. */
  rotate: fc.constantFrom(false, false, false, false, true),
});
type Step = typeof stepArb extends fc.Arbitrary<infer S> ? S : never;

interface Stats {
  cycles: number;
  repeated: number;
  refusedByCondition: number;
  refusedByReplicas: number;
  quietFound: number;
}

/**
 * Runs the loop's per-cycle protocol over the plan: the plan is rebuilt when the held slots do
 * not fit it, the executors are asked, every request fetched through the real MetricFetcher and
 * observed; then each slot either repeats (checked against decide() from scratch) or goes through
 * the real steadyNow (which marks it quiet) or, failing that, a full evaluation whose state is
 * kept as evaluate() keeps it (no storage here: that is test/engine-evaluate.test.ts).
 */
async function runCycles(specs: Array<{ batch: boolean; input: Partial<PolicyInput> }>, steps: readonly Step[], stats: Stats): Promise<void> {
  const policies = specs.map((s, i) => policyOf({ ...s.input, name: `p${i}` }));
  const batchOf = new Map(policies.map((p, i) => [p.id, (specs[i] as { batch: boolean }).batch]));
  const prom: Record<string, Value> = { lag: 30, cpu: 30, queue: 30 };
  const other: Record<string, Value> = { lag: 30, cpu: 30, queue: 30 };
  const fetcher = new MetricFetcher({
    sources: new Map([
      [DEFAULT_SOURCE, new IsolatedMetricSource(DEFAULT_SOURCE, constantSource(prom), 1000)],
      // No range queries: the fetcher keeps its own samples, so windows fill up over cycles.
      ['other', new IsolatedMetricSource('other', constantSource(other, { range: false }), 1000)],
    ]),
    logger: silent,
    defaultSource: DEFAULT_SOURCE,
    concurrency: 4,
    intervalSeconds: INTERVAL,
  });
  const ex = memoryExecutor();
  const one: Executor = { targetTypes: ex.targetTypes, getCurrentReplicas: (x, o) => ex.getCurrentReplicas(x, o), scale: (x, n, o) => ex.scale(x, n, o) };
  const many = new IsolatedExecutor('keda', ex, 1000);
  const single = new IsolatedExecutor('single', one, 1000);
  const executorOf = (p: Policy) => (batchOf.get(p.id) === true ? many : single);
  const context = {
    input: (policy: Policy, now: Date, observations: ReadonlyMap<string, Observation>, replicas: number | null, memory: KnownState['memory'], requestDryRun: boolean) => inputOf(policy, now, observations, replicas, memory, requestDryRun),
    decided: () => undefined,
  } as unknown as EvaluationContext;

  let slots = slotsOf(policies);
  let plan: CyclePlan | undefined;
  let now = new Date('2026-01-28T11:58:00Z');
  /** The outcome each slot had when it was found quiet. */
  const quiet = new Map<Slot, { action: string; reason_code: string; current: number; desired: number }>();
  let cycle = 0;
  for (const s of steps) {
    now = new Date(now.getTime() + s.advance * 1000);
    if (s.values !== null) Object.assign(prom, s.values);
    if (s.other !== null) Object.assign(other, s.other);
    if (s.external !== null) ex.replicas.set(`p${s.external[0] % policies.length}`, s.external[1]);
    if (s.edit !== null) {
      const slot = slots[s.edit[0] % slots.length] as Slot;
      const p = slot.policy;
      slot.policy = { ...p, max_replicas: Math.max(1, p.min_replicas + s.edit[1]), updated_at: now.toISOString() };
      slots = [...slots.filter((x) => x !== slot), slot];
    }
    if (s.forget !== null) {
      const slot = slots[s.forget % slots.length] as Slot;
      slot.known = undefined;
      plan?.setQuiet(slot, false, undefined, null);
    }
    if (s.rotate) slots = [...slots.slice(1), slots[0] as Slot];

    if (plan === undefined || !plan.fits(slots, DEFAULT_SOURCE)) plan = new CyclePlan(slots, DEFAULT_SOURCE, executorOf, plan);
    const cyc = ++cycle;
    stats.cycles++;
    await plan.askReplicas(silent);
    const observations = new Map<string, Observation>();
    for (let k = 0; k < plan.fetches.length; k++) {
      const key = plan.keys[k] as string;
      const obs = await fetcher.fetch(key, plan.fetches[k] as CyclePlan['fetches'][number], now);
      observations.set(key, obs);
      plan.observe(k, obs, now, INTERVAL);
    }
    for (let i = 0; i < plan.slots.length; i++) {
      const slot = plan.slots[i] as Slot;
      const policy = slot.policy;
      const replicas = ex.replicas.get(policy.name) ?? null;
      const repeatable = plan.repeatable[i] === 1;
      const sameReplicas = plan.answered[i] === plan.repeatReplicas[i];
      // From scratch: the stored state, fresh copies of this cycle's observations, the executor's count.
      const stored = slot.known?.state;
      if (plan.repeats(i, cyc)) {
        stats.repeated++;
        const was = quiet.get(slot);
        if (was === undefined || stored === undefined) throw new Error(`${policy.name}: repeated without a quiet outcome or a known state`);
        if (plan.repeatedIn[i] !== cyc) throw new Error(`${policy.name}: repeated but not marked in cycle ${cyc}`);
        const { record } = await decide(inputOf(policy, now, fresh(observations), replicas, memoryFromState(stored)));
        if (record.action !== was.action || record.reason_code !== was.reason_code || record.current_replicas !== was.current || record.desired_replicas !== was.desired) {
          throw new Error(
            `${policy.name} at ${now.toISOString()} (cycle ${cyc}): repeated ${was.action}/${was.reason_code} at ${was.current} -> ${was.desired}, decide() from scratch says ${record.action}/${record.reason_code} at ${record.current_replicas} -> ${record.desired_replicas}`,
          );
        }
        continue;
      }
      if (repeatable) {
        // Not repeated: the plan must have had a reason the assessment agrees with.
        const a = await assess(inputOf(policy, now, fresh(observations), replicas, memoryFromState(stored)));
        if (sameReplicas) {
          stats.refusedByCondition++;
          if (isQuiet(a, policy)) throw new Error(`${policy.name} (cycle ${cyc}): still quiet from scratch, yet not repeated`);
        } else stats.refusedByReplicas++;
      }
      // The loop's synchronous steady state (the real one), which marks a quiet slot.
      const steady = steadyNow(context, slot, plan, now, observations);
      if (steady !== undefined) {
        if (slot.quietPolicy === policy) {
          stats.quietFound++;
          const a = steady.assessment;
          quiet.set(slot, { action: a.action, reason_code: a.reasonCode, current: a.current, desired: a.desired });
        } else quiet.delete(slot);
        continue;
      }
      // The whole evaluation, as evaluate() does it: not repeatable from now on, the executor scaled, the new state kept.
      plan.setQuiet(slot, false, undefined, null);
      quiet.delete(slot);
      const answer = plan.answerOf(slot);
      const input = inputOf(policy, now, observations, answer !== undefined ? answer : replicas, slot.known?.memory ?? memoryFromState(undefined));
      const a = await assess(input);
      if (a.action !== 'none' && !policy.dry_run) ex.replicas.set(policy.name, a.desired);
      const st = stateAfter(input, a, (slot.known?.state.version ?? 0) + 1, slot.known?.state.last_change_kind ?? null);
      slot.known = new KnownState(st, fingerprintOf(st), now.getTime(), false);
    }
  }
}

t.test('every outcome the plan repeats is the one decide() reaches from scratch (property)', async (t) => {
  const stats: Stats = { cycles: 0, repeated: 0, refusedByCondition: 0, refusedByReplicas: 0, quietFound: 0 };
  await fc.assert(
    fc.asyncProperty(fc.array(policyInputArb, { minLength: 1, maxLength: 6 }), fc.array(stepArb, { minLength: 5, maxLength: 12 }), async (specs, steps) => {
      await runCycles(specs, steps, stats);
    }),
    { numRuns: 200, seed: 20260201 },
  );
  t.comment(JSON.stringify(stats));
  t.ok(stats.repeated > 300, `outcomes repeated and checked: ${stats.repeated}`);
  t.ok(stats.quietFound > 200, `slots found quiet by steadyNow: ${stats.quietFound}`);
  t.ok(stats.refusedByCondition > 50, `repeats refused because a condition held or failed: ${stats.refusedByCondition}`);
  t.ok(stats.refusedByReplicas > 10, `repeats refused because the replicas changed: ${stats.refusedByReplicas}`);
});
